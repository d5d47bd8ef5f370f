package systest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// An NBD connection lives no longer than the token in its export name:
// logout, deleting the user and expiry end it (ESHUTDOWN saying why, then
// the hang-up), and connections of other tokens go on.

// revokeLogin is POST /api/token for user, with the whole answer.
func revokeLogin(t *testing.T, d *daemon, user, password string) api.Token {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.API+"/token", nil)
	req.SetBasicAuth(user, password)
	var tok api.Token
	if st := d.Do(t, req, &tok); st != http.StatusOK {
		t.Fatalf("login %s: HTTP %d", user, st)
	}
	return tok
}

// revokeWaitCut reads through connection name until the server answers
// ESHUTDOWN, and then until the connection is gone; it returns when it
// was gone. libnbd does not pass on the message of an error reply, so why
// the session ended is checked in the daemon's log.
func revokeWaitCut(t *testing.T, d *daemon, p *protoSession, name, why string) time.Time {
	t.Helper()
	p.MustDo(t, "eshutdown %s", name)
	revokeLogSays(t, d, why)
	ans := p.MustDo(t, "untildead %s", name)
	var secs float64
	var n int
	var last string
	if _, err := fmt.Sscanf(ans, "ok %f %d %s", &secs, &n, &last); err != nil {
		t.Fatalf("untildead %s: %q: %v", name, ans, err)
	}
	if last == "ESHUTDOWN" {
		t.Errorf("%s: last error %s; want the connection gone", name, last)
	}
	return time.Now()
}

// revokeLogSays checks that the daemon logged a session end for why.
func revokeLogSays(t *testing.T, d *daemon, why string) {
	t.Helper()
	for _, l := range strings.Split(d.Log(), "\n") {
		if strings.Contains(l, "nbd session ended") && strings.Contains(l, why) {
			return
		}
	}
	t.Errorf("no session end for %q in the log:\n%s", why, vdiskdtest.Tail(d.Log(), 20))
}

// revokeIO writes a byte pattern through connection name and reads it back.
func revokeIO(t *testing.T, p *protoSession, name string, off int, b byte) {
	t.Helper()
	p.MustDo(t, "pwrite %s %d 65536 %#x", name, off, b)
	if ans := p.MustDo(t, "pread %s %d 65536", name, off); ans != fmt.Sprintf("ok %02x", b) {
		t.Fatalf("%s: read back %q, want %02x", name, ans, b)
	}
}

