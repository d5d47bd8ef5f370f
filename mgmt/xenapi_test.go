package mgmt

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/xenapi"
	"github.com/vdiskd/vdiskd/nbd"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// jsonrpc sends one JSON-RPC call as the xen-api client does and answers
// its result, or its error's code and data.
func (e *env) jsonrpc(method string, params ...any) (result any, code string, data []string) {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	resp, err := http.Post(e.srv.URL+"/jsonrpc", "application/json", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("%s: %d, Content-Type %q (the xen-api client needs exactly application/json)", method, resp.StatusCode, ct)
	}
	var out struct {
		Result any
		Error  *struct {
			Message string
			Data    []string
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		e.t.Fatal(err)
	}
	if out.Error != nil {
		return nil, out.Error.Message, out.Error.Data
	}
	return out.Result, "", nil
}

// xenOK makes one call with a session over JSON-RPC; it must succeed.
func (e *env) xenOK(sess, method string, params ...any) any {
	e.t.Helper()
	v, code, data := e.jsonrpc(method, append([]any{sess}, params...)...)
	if code != "" {
		e.t.Fatalf("%s: %s %v", method, code, data)
	}
	return v
}

// eventsFrom is one event.from of classes after token: its events and the
// next token. The answer must carry valid_ref_counts.
func (e *env) eventsFrom(sess string, classes []any, token string, timeout float64) (events []map[string]any, next string) {
	e.t.Helper()
	r := e.xenOK(sess, "event.from", classes, token, timeout).(map[string]any)
	for _, ev := range r["events"].([]any) {
		events = append(events, ev.(map[string]any))
	}
	if _, ok := r["valid_ref_counts"].(map[string]any); !ok {
		e.t.Fatalf("event.from without valid_ref_counts: %v", r)
	}
	return events, r["token"].(string)
}

// xmlrpc posts a methodCall to path and answers the response's body.
func (e *env) xmlrpc(path, body string) string {
	e.t.Helper()
	resp, err := http.Post(e.srv.URL+path, "text/xml", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/xml") {
		e.t.Fatalf("POST %s: %d %s %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), out)
	}
	return string(out)
}

// The session, pool, host and system messages over JSON-RPC and XML-RPC,
// xapi's errors, and a session ref naming an NBD export.
func TestXenAPISession(t *testing.T) {
	e := withNBD(t, "z")
	sess, code, _ := e.jsonrpc("session.login_with_password", "admin", adminPassword, "1.0", "test")
	ref, _ := sess.(string)
	if code != "" || !strings.HasPrefix(ref, "OpaqueRef:") {
		t.Fatalf("login: %v %s", sess, code)
	}
	if _, code, data := e.jsonrpc("session.login_with_password", "admin", "wrong"); code != "SESSION_AUTHENTICATION_FAILED" || len(data) == 0 {
		t.Fatalf("a wrong password: %s %v", code, data)
	}
	pools, code, _ := e.jsonrpc("pool.get_all_records", ref)
	if code != "" || len(pools.(map[string]any)) != 1 {
		t.Fatalf("pool.get_all_records: %v %s", pools, code)
	}
	var poolRef string
	var pool map[string]any
	for k, v := range pools.(map[string]any) {
		poolRef, pool = k, v.(map[string]any)
	}
	master, _, _ := e.jsonrpc("pool.get_master", ref, poolRef)
	if master != pool["master"] || master != "OpaqueRef:"+e.s.NodeGUID() {
		t.Fatalf("the master %v, the record's %v", master, pool["master"])
	}
	if v, _, _ := e.jsonrpc("host.get_API_version_major", ref, master); v != float64(2) {
		t.Fatalf("API major %v", v)
	}
	methods, _, _ := e.jsonrpc("system.listMethods")
	if ms := methods.([]any); len(ms) < 10 {
		t.Fatalf("listMethods %v", ms)
	}
	for _, c := range []struct {
		method string
		params []any
		code   string
	}{
		{"VDI.no_such_call", []any{ref}, "MESSAGE_METHOD_UNKNOWN"},
		{"pool.get_record", []any{ref}, "MESSAGE_PARAMETER_COUNT_MISMATCH"},
		{"pool.get_record", []any{"OpaqueRef:nope", poolRef}, "SESSION_INVALID"},
		{"pool.get_record", []any{ref, "OpaqueRef:nope"}, "HANDLE_INVALID"},
		{"session.login_with_password", []any{"admin"}, "MESSAGE_PARAMETER_COUNT_MISMATCH"},
		{"session.login_with_password", []any{"admin", 7}, "FIELD_TYPE_ERROR"},
	} {
		if _, code, _ := e.jsonrpc(c.method, c.params...); code != c.code {
			t.Errorf("%s%v: %q, want %s", c.method, c.params, code, c.code)
		}
	}

	// XML-RPC at xapi's path, as XenAPI.py sends it.
	out := e.xmlrpc("/", `<?xml version='1.0'?><methodCall><methodName>session.get_this_host</methodName><params>`+
		`<param><value><string>`+ref+`</string></value></param><param><value><string>`+ref+`</string></value></param></params></methodCall>`)
	if !strings.Contains(out, "<value>Success</value>") || !strings.Contains(out, e.s.NodeGUID()) {
		t.Fatalf("XML-RPC get_this_host: %s", out)
	}
	out = e.xmlrpc("/xmlrpc", `<methodCall><methodName>pool.get_all</methodName><params><param><value>OpaqueRef:x</value></param></params></methodCall>`)
	if !strings.Contains(out, "<value>Failure</value>") || !strings.Contains(out, "<value>SESSION_INVALID</value>") {
		t.Fatalf("XML-RPC failure: %s", out)
	}
	if out := e.xmlrpc("/xmlrpc", `<methodCall><methodName>`); !strings.Contains(out, "XMLRPC_UNMARSHAL_FAILURE") {
		t.Fatalf("malformed XML-RPC: %s", out)
	}
	resp, err := http.Post(e.srv.URL+"/jsonrpc", "application/json", strings.NewReader(`{"method":`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "JSONRPC_UNMARSHAL_FAILURE") {
		t.Fatalf("malformed JSON-RPC: %d %s", resp.StatusCode, b)
	}

	// The session ref names NBD exports, as get_nbd_info's does; logout
	// ends the session and the NBD sessions it opened.
	v := e.createVDI(map[string]any{"name_label": "x", "virtual_size": 1 << 20})
	c := nbdtest.Connect(t, "tcp", e.nbdAddr, nbdtest.Negotiation{Export: "/" + v.UUID + "?session_id=" + ref})
	c.Disconnect()
	x, _, err := e.s.NBDExports(NBDAuthToken).Open(&nbd.Conn{}, "/"+v.UUID+"?session_id="+ref)
	if err != nil {
		t.Fatalf("opening the export with the session: %v", err)
	}
	defer x.Close()
	nbdSession := x.(nbd.Revocable).Context()
	if nbdSession.Err() != nil {
		t.Fatal("the NBD session ended before logout")
	}
	if _, code, _ := e.jsonrpc("session.logout", ref); code != "" {
		t.Fatalf("logout: %s", code)
	}
	if !errors.Is(context.Cause(nbdSession), auth.ErrTokenRevoked) {
		t.Fatalf("after logout the NBD session: %v, want it ended by the revocation", context.Cause(nbdSession))
	}
	if _, code, _ := e.jsonrpc("pool.get_all", ref); code != "SESSION_INVALID" {
		t.Fatalf("after logout: %q", code)
	}
}

// SR and VDI reads: records with handles, getters, lookups, and the same
// fields the REST surface answers.
func TestXenAPIReads(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "web", "virtual_size": 1 << 30})
	e.post(v.UUID, "enable_cbt", nil)
	snap := e.post(v.UUID, "snapshot", nil)
	res, _, _ := e.jsonrpc("session.login_with_password", "admin", adminPassword)
	sess := res.(string)
	all, code, _ := e.jsonrpc("VDI.get_all_records", sess)
	recs, _ := all.(map[string]any)
	if code != "" || len(recs) != 2 {
		t.Fatalf("VDI.get_all_records: %v %s", all, code)
	}
	ref, _, _ := e.jsonrpc("VDI.get_by_uuid", sess, v.UUID)
	rec := recs[ref.(string)].(map[string]any)
	if rec["name_label"] != "web" || rec["virtual_size"] != float64(1<<30) || rec["cbt_enabled"] != true ||
		rec["SR"] != "OpaqueRef:"+v.SR || len(rec["snapshots"].([]any)) != 1 || rec["snapshots"].([]any)[0] != "OpaqueRef:"+snap.UUID {
		t.Fatalf("the VDI's record %v", rec)
	}
	if got, _, _ := e.jsonrpc("VDI.get_snapshot_of", sess, "OpaqueRef:"+snap.UUID); got != ref {
		t.Fatalf("snapshot_of %v, want %v", got, ref)
	}
	if got, _, _ := e.jsonrpc("VDI.get_virtual_size", sess, ref); got != float64(1<<30) {
		t.Fatalf("get_virtual_size %v", got)
	}
	srRec, code, _ := e.jsonrpc("SR.get_record", sess, rec["SR"])
	if code != "" || srRec.(map[string]any)["name_label"] != "local" || len(srRec.(map[string]any)["VDIs"].([]any)) != 2 {
		t.Fatalf("SR.get_record %v %s", srRec, code)
	}
	byName, _, _ := e.jsonrpc("SR.get_by_name_label", sess, "local")
	if l := byName.([]any); len(l) != 1 || l[0] != rec["SR"] {
		t.Fatalf("SR.get_by_name_label %v", byName)
	}
	for _, c := range []struct {
		method string
		params []any
		code   string
	}{
		{"VDI.get_record", []any{sess, "OpaqueRef:" + "00000000-0000-4000-8000-000000000000"}, "HANDLE_INVALID"},
		{"VDI.get_record", []any{sess, "nonsense"}, "HANDLE_INVALID"},
		{"VDI.get_by_uuid", []any{sess, "nonsense"}, "UUID_INVALID"},
		{"SR.get_record", []any{sess, ref}, "HANDLE_INVALID"},
		{"VDI.get_record", []any{sess, 7}, "HANDLE_INVALID"},
	} {
		if _, code, _ := e.jsonrpc(c.method, c.params...); code != c.code {
			t.Errorf("%s%v: %q, want %s", c.method, c.params, code, c.code)
		}
	}
	// Over XML-RPC, integers travel as strings and the snapshot time as
	// dateTime, as xapi sends them.
	out := e.xmlrpc("/", `<methodCall><methodName>VDI.get_record</methodName><params><param><value>`+sess+
		`</value></param><param><value>`+ref.(string)+`</value></param></params></methodCall>`)
	if !strings.Contains(out, "<member><name>virtual_size</name><value>1073741824</value></member>") ||
		!strings.Contains(out, "<name>snapshot_time</name><value><dateTime.iso8601>") {
		t.Fatalf("VDI.get_record over XML-RPC: %s", out)
	}
}

// The calls of Xen Orchestra's incremental backup, synchronously: create,
// enable_cbt, writes over NBD through get_nbd_info's export (the session
// ref in it), snapshots, list_changed_blocks, data_destroy, destroy; and
// the service's refusals as xapi's errors.
func TestXenAPIBackupCalls(t *testing.T) {
	e := withNBD(t, "z")
	res, _, _ := e.jsonrpc("session.login_with_password", "admin", adminPassword, "1.0", "xo")
	sess := res.(string)
	must := func(method string, params ...any) any { t.Helper(); return e.xenOK(sess, method, params...) }
	srs := must("SR.get_all").([]any)
	vdi := must("VDI.create", map[string]any{"name_label": "disk", "SR": srs[0], "virtual_size": "8388608",
		"type": "user", "sharable": false, "read_only": false, "other_config": map[string]any{}}).(string)
	must("VDI.enable_cbt", vdi)
	infos := must("VDI.get_nbd_info", vdi).([]any)
	export := infos[0].(map[string]any)["exportname"].(string)
	if !strings.HasSuffix(export, "?session_id="+sess) {
		t.Fatalf("the export name %q does not carry the session", export)
	}
	write := func(off uint64) {
		c := nbdtest.Connect(t, "tcp", e.nbdAddr, nbdtest.Negotiation{Export: export})
		c.Write(off, pattern(byte(off>>16), 4096))
		c.Disconnect()
		waitDetached(t, e, strings.TrimPrefix(vdi, "OpaqueRef:"))
	}
	write(0)
	base := must("VDI.snapshot", vdi, map[string]any{}).(string)
	write(3 << 16)
	write(100 << 16)
	next := must("VDI.snapshot", vdi, map[string]any{}).(string)
	b64 := must("VDI.list_changed_blocks", base, next).(string)
	bits, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	var changed []int
	for i := range len(bits) * 8 {
		if bits[i/8]&(0x80>>(i%8)) != 0 {
			changed = append(changed, i)
		}
	}
	if len(changed) != 2 || changed[0] != 3 || changed[1] != 100 {
		t.Fatalf("changed blocks %v", changed)
	}
	must("VDI.data_destroy", base)
	if typ := must("VDI.get_type", base); typ != "cbt_metadata" {
		t.Fatalf("after data_destroy the snapshot is %v", typ)
	}
	// The next cycle compares against the CBT metadata.
	b64 = must("VDI.list_changed_blocks", base, next).(string)
	if b64 == "" {
		t.Fatal("no bitmap from the CBT metadata")
	}
	if _, code, _ := e.jsonrpc("VDI.get_nbd_info", sess, base); code != "VDI_INCOMPATIBLE_TYPE" {
		t.Fatalf("get_nbd_info of CBT metadata: %q", code)
	}
	if _, code, _ := e.jsonrpc("VDI.resize", sess, vdi, "1"); code == "" {
		t.Fatal("a shrink was taken")
	}
	if _, code, _ := e.jsonrpc("VDI.create", sess, map[string]any{"virtual_size": "x"}); code != "FIELD_TYPE_ERROR" {
		t.Fatalf("a bad size: %q", code)
	}
	for _, r := range []string{next, base, vdi} {
		must("VDI.destroy", r)
	}
	if _, code, _ := e.jsonrpc("VDI.get_record", sess, vdi); code != "HANDLE_INVALID" {
		t.Fatalf("a destroyed VDI: %q", code)
	}
}

// waitDetached waits until a VDI has no attachment left (detach follows an
// NBD disconnect), failing after 5 s.
func waitDetached(t *testing.T, e *env, id string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if len(e.vdi(id).VBDs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("VDI %s still attached after 5 s", id)
		}
	}
}

