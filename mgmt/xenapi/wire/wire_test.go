package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A call as XenAPI.py sends it, and xapi's answers.
func TestXMLRPC(t *testing.T) {
	req := `<?xml version='1.0'?>
<methodCall>
<methodName>VDI.snapshot</methodName>
<params>
<param><value><string>OpaqueRef:s</string></value></param>
<param><value>OpaqueRef:v</value></param>
<param><value><struct><member><name>k</name><value><string>v &amp; w</string></value></member>
<member><name>n</name><value><int>42</int></value></member><member><name>b</name><value><boolean>1</boolean></value></member>
<member><name>l</name><value><array><data><value><i8>-9</i8></value><value><double>0.5</double></value><value><nil/></value></data></array></value></member>
<member><name>t</name><value><dateTime.iso8601>20261207T15:00:00Z</dateTime.iso8601></value></member>
<member><name>raw</name><value><base64>aGk=</base64></value></member></struct></value></param>
</params>
</methodCall>`
	c, err := DecodeXMLRPC(strings.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	want := Call{Method: "VDI.snapshot", Params: []any{"OpaqueRef:s", "OpaqueRef:v", map[string]any{
		"k": "v & w", "n": int64(42), "b": true, "l": []any{int64(-9), 0.5, nil},
		"t": time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC), "raw": "hi"}}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("decoded %#v", c)
	}
	var b bytes.Buffer
	if err := EncodeXMLRPCSuccess(&b, map[string]any{"virtual_size": int64(10 << 30), "name": "<a>"}); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != `<?xml version="1.0"?><methodResponse><params><param><value><struct>`+
		`<member><name>Status</name><value>Success</value></member><member><name>Value</name><value><struct>`+
		`<member><name>name</name><value>&lt;a&gt;</value></member><member><name>virtual_size</name><value>10737418240</value></member>`+
		`</struct></value></member></struct></value></param></params></methodResponse>` {
		t.Fatalf("success %s", got)
	}
	b.Reset()
	if err := EncodeXMLRPCFailure(&b, "HANDLE_INVALID", []string{"VDI", "OpaqueRef:x"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `<member><name>ErrorDescription</name><value><array><data><value>HANDLE_INVALID</value><value>VDI</value><value>OpaqueRef:x</value></data></array></value></member><member><name>Status</name><value>Failure</value></member>`) {
		t.Fatalf("failure %s", b.String())
	}
}

// Hostile requests are malformed, never a panic or a blow-up.
func TestHostile(t *testing.T) {
	deep := strings.Repeat("<value><array><data>", MaxDepth+2) + strings.Repeat("</data></array></value>", MaxDepth+2)
	for name, req := range map[string]string{
		"entity bomb": `<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>` +
			`<methodCall><methodName>&b;</methodName></methodCall>`,
		"deep":         `<methodCall><methodName>x</methodName><params><param>` + deep + `</param></params></methodCall>`,
		"huge":         `<methodCall><methodName>` + strings.Repeat("x", MaxBody) + `</methodName></methodCall>`,
		"not xml":      `{"method": "x"}`,
		"unknown type": `<methodCall><methodName>x</methodName><params><param><value><i16>1</i16></value></param></params></methodCall>`,
		"bad int":      `<methodCall><methodName>x</methodName><params><param><value><int>1e9</int></value></param></params></methodCall>`,
		"truncated":    `<methodCall><methodName>x</methodName><params><param><value>`,
		"text":         `<methodCall>hello<methodName>x</methodName></methodCall>`,
	} {
		if _, err := DecodeXMLRPC(strings.NewReader(req)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, req := range map[string]string{
		"not json":  `<methodCall/>`,
		"no method": `{"jsonrpc":"2.0","params":[],"id":1}`,
		"named":     `{"jsonrpc":"2.0","method":"x","params":{"a":1},"id":1}`,
		"version":   `{"jsonrpc":"3.0","method":"x","id":1}`,
		"deep":      `{"method":"x","params":[` + strings.Repeat("[", MaxDepth+2) + strings.Repeat("]", MaxDepth+2) + `]}`,
		"trailing":  `{"method":"x"} {"method":"y"}`,
		"too big":   `{"method":"x","params":["` + strings.Repeat("y", MaxBody) + `"]}`,
	} {
		if _, err := DecodeJSONRPC(strings.NewReader(req)); !errors.Is(err, ErrMalformed) {
			t.Errorf("json %s: %v", name, err)
		}
	}
}

// JSON-RPC as the npm xen-api client sends it, and xapi's answers.
func TestJSONRPC(t *testing.T) {
	c, err := DecodeJSONRPC(strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"event.from","params":["OpaqueRef:s",["*"],"",60.1]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Method != "event.from" || !reflect.DeepEqual(c.Params, []any{"OpaqueRef:s", []any{"*"}, "", 60.1}) {
		t.Fatalf("%#v", c)
	}
	var b bytes.Buffer
	if err := EncodeJSONRPCError(&b, c.ID, "SESSION_INVALID", []string{"OpaqueRef:s"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(b.String()); got != `{"error":{"code":1,"data":["OpaqueRef:s"],"message":"SESSION_INVALID"},"id":7,"jsonrpc":"2.0"}` {
		t.Fatalf("error %s", got)
	}
}

// FuzzXMLRPC: any input decodes or is malformed, without panicking; what
// decodes encodes and decodes again to the same call.
func FuzzXMLRPC(f *testing.F) {
	f.Add(`<methodCall><methodName>session.login_with_password</methodName><params><param><value>root</value></param>` +
		`<param><value><string>pw</string></value></param></params></methodCall>`)
	f.Add(`<methodCall><methodName>x</methodName><params><param><value><struct><member><name>a</name><value><array><data>` +
		`<value><int>1</int></value></data></array></value></member></struct></value></param></params></methodCall>`)
	f.Fuzz(func(t *testing.T, req string) {
		c, err := DecodeXMLRPC(strings.NewReader(req))
		if err != nil {
			return
		}
		var b bytes.Buffer
		b.WriteString("<methodCall><methodName>")
		xmlEscape(&b, c.Method)
		b.WriteString("</methodName><params>")
		for _, p := range c.Params {
			b.WriteString("<param>")
			if err := EncodeXMLValue(&b, p); err != nil {
				t.Fatal(err)
			}
			b.WriteString("</param>")
		}
		b.WriteString("</params></methodCall>")
		again, err := DecodeXMLRPC(&b)
		if err != nil {
			t.Fatalf("re-encoded call %q: %v", b.String(), err)
		}
		if !sameCall(c, again) {
			t.Fatalf("round trip: %#v then %#v", c, again)
		}
	})
}

// sameCall compares calls as XML-RPC can carry them: integers come back
// as strings (xapi's encoding), strings as they went.
func sameCall(a, b Call) bool {
	return strings.TrimSpace(a.Method) == strings.TrimSpace(b.Method) && reflect.DeepEqual(flatten(a.Params), flatten(b.Params))
}

func flatten(v any) any {
	switch t := v.(type) {
	case int64:
		return strconv.FormatInt(t, 10)
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = flatten(x)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, x := range t {
			out[k] = flatten(x)
		}
		return out
	}
	return v
}

// FuzzJSONRPC: any input decodes or is malformed, without panicking.
func FuzzJSONRPC(f *testing.F) {
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"VDI.get_record","params":["OpaqueRef:s","OpaqueRef:v"]}`)
	f.Add(`{"method":"x","params":[1.5,{"a":[true,null]}]}`)
	f.Fuzz(func(t *testing.T, req string) {
		c, err := DecodeJSONRPC(strings.NewReader(req))
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := EncodeJSONRPCResult(&b, c.ID, c.Params); err != nil {
			t.Fatalf("encoding what decoded: %v", err)
		}
	})
}
