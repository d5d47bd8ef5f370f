package mgmt

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// FuzzXenAPICalls posts arbitrary bodies to XenAPI's transports: every
// answer is a 200 carrying a XenAPI answer (success or failure) in the
// transport's encoding, never a 5xx.
func FuzzXenAPICalls(f *testing.F) {
	for _, c := range []struct {
		path, body string
	}{
		{"/jsonrpc", `{"jsonrpc":"2.0","id":1,"method":"session.login_with_password","params":["admin","x"]}`},
		{"/jsonrpc", `{"jsonrpc":"2.0","id":1,"method":"VDI.get_all_records","params":["SESSION"]}`},
		{"/jsonrpc", `{"jsonrpc":"2.0","id":1,"method":"event.from","params":["SESSION",["*"],"",0.01]}`},
		{"/jsonrpc", `{"jsonrpc":"2.0","id":1,"method":"Async.VDI.snapshot","params":["SESSION","OpaqueRef:x",{}]}`},
		{"/", `<methodCall><methodName>VDI.create</methodName><params><param><value>SESSION</value></param>` +
			`<param><value><struct><member><name>virtual_size</name><value>1048576</value></member></struct></value></param></params></methodCall>`},
		{"/xmlrpc", `<methodCall><methodName>VDI.resize</methodName><params><param><value>SESSION</value></param></params></methodCall>`},
		{"/RPC2", `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><methodCall><methodName>&a;</methodName></methodCall>`},
	} {
		f.Add(c.path, c.body)
	}
	// Failed logins log warnings; a fuzz target may not log through f.
	e := newEnvWith(f, func(o *Options) { o.Logger = slog.New(slog.DiscardHandler) })
	res, _, _ := e.jsonrpc("session.login_with_password", "admin", adminPassword)
	sess := res.(string)
	f.Fuzz(func(t *testing.T, path, body string) {
		switch path {
		case "/jsonrpc", "/", "/xmlrpc", "/RPC2":
		default:
			path = "/jsonrpc"
		}
		resp, err := http.Post(e.srv.URL+path, "text/xml", strings.NewReader(strings.ReplaceAll(body, "SESSION", sess)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		ct := resp.Header.Get("Content-Type")
		if resp.StatusCode != http.StatusOK || (ct != "application/json" && ct != "text/xml") {
			t.Fatalf("POST %s %q: %d %q", path, body, resp.StatusCode, ct)
		}
	})
}
