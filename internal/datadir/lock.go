// Package datadir owns a daemon's data directory: the lock that keeps a
// second daemon out, and where each component keeps its files.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrLocked reports that another process holds the data directory.
var ErrLocked = errors.New("data directory is in use by another vdiskd")

// Dir is a locked data directory. Close releases it.
type Dir struct {
	Path string
	lock *os.File
}

// Open creates the directory if needed, readable by its owner only (it
// holds every VM's disk contents and the user database), and takes its
// lock without waiting. The lock is an flock, so it goes away with the
// process, even on SIGKILL.
func Open(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", path, err)
	}
	name := filepath.Join(path, "vdiskd.lock")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(name)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (held by pid %s)", ErrLocked, path, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("data dir %s: lock: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Dir{Path: path, lock: f}, nil
}

// OpenToOthers reports the directory's mode when group or others may
// enter or read it (an operator made it so, or an older vdiskd did), for
// the daemon to warn about: it is not changed behind the operator's back.
func (d *Dir) OpenToOthers() (os.FileMode, bool) {
	st, err := os.Stat(d.Path)
	if err != nil {
		return 0, false
	}
	return st.Mode().Perm(), st.Mode().Perm()&0o077 != 0
}

// Store is where the block store keeps its pebble files.
func (d *Dir) Store() string { return filepath.Join(d.Path, "store") }

// Close releases the lock.
func (d *Dir) Close() error { return d.lock.Close() }
