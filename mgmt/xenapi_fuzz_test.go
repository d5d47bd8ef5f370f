package mgmt

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// FuzzXenAPICalls posts arbitrary bodies to XenAPI's transports (SESSION
// and VDIREF in them become a live session and VDI): every
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
		{"/jsonrpc", `{"jsonrpc":"2.0","id":1,"method":"VDI.add_to_other_config","params":["SESSION","VDIREF","k",{"v":1}]}`},
		{"/jsonrpc", `{"jsonrpc":"2.0","id":1,"method":"VDI.copy","params":["SESSION","VDIREF","OpaqueRef:NULL",7,[]]}`},
		{"/jsonrpc", `{"jsonrpc":"2.0","id":1,"method":"VDI.introduce","params":["SESSION","u","n","",null,"user",1,false,{},"",{},{},true,"x","0","",false,"",""]}`},
		{"/jsonrpc", `{"jsonrpc":"2.0","id":1,"method":"VBD.get_record","params":["SESSION","OpaqueRef:NULL"]}`},
		{"/", `<methodCall><methodName>VDI.set_tags</methodName><params><param><value>SESSION</value></param>` +
			`<param><value>VDIREF</value></param><param><value><array><data><value><i4>1</i4></value></data></array></value></param></params></methodCall>`},
	} {
		f.Add(c.path, c.body)
	}
	// Failed logins log warnings; a fuzz target may not log through f.
	e := newEnvWith(f, func(o *Options) { o.Logger = slog.New(slog.DiscardHandler) })
	res, _, _ := e.jsonrpc("session.login_with_password", "admin", adminPassword)
	sess := res.(string)
	vdi := "OpaqueRef:" + e.createVDI(map[string]any{"name_label": "fuzzed"}).UUID
	f.Fuzz(func(t *testing.T, path, body string) {
		switch path {
		case "/jsonrpc", "/", "/xmlrpc", "/RPC2":
		default:
			path = "/jsonrpc"
		}
		resp, err := http.Post(e.srv.URL+path, "text/xml", strings.NewReader(strings.NewReplacer("SESSION", sess, "VDIREF", vdi).Replace(body)))
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
