package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
)

// The first start with no VDISKD_ADMIN_PASSWORD writes a random one to a
// 0600 file and logs where, not what; the data directory and every
// directory in it are the owner's alone, and the files holding secrets
// (the admin password, the user database) are 0600.
func TestDataDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	var out vdiskdtest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0"},
			func(string) string { return "" }, &out)
	}()
	out.WaitFor(t, "vdiskd ready", 20*time.Second)
	api := regexp.MustCompile(`api=(\S+)`).FindStringSubmatch(out.String())
	pw, err := os.ReadFile(filepath.Join(dir, "admin.password"))
	if err != nil {
		t.Fatal(err)
	}
	password := strings.TrimSpace(string(pw))
	if len(password) < 16 {
		t.Errorf("random admin password %d characters long", len(password))
	}
	// Use it, so the user database and the store have been written.
	d := &vdiskdtest.Client{API: api[1]}
	d.Token = d.Login(t, "admin", password)
	d.CreateVDI(t, "private", 4<<20)
	cancel()
	if code := testwait.RecvWithin(t, done, 30*time.Second, "vdiskd to stop"); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
	if strings.Contains(out.String(), password) {
		t.Errorf("the random admin password is in the log:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "admin.password") {
		t.Errorf("the log does not say where the admin password is:\n%s", out.String())
	}
	// mgmt.db (users' bcrypt hashes, tokens' SHA-256) is a directory of
	// pebble files: its own mode, 0700, is what keeps others out.
	secretFiles := map[string]bool{"admin.password": true}
	if fi, err := os.Stat(filepath.Join(dir, "mgmt.db")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("mgmt.db: %v (mode %v), want a directory of mode 0700", err, fi.Mode().Perm())
	}
	seen := 0
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch perm := fi.Mode().Perm(); {
		case fi.IsDir() && perm&0o077 != 0:
			t.Errorf("directory %s has mode %#o: group or others can enter it", rel, perm)
		case secretFiles[rel]:
			seen++
			if perm != 0o600 {
				t.Errorf("%s has mode %#o, want 0600", rel, perm)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(secretFiles) {
		t.Errorf("found %d of the %d secret files", seen, len(secretFiles))
	}
}