// The xen-api client's connect and callAsync, as its sequence goes:
// login, pool.get_all_records, system.listMethods, event.inject, the
// get_all_records of each class, the event.from loop; an Async. call whose
// task ends in an event carrying its result as XML-RPC value text; the
// changes it made as events.
func TestXenAPIEventsAndTasks(t *testing.T) {
	e := newEnv(t)
	res, _, _ := e.jsonrpc("session.login_with_password", "admin", adminPassword, "1.0", "xen-api")
	sess := res.(string)
	must := func(method string, params ...any) any { t.Helper(); return e.xenOK(sess, method, params...) }
	var poolRef string
	for ref := range must("pool.get_all_records").(map[string]any) {
		poolRef = ref
	}
	methods, _, _ := e.jsonrpc("system.listMethods")
	if !slices.Contains(methods.([]any), "Async.VDI.snapshot") || !slices.Contains(methods.([]any), "VDI.get_all_records") ||
		slices.Contains(methods.([]any), "Async.VDI.get_all_records") {
		t.Fatal("listMethods lacks Async.VDI.snapshot or VDI.get_all_records, or lists an Async. read")
	}
	token := must("event.inject", "pool", poolRef).(string)
	for _, class := range []string{"VDI", "SR", "task", "pool", "host"} {
		must(class + ".get_all_records")
	}
	from := func(token string) (events []map[string]any, next string) {
		t.Helper()
		return e.eventsFrom(sess, []any{"*"}, token, 2.0)
	}
	evs, token := from(token)
	if len(evs) == 0 || evs[0]["class"] != "pool" || evs[0]["operation"] != "mod" {
		t.Fatalf("the injected event: %v", evs)
	}
	// A VDI made through REST shows as an add.
	v := e.createVDI(map[string]any{"name_label": "rest-made", "virtual_size": 1 << 20})
	evs, token = from(token)
	if len(evs) != 2 || !hasEvent(evs, "VDI", "add", "OpaqueRef:"+v.UUID) {
		t.Fatalf("after a REST create: %v", evs) // the VDI, and its SR's VDIs
	}
	taskRef := must("Async.VDI.snapshot", "OpaqueRef:"+v.UUID, map[string]any{}).(string)
	var result string
	for deadline := time.Now().Add(10 * time.Second); result == ""; {
		evs, token = from(token)
		for _, ev := range evs {
			if ev["class"] == "task" && ev["ref"] == taskRef {
				if snap := ev["snapshot"].(map[string]any); snap["status"] == "success" {
					result = snap["result"].(string)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no success event for the task in 10 s")
		}
	}
	snapRef := strings.TrimSuffix(strings.TrimPrefix(result, "<value>"), "</value>")
	if !strings.HasPrefix(snapRef, "OpaqueRef:") || must("VDI.get_is_a_snapshot", snapRef) != true {
		t.Fatalf("the task's result %q", result)
	}
	must("task.destroy", taskRef)
	if _, code, _ := e.jsonrpc("task.get_record", sess, taskRef); code != "HANDLE_INVALID" {
		t.Fatalf("a destroyed task: %q", code)
	}
	evs, _ = from(token)
	if !hasEvent(evs, "task", "del", taskRef) {
		t.Fatalf("the task's del: %v", evs)
	}
	// A failing Async. call: the task fails with xapi's error.
	taskRef = must("Async.VDI.resize", "OpaqueRef:"+v.UUID, "not a size").(string)
	rec := must("task.get_record", taskRef).(map[string]any)
	for i := 0; rec["status"] == "pending" && i < 100; i++ {
		time.Sleep(20 * time.Millisecond)
		rec = must("task.get_record", taskRef).(map[string]any)
	}
	if rec["status"] != "failure" || len(rec["error_info"].([]any)) == 0 {
		t.Fatalf("a failed task %v", rec)
	}
	for _, c := range []struct {
		method string
		params []any
		code   string
	}{
		{"Async.session.logout", []any{sess}, "MESSAGE_METHOD_UNKNOWN"},
		{"event.from", []any{sess, []any{"*"}, "999999", 0.1}, "EVENT_FROM_TOKEN_PARSE_FAILURE"},
		{"event.inject", []any{sess, "VDI", poolRef}, "HANDLE_INVALID"},
	} {
		if _, code, _ := e.jsonrpc(c.method, c.params...); code != c.code {
			t.Errorf("%s: %q, want %s", c.method, code, c.code)
		}
	}
}

func hasEvent(evs []map[string]any, class, op, ref string) bool {
	for _, ev := range evs {
		if ev["class"] == class && ev["operation"] == op && ev["ref"] == ref {
			return true
		}
	}
	return false
}

// Who uses a disk: an NBD client attached through get_nbd_info's export is
// a VBD of the VDI (RW, plugged, no VM) for as long as it is connected, and
// events tell its coming and going; the VM class is empty.
func TestXenAPIVBDs(t *testing.T) {
	e := withNBD(t, "z")
	res, _, _ := e.jsonrpc("session.login_with_password", "admin", adminPassword)
	sess := res.(string)
	must := func(method string, params ...any) any { t.Helper(); return e.xenOK(sess, method, params...) }
	v := e.createVDI(map[string]any{"name_label": "used", "virtual_size": 1 << 20})
	vdi := "OpaqueRef:" + v.UUID
	token := must("event.from", []any{"VBD"}, "", 0.1).(map[string]any)["token"].(string)
	if got := must("VDI.get_VBDs", vdi).([]any); len(got) != 0 {
		t.Fatalf("VBDs before any client: %v", got)
	}
	export := must("VDI.get_nbd_info", vdi).([]any)[0].(map[string]any)["exportname"].(string)
	c := nbdtest.Connect(t, "tcp", e.nbdAddr, nbdtest.Negotiation{Export: export})
	vbds := must("VDI.get_VBDs", vdi).([]any)
	if len(vbds) != 1 {
		t.Fatalf("VBDs with one client: %v", vbds)
	}
	vbd := vbds[0].(string)
	rec := must("VBD.get_record", vbd).(map[string]any)
	if rec["VDI"] != vdi || rec["mode"] != "RW" || rec["currently_attached"] != true || rec["VM"] != "OpaqueRef:NULL" || rec["type"] != "Disk" {
		t.Fatalf("the VBD's record %v", rec)
	}
	if all := must("VBD.get_all").([]any); len(all) != 1 || all[0] != vbd {
		t.Fatalf("VBD.get_all %v", all)
	}
	if got := must("VBD.get_VDI", vbd); got != vdi {
		t.Fatalf("VBD.get_VDI %v", got)
	}
	evs, token := e.eventsFrom(sess, []any{"VBD"}, token, 2.0)
	if !hasEvent(evs, "VBD", "add", vbd) {
		t.Fatalf("no add event for the VBD: %v", evs)
	}
	c.Disconnect()
	waitDetached(t, e, v.UUID)
	if _, code, _ := e.jsonrpc("VBD.get_record", sess, vbd); code != "HANDLE_INVALID" {
		t.Fatalf("the VBD of a gone client: %q", code)
	}
	evs, _ = e.eventsFrom(sess, []any{"VBD"}, token, 2.0)
	if !hasEvent(evs, "VBD", "del", vbd) {
		t.Fatalf("no del event for the VBD: %v", evs)
	}
	if all := must("VM.get_all").([]any); len(all) != 0 {
		t.Fatalf("VM.get_all %v", all)
	}
	if all := must("VM.get_all_records").(map[string]any); len(all) != 0 {
		t.Fatalf("VM.get_all_records %v", all)
	}
	if _, code, _ := e.jsonrpc("VM.get_record", sess, "OpaqueRef:"+v.UUID); code != "HANDLE_INVALID" {
		t.Fatalf("VM.get_record: %q", code)
	}
}

// Every class's records and getters agree: each field of a record has its
// get_<field>, answering the same value, and each getter a field.
func TestXenAPIClassFields(t *testing.T) {
	e := withNBD(t, "z")
	res, _, _ := e.jsonrpc("session.login_with_password", "admin", adminPassword)
	sess := res.(string)
	must := func(method string, params ...any) any { t.Helper(); return e.xenOK(sess, method, params...) }
	v := e.createVDI(map[string]any{"name_label": "f", "virtual_size": 1 << 20})
	task := must("Async.VDI.snapshot", "OpaqueRef:"+v.UUID, map[string]any{}).(string) // a task
	// Done before the records are read, or the VDI's snapshots could
	// change between its record and its getter (CI saw that once).
	if done := e.waitTask(strings.TrimPrefix(task, "OpaqueRef:")); done.Status != api.TaskSuccess {
		t.Fatalf("the snapshot task ended %s", done.Status)
	}
	export := must("VDI.get_nbd_info", "OpaqueRef:"+v.UUID).([]any)[0].(map[string]any)["exportname"].(string)
	c := nbdtest.Connect(t, "tcp", e.nbdAddr, nbdtest.Negotiation{Export: export}) // a VBD
	defer c.Disconnect()
	methods := map[string]bool{}
	list, _, _ := e.jsonrpc("system.listMethods")
	for _, m := range list.([]any) {
		methods[m.(string)] = true
	}
	for _, class := range []string{"VDI", "SR", "task", "pool", "host", "VBD"} {
		all := must(class + ".get_all_records").(map[string]any)
		if len(all) == 0 {
			t.Fatalf("%s: no objects to check", class)
		}
		for ref, r := range all {
			rec := r.(map[string]any)
			for f, want := range rec {
				if !methods[class+".get_"+f] {
					t.Errorf("%s.%s has no getter", class, f)
					continue
				}
				got := must(class+".get_"+f, ref)
				if f != "current_operations" && f != "allowed_operations" && f != "status" && f != "progress" &&
					f != "finished" && f != "result" && f != "physical_utilisation" && !reflect.DeepEqual(got, want) {
					t.Errorf("%s.get_%s = %v, the record has %v", class, f, got, want)
				}
			}
			for m := range methods {
				if f, ok := strings.CutPrefix(m, class+".get_"); ok && !strings.HasPrefix(f, "by_") && f != "all" &&
					f != "all_records" && f != "record" && !strings.HasPrefix(m, "Async.") {
					if _, ok := rec[f]; !ok && !extraGetter(class, f) {
						t.Errorf("%s.get_%s answers no field of the record", class, f)
					}
				}
			}
			break
		}
	}
}

// extraGetter are getters that are not record fields: xapi's own.
func extraGetter(class, f string) bool {
	return class == "VDI" && (f == "nbd_info" || f == "statistics")
}

// Every XenAPI call the REST surface declares (seed 003's) is a message of
// the wire protocol too.
func TestXenAPICoversREST(t *testing.T) {
	have := map[string]bool{}
	for _, m := range xenapi.MethodNames() {
		have[m] = true
	}
	n := 0
	for _, r := range api.Table.All() {
		for _, x := range r.XenAPI {
			n++
			if !have[r.Class+"."+x] {
				t.Errorf("%s.%s (REST %s) is no XenAPI message", r.Class, x, r.Name())
			}
		}
	}
	if n < 50 {
		t.Fatalf("only %d XenAPI names in the REST table", n)
	}
}
