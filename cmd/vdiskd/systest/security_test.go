package systest

import (
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
)

// Passwords and tokens, right or wrong, never reach the log or /metrics:
// not from logins, not from Basic user:token calls, not from NBD export
// names (which carry the token as session_id).
func TestSecretsStayOutOfLogs(t *testing.T) {
	vdiskdtest.RequireTool(t, "nbdinfo")
	d := startVdiskd(t)
	const alicePW, wrongPW, bogusToken = "alice-secret-pw-4417", "wrong-password-9932", "bogus-token-77125"
	d.MustCall(t, http.MethodPost, "/users", map[string]any{"username": "alice", "password": alicePW, "role": "vm-admin"}, nil)
	alice := d.Login(t, "alice", alicePW)
	req, _ := http.NewRequest(http.MethodPost, d.API+"/token", nil)
	req.SetBasicAuth("admin", wrongPW)
	if st := d.Do(t, req, nil); st != http.StatusUnauthorized {
		t.Fatalf("login with a wrong password: HTTP %d", st)
	}
	req, _ = http.NewRequest(http.MethodGet, d.API+"/vdis", nil)
	req.SetBasicAuth("alice", alice) // XenAPI-style user:token
	if st := d.Do(t, req, nil); st != http.StatusOK {
		t.Fatalf("Basic alice:token: HTTP %d", st)
	}
	v := d.CreateVDI(t, "secret", 4<<20)
	uri := d.URI(t, v.UUID)
	vdiskdtest.RunTool(t, "nbdinfo", uri)
	bad := strings.Replace(uri, "session_id%3D", "session_id%3D"+bogusToken, 1)
	if bad == uri {
		bad = strings.Replace(uri, "session_id=", "session_id="+bogusToken, 1)
	}
	if rc, _ := clNbdinfoRC(t, bad); rc == 0 {
		t.Fatalf("nbdinfo with a bogus token succeeded: %s", bad)
	}
	metrics := d.scrape(t).body
	d.Stop(t)

	secrets := map[string]string{
		"the admin password": testAdminPassword, "alice's password": alicePW, "a wrong password": wrongPW,
		"the admin token": d.Token, "alice's token": alice, "a bogus token": bogusToken,
	}
	for what, s := range secrets {
		if strings.Contains(d.Log(), s) {
			t.Errorf("%s is in the log", what)
		}
		if strings.Contains(metrics, s) {
			t.Errorf("%s is in /metrics", what)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", d.Log())
	}
}

// Oversized requests are refused before they cost anything: headers over
// 64 KiB get 431, bodies over 1 MiB 413, and the daemon answers the next
// client as before.
func TestHTTPRequestLimits(t *testing.T) {
	d := startVdiskd(t)
	req, _ := http.NewRequest(http.MethodGet, d.API+"/vdis", nil)
	req.Header.Set("Authorization", "Bearer "+d.Token)
	req.Header.Set("X-Padding", strings.Repeat("a", 100<<10))
	if st := d.Do(t, req, nil); st != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB of headers: HTTP %d, want 431", st)
	}
	big := map[string]any{"name_label": strings.Repeat("x", 2<<20), "virtual_size": 1 << 20}
	if st := d.Call(t, http.MethodPost, "/vdis", big, nil); st != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB body: HTTP %d, want 413", st)
	}
	d.CreateVDI(t, "after", 1<<20)
}

// A client that trickles its request headers is cut at ReadHeaderTimeout
// (10 s) while other clients are served.
func TestHTTPSlowHeadersAreCut(t *testing.T) {
	d := startVdiskd(t)
	host := strings.TrimPrefix(strings.TrimSuffix(d.API, "/api"), "http://")
	var slow []net.Conn
	for i := 0; i < 50; i++ {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET /api/vdis HTTP/1.1\r\nHost: x\r\n")); err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
	}
	start := time.Now()
	d.CreateVDI(t, "served", 1<<20) // others are served meanwhile
	for _, c := range slow {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			if _, err := c.Write([]byte("X-A: b\r\n")); err != nil {
				break // cut
			}
			buf := make([]byte, 512)
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := c.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				break // closed, or answered 408 and closed
			}
			if time.Since(start) > 20*time.Second {
				t.Fatalf("a client trickling headers still connected %v after it started", time.Since(start))
			}
		}
	}
	took := time.Since(start)
	t.Logf("50 header tricklers cut after %v", took.Round(100*time.Millisecond))
	if took < 9*time.Second {
		t.Errorf("cut after %v, before the 10 s header timeout: something else closed them", took)
	}
}
