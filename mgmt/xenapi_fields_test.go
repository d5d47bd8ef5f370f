package mgmt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/volume"
	"github.com/vdiskd/vdiskd/mgmt/xenapi/wire"
	"github.com/vdiskd/vdiskd/mgmt/xenrecord"
)

// TestXenAPIFieldCalls drives the VDI field calls (set_*, add_*,
// remove_*) over XenAPI's wire from testdata/xenapi_fields:
//
//	vdi NAME [snapshot-of=NAME]   a VDI (or a snapshot) made over REST
//	vpool NAME                    a vPool made over REST
//	attach NAME / detach NAME     hold a writable attachment, or let it go
//	write NAME BYTE               fill the VDI's first MiB with BYTE
//	same NAME NAME                the two VDIs' first MiB are equal
//	call METHOD [as=NAME]         one JSON-RPC call as admin (as names
//	                              the VDI whose ref it answers)
//	call-ro METHOD                the same as a read-only user
//	xmlcall METHOD                one XML-RPC call as admin
//	fields NAME F...              those fields of the XenAPI record
//
// A call's input is its parameters after the session: JSON values, bare
// words naming VDIs and vPools for their refs, and uuid:NAME for a VDI's
// uuid. A call answers its result or "error CODE [params]", with the
// VDI's uuids written as their names. After an error the harness checks
// that the VDI's record did not change; after every call that the XenAPI
// record and the REST record agree on each field the calls touch.
func TestXenAPIFieldCalls(t *testing.T) {
	e := newEnv(t)
	res, _, _ := e.jsonrpc("session.login_with_password", "admin", adminPassword)
	admin := res.(string)
	ro := "OpaqueRef:" + e.userWithRole(api.ReadOnly)
	names := map[string]string{} // name -> uuid, of VDIs and vPools
	isVDI := map[string]bool{}
	vbds := map[string]*volume.VBD{}
	t.Cleanup(func() {
		for _, b := range vbds {
			_ = b.Close()
		}
	})
	ref := func(d *datadriven.TestData, name string) string {
		id, ok := names[name]
		if !ok {
			d.Fatalf(t, "no VDI %q", name)
		}
		return "OpaqueRef:" + id
	}
	unname := func(s string) string {
		for name, id := range names {
			s = strings.ReplaceAll(s, id, name)
		}
		return s
	}
	// record is a VDI's XenAPI record; nil once it is forgotten.
	record := func(name string) map[string]any {
		rec, code, _ := e.jsonrpc("VDI.get_record", admin, "OpaqueRef:"+names[name])
		if code == "HANDLE_INVALID" {
			return nil
		}
		if code != "" {
			t.Fatalf("VDI.get_record %s: %s", name, code)
		}
		return rec.(map[string]any)
	}
	// agree checks the fields the field calls touch, XenAPI against REST.
	agree := func(d *datadriven.TestData) {
		for name := range isVDI {
			id := names[name]
			x := record(name)
			if x == nil {
				continue
			}
			var r map[string]any
			b, _ := json.Marshal(e.vdi(id))
			_ = json.Unmarshal(b, &r)
			for _, f := range []string{"name_label", "name_description", "sharable", "allow_caching", "read_only",
				"on_boot", "other_config", "sm_config", "xenstore_data", "tags"} {
				if !reflect.DeepEqual(x[f], r[f]) {
					d.Fatalf(t, "VDI %s: %s is %v over XenAPI, %v over REST", name, f, x[f], r[f])
				}
			}
		}
	}
	// args reads the call's parameters after the session from the input:
	// JSON values, and VDI names standing for their refs.
	args := func(d *datadriven.TestData) (string, []any) {
		if len(d.CmdArgs) == 0 {
			d.Fatalf(t, "%s: no method", d.Cmd)
		}
		var out []any
		in := strings.TrimSpace(d.Input)
		for in != "" {
			word, rest, _ := strings.Cut(in, " ")
			if _, ok := names[word]; ok {
				out = append(out, ref(d, word))
				in = strings.TrimSpace(rest)
				continue
			}
			if name, ok := strings.CutPrefix(word, "uuid:"); ok {
				out = append(out, strings.TrimPrefix(ref(d, name), "OpaqueRef:"))
				in = strings.TrimSpace(rest)
				continue
			}
			dec := json.NewDecoder(strings.NewReader(in))
			var v any
			if err := dec.Decode(&v); err != nil {
				d.Fatalf(t, "arguments %q: %v", in, err)
			}
			out = append(out, v)
			in = strings.TrimSpace(in[dec.InputOffset():])
		}
		return d.CmdArgs[0].Key, out
	}
	// called runs one call and renders its answer, checking that an error
	// changed nothing.
	called := func(d *datadriven.TestData, call func() (any, string, []string)) string {
		before := map[string]map[string]any{}
		for name := range isVDI {
			before[name] = record(name)
		}
		res, code, data := call()
		var as string
		d.MaybeScanArgs(t, "as", &as)
		if r, ok := res.(string); ok && as != "" && code == "" {
			names[as], isVDI[as] = strings.TrimPrefix(r, "OpaqueRef:"), true
		}
		if code != "" {
			for name := range isVDI {
				if after := record(name); !reflect.DeepEqual(before[name], after) {
					d.Fatalf(t, "%s failed with %s but changed VDI %s:\n%v\n%v", d.Pos, code, name, before[name], after)
				}
			}
			return unname(fmt.Sprintf("error %s %v\n", code, data))
		}
		agree(d)
		b, _ := json.Marshal(res)
		return unname(string(b)) + "\n"
	}
	datadriven.RunTest(t, "testdata/xenapi_fields", func(t *testing.T, d *datadriven.TestData) string {
		switch d.Cmd {
		case "vdi":
			name := d.CmdArgs[0].Key
			var of string
			d.MaybeScanArgs(t, "snapshot-of", &of)
			if of != "" {
				names[name] = e.post(names[of], "snapshot", nil).UUID
			} else {
				names[name] = e.createVDI(map[string]any{"name_label": name}).UUID
			}
			isVDI[name] = true
			return ""
		case "vpool":
			var p api.VPool
			e.must(201, "POST", "/api/vpools", e.admin, map[string]any{"name": d.CmdArgs[0].Key}, &p)
			names[d.CmdArgs[0].Key] = p.GUID
			return ""
		case "write":
			b, err := strconv.ParseUint(d.CmdArgs[1].Key, 0, 8)
			if err != nil {
				d.Fatalf(t, "write: %v", err)
			}
			e.write(names[d.CmdArgs[0].Key], 0, bytes.Repeat([]byte{byte(b)}, 1<<20))
			return ""
		case "same":
			a, b := e.read(names[d.CmdArgs[0].Key], 0, 1<<20), e.read(names[d.CmdArgs[1].Key], 0, 1<<20)
			if !bytes.Equal(a, b) {
				return "differ\n"
			}
			return "equal\n"
		case "attach":
			b, err := e.s.vols.Attach(names[d.CmdArgs[0].Key], "admin", true)
			if err != nil {
				d.Fatalf(t, "attach: %v", err)
			}
			vbds[d.CmdArgs[0].Key] = b
			return ""
		case "detach":
			name := d.CmdArgs[0].Key
			_ = vbds[name].Close()
			delete(vbds, name)
			waitDetached(t, e, names[name])
			return ""
		case "call", "call-ro":
			sess := admin
			if d.Cmd == "call-ro" {
				sess = ro
			}
			method, params := args(d)
			return called(d, func() (any, string, []string) { return e.jsonrpc(method, append([]any{sess}, params...)...) })
		case "xmlcall":
			method, params := args(d)
			return called(d, func() (any, string, []string) { return e.xmlCall(method, append([]any{admin}, params...)...) })
		case "fields":
			rec := record(d.CmdArgs[0].Key)
			var b strings.Builder
			for _, f := range d.CmdArgs[1:] {
				v, _ := json.Marshal(rec[f.Key])
				fmt.Fprintf(&b, "%s: %s\n", f.Key, v)
			}
			return unname(b.String())
		}
		d.Fatalf(t, "unknown command %s", d.Cmd)
		return ""
	})
}

