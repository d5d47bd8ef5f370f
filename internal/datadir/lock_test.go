package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := Open(dir)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	d2.Close()
}

func TestNewDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o700 {
		t.Fatalf("new data dir has mode %v, want 0700", perm)
	}
	if mode, open := d.OpenToOthers(); open {
		t.Fatalf("OpenToOthers = %v, true on a 0700 dir", mode)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if mode, open := d.OpenToOthers(); !open || mode != 0o755 {
		t.Fatalf("OpenToOthers = %v, %v on a 0755 dir", mode, open)
	}
}