func TestNBDTokenRevocation(t *testing.T) {
	d := startVdiskd(t)
	v := d.CreateVDI(t, "revoke", 16<<20)
	d.MustCall(t, http.MethodPost, "/users", map[string]any{"username": "alice", "password": "alice-password", "role": "vm-admin"}, nil)
	d.MustCall(t, http.MethodPost, "/users", map[string]any{"username": "bob", "password": "bob-password", "role": "vm-admin"}, nil)
	gone := revokeLogin(t, d, "alice", "alice-password").Token
	kept := revokeLogin(t, d, "alice", "alice-password").Token
	bob := revokeLogin(t, d, "bob", "bob-password").Token
	p := protoStartSession(t)
	for name, tok := range map[string]string{"gone": gone, "kept": kept, "bob": bob} {
		p.MustDo(t, "open %s %s", name, protoURI(d, protoExportName(v.UUID, tok)))
	}
	revokeIO(t, p, "gone", 0, 0x11)
	revokeIO(t, p, "kept", 1<<20, 0x22)
	revokeIO(t, p, "bob", 2<<20, 0x33)

	// Logout (DELETE /api/token) ends that token's connection only.
	start := time.Now()
	if st := d.CallAs(t, gone, http.MethodDelete, "/token", nil, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE /api/token: HTTP %d", st)
	}
	cut := revokeWaitCut(t, d, p, "gone", "the token was revoked")
	t.Logf("cut %v after the logout", cut.Sub(start).Round(time.Millisecond))
	if d := cut.Sub(start); d > 5*time.Second {
		t.Errorf("the connection lasted %v after its token was revoked; the grace is 1 s", d)
	}
	revokeIO(t, p, "kept", 1<<20, 0x44)
	revokeIO(t, p, "bob", 2<<20, 0x55)

	// Deleting the user ends its connections.
	if st := d.Call(t, http.MethodDelete, "/users/bob", nil, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE /api/users/bob: HTTP %d", st)
	}
	revokeWaitCut(t, d, p, "bob", "user was deleted")
	revokeIO(t, p, "kept", 1<<20, 0x66)

	// The token is refused for new connections too, and the counter says
	// why the two were cut.
	if ans := p.Do(t, "open again %s", protoURI(d, protoExportName(v.UUID, gone))); !strings.HasPrefix(ans, "error") {
		t.Errorf("a revoked token opened a connection: %s", ans)
	}
	if got := value(d.scrape(t).find(t, "vdiskd_nbd_connections_rejected_total", map[string]string{"reason": "session_ended"})); got != 2 {
		t.Errorf(`vdiskd_nbd_connections_rejected_total{reason="session_ended"} = %g, want 2`, got)
	}
	p.MustDo(t, "close kept")
	protoWaitVBDs(t, d, v.UUID, 0)
	vdiskdtest.RunTool(t, "qemu-io", "-f", "raw", d.URI(t, v.UUID), "-c", "read -P 0x11 0 64k", "-c", "read -P 0x66 1M 64k", "-c", "read -P 0x55 2M 64k")
}

// A token's connection ends when the token expires, not before, with no
// call to notice it; a connection with a younger token goes on.
func TestNBDTokenExpiry(t *testing.T) {
	const ttl = 6 * time.Second
	d := startVdiskd(t, "--token-ttl", ttl.String())
	v := d.CreateVDI(t, "expire", 16<<20)
	young := d.CreateVDI(t, "young", 16<<20)
	tok := revokeLogin(t, d, "admin", testAdminPassword)
	if got := time.Until(tok.ExpiresAt); got > ttl || got < ttl/2 {
		t.Fatalf("a token from --token-ttl %v expires in %v", ttl, got)
	}
	p := protoStartSession(t)
	p.MustDo(t, "open e %s", protoURI(d, protoExportName(v.UUID, tok.Token)))
	time.Sleep(ttl / 2)
	other := revokeLogin(t, d, "admin", testAdminPassword) // expires ttl/2 later
	p.MustDo(t, "open y %s", protoURI(d, protoExportName(young.UUID, other.Token)))
	var ans string
	for {
		if ans = p.Do(t, "pread e 0 4096"); !strings.HasPrefix(ans, "ok") {
			break
		}
		if time.Since(tok.ExpiresAt) > 10*time.Second {
			t.Fatalf("the connection still reads 10 s after its token expired at %v", tok.ExpiresAt)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ended := time.Now()
	t.Logf("ended %v after the expiry: %s", ended.Sub(tok.ExpiresAt).Round(time.Millisecond), ans)
	if ended.Before(tok.ExpiresAt.Add(-time.Second)) { // 1 s: the two clocks' rounding
		t.Fatalf("the connection ended at %v, before its token expired at %v", ended, tok.ExpiresAt)
	}
	if !strings.HasPrefix(ans, "error ESHUTDOWN") {
		t.Errorf("the first failed read answered %q; want ESHUTDOWN", ans)
	}
	revokeLogSays(t, d, "the token expired")
	if time.Now().Before(other.ExpiresAt) {
		revokeIO(t, p, "y", 0, 0x77)
	} else {
		t.Logf("too slow to check the younger token's connection before it expired too")
	}
	if ans := p.MustDo(t, "untildead e"); strings.HasSuffix(ans, "ESHUTDOWN") {
		t.Errorf("untildead: %s", ans)
	}
}