// xmlCall makes one XML-RPC call at POST / and answers as jsonrpc does.
func (e *env) xmlCall(method string, params ...any) (result any, code string, data []string) {
	e.t.Helper()
	var b bytes.Buffer
	b.WriteString("<?xml version='1.0'?><methodCall><methodName>" + method + "</methodName><params>")
	for _, p := range params {
		b.WriteString("<param>")
		if err := wire.EncodeXMLValue(&b, p); err != nil {
			e.t.Fatal(err)
		}
		b.WriteString("</param>")
	}
	b.WriteString("</params></methodCall>")
	out := e.xmlrpc("/", b.String())
	// A methodResponse reads as a methodCall's parameters.
	asCall := strings.Replace(strings.Replace(out, "<methodResponse>", "<methodCall><methodName>r</methodName>", 1),
		"</methodResponse>", "</methodCall>", 1)
	c, err := wire.DecodeXMLRPC(strings.NewReader(asCall))
	if err != nil || len(c.Params) != 1 {
		e.t.Fatalf("%s: the response %q: %v", method, out, err)
	}
	st, _ := c.Params[0].(map[string]any)
	if st["Status"] == "Success" {
		return st["Value"], "", nil
	}
	desc, _ := st["ErrorDescription"].([]any)
	if len(desc) == 0 {
		e.t.Fatalf("%s: the response %q", method, out)
	}
	for _, d := range desc[1:] {
		data = append(data, fmt.Sprint(d))
	}
	return nil, fmt.Sprint(desc[0]), data
}

// The limit a VDI's maps and tags have is the service's; the argument
// check of package api must not let through what the service refuses.
func TestFieldLimitsAgree(t *testing.T) {
	if api.MaxEntries != volume.MaxEntries {
		t.Fatalf("api.MaxEntries %d, volume.MaxEntries %d", api.MaxEntries, volume.MaxEntries)
	}
	var names []string
	for _, f := range xenrecord.FieldCalls {
		names = append(names, f.Name())
	}
	for _, want := range []string{"set_name_label", "set_read_only", "set_on_boot", "add_to_sm_config", "remove_tags"} {
		if !slices.Contains(names, want) {
			t.Errorf("xenrecord.FieldCalls has no %s", want)
		}
	}
}
