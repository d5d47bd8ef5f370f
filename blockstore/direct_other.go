//go:build !linux

package blockstore

import "errors"

var errNoDirect = errors.New("blockstore: direct I/O is only used on Linux")

func openDirect(string) (int, error)              { return -1, errNoDirect }
func closeDirect(int) error                       { return nil }
func pwriteDirect(int, []byte, int64) error       { return errNoDirect }
func preadDirect(int, []byte, int64) (int, error) { return 0, errNoDirect }
func preadCached(int, []byte, int64) int          { return 0 }
