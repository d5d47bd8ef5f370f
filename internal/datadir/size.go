package datadir

import "syscall"

// FilesystemSize is the capacity in bytes of the file system holding path
// (0 if it cannot be read): the size vPools created without one report.
func FilesystemSize(path string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0
	}
	return int64(st.Blocks) * st.Bsize
}
