package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const vdiList = `{"data":[
 {"uuid":"11111111-aaaa","name_label":"disk0","virtual_size":10737418240,"physical_utilisation":2097152,"type":"user","is_a_snapshot":false,"cbt_enabled":true,"SR":"local","other_config":{}},
 {"uuid":"22222222-bbbb","name_label":"a much longer name","virtual_size":1048576,"physical_utilisation":0,"type":"user","is_a_snapshot":true,"cbt_enabled":false,"SR":"local","other_config":{}}
],"_paging":{"total_items":2,"current_page":1,"max_page":1,"start_number":1,"end_number":2}}`

func TestTableOutput(t *testing.T) {
	f := newFake(t)
	f.on("GET", "/api/vdis", http.StatusOK, vdiList)
	res := f.do(t, "vdi", "list").wantCode(t, 0)
	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want header + 2 rows:\n%s", res.stdout)
	}
	head := strings.Fields(lines[0])
	want := []string{"UUID", "NAME_LABEL", "VIRTUAL_SIZE", "PHYSICAL_UTILISATION", "TYPE", "IS_A_SNAPSHOT", "CBT_ENABLED", "SR"}
	if strings.Join(head, " ") != strings.Join(want, " ") {
		t.Fatalf("header %q, want %q", head, want)
	}
	for _, w := range []string{"10 GiB", "2 MiB", "1 MiB", "0 B", "a much longer name", "true", "local"} {
		if !strings.Contains(res.stdout, w) {
			t.Errorf("table lacks %q:\n%s", w, res.stdout)
		}
	}
	// Aligned: every column starts at the same offset on every line.
	col := strings.Index(lines[0], "VIRTUAL_SIZE")
	if strings.Index(lines[1], "10 GiB") != col || strings.Index(lines[2], "1 MiB") != col {
		t.Fatalf("columns not aligned:\n%s", res.stdout)
	}

	// --json: the body, pretty-printed, numbers exact.
	res = f.do(t, "vdi", "list", "--json").wantCode(t, 0)
	var v map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, res.stdout)
	}
	if !strings.Contains(res.stdout, "\n  \"data\": [") || !strings.Contains(res.stdout, `"virtual_size": 10737418240`) {
		t.Fatalf("--json not pretty:\n%s", res.stdout)
	}

	// Other classes' columns.
	f.on("GET", "/api/vpools", http.StatusOK, `{"data":[{"guid":"g1","name":"local","backend_type":"LOCAL","size":1099511627776,"stored_data":1536,"status":"RUNNING","statistics":{}}],"_paging":{"total_items":1}}`)
	f.on("GET", "/api/tasks", http.StatusOK, `{"data":[{"uuid":"t1","name_label":"VDI.copy","status":"pending","progress":0.5,"object":"u1"}],"_paging":{"total_items":1}}`)
	f.on("GET", "/api/users", http.StatusOK, `{"data":[{"username":"admin","role":"pool-admin","created":"2026-01-01T00:00:00Z"}],"_paging":{"total_items":1}}`)
	f.on("GET", "/api/vdis/U/nbd_info", http.StatusOK, `[{"exportname":"U","address":"127.0.0.1","port":10809,"cert":"-----BEGIN\nX","subject":"","uri":"nbd://127.0.0.1:10809/U"}]`)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"vpool", "list"}, []string{"GUID", "NAME", "BACKEND_TYPE", "SIZE", "STORED_DATA", "STATUS", "1 TiB", "1.5 KiB", "RUNNING"}},
		{[]string{"task", "list"}, []string{"UUID", "NAME_LABEL", "STATUS", "PROGRESS", "OBJECT", "VDI.copy", "50%"}},
		{[]string{"user", "list"}, []string{"USERNAME", "ROLE", "pool-admin"}},
		{[]string{"vdi", "nbd-info", "U"}, []string{"URI", "nbd://127.0.0.1:10809/U", "10809"}},
	} {
		res := f.do(t, c.args...).wantCode(t, 0)
		for _, w := range c.want {
			if !strings.Contains(res.stdout, w) {
				t.Errorf("%q lacks %q:\n%s", c.args, w, res.stdout)
			}
		}
		if strings.Contains(res.stdout, "BEGIN") || strings.Contains(res.stdout, "CREATED") {
			t.Errorf("%q shows a column it should not:\n%s", c.args, res.stdout)
		}
	}

	// A partial page says so; an empty list is a header.
	f.set("GET", "/api/users", http.StatusOK, `{"data":[{"username":"a","role":"read-only"}],"_paging":{"total_items":3,"current_page":2,"max_page":3,"start_number":2,"end_number":2}}`)
	f.reset()
	if res := f.do(t, "user", "list", "--page", "2", "--page-size", "1").wantCode(t, 0); !strings.Contains(res.stdout, "page 2 of 3") {
		t.Errorf("no paging line:\n%s", res.stdout)
	}
	f.set("GET", "/api/vdis", http.StatusOK, `{"data":[],"_paging":{"total_items":0}}`)
	if res := f.do(t, "vdi", "list").wantCode(t, 0); strings.TrimSpace(res.stdout) != strings.Join(want, "  ") {
		t.Errorf("empty list: %q", res.stdout)
	}
}

func TestObjectAndValueOutput(t *testing.T) {
	f := newFake(t)
	f.on("GET", "/api/vdis/U", http.StatusOK, `{"uuid":"U","name_label":"disk0","virtual_size":1073741824,"SR":"local","other_config":{"k":"v"},"tags":["a","b"],"snapshot_of":"","read_only":false,"VBDs":[]}`)
	res := f.do(t, "vdi", "get", "U").wantCode(t, 0)
	want := "name_label: disk0\nother_config: {\"k\":\"v\"}\nread_only: false\nsnapshot_of: \nSR: local\ntags: [\"a\",\"b\"]\nuuid: U\nVBDs: []\nvirtual_size: 1073741824\n"
	if res.stdout != want {
		t.Fatalf("object output\n%s\nwant\n%s", res.stdout, want)
	}

	f.on("GET", "/api/vdis/U/get_virtual_size", http.StatusOK, `{"value":1073741824}`)
	f.on("GET", "/api/vdis/U/get_name_label", http.StatusOK, `{"value":"disk0"}`)
	f.on("GET", "/api/vdis/U/get_other_config", http.StatusOK, `{"value":{"k":"v"}}`)
	for args, want := range map[string]string{
		"vdi get-virtual-size U": "1073741824\n",
		"vdi get-name-label U":   "disk0\n",
		"vdi get_other_config U": "{\"k\":\"v\"}\n",
	} {
		if res := f.do(t, strings.Fields(args)...).wantCode(t, 0); res.stdout != want {
			t.Errorf("%s: %q, want %q", args, res.stdout, want)
		}
	}

	cb := `{"bitmap":"gAAB","granularity":65536,"changed_blocks":2,"virtual_size":1048576}`
	f.on("GET", "/api/vdis/T/list_changed_blocks", http.StatusOK, cb)
	if res := f.do(t, "vdi", "list-changed-blocks", "T", "--vdi-from", "F").wantCode(t, 0); res.stdout != "gAAB\n" {
		t.Errorf("list-changed-blocks: %q", res.stdout)
	}
	res = f.do(t, "vdi", "list-changed-blocks", "T", "--vdi-from", "F", "--json").wantCode(t, 0)
	jsonEqual(t, res.stdout, cb)

	// 204: nothing.
	f.on("DELETE", "/api/vdis/U", http.StatusNoContent, "")
	if res := f.do(t, "vdi", "destroy", "U").wantCode(t, 0); res.stdout != "" || res.stderr != "" {
		t.Errorf("204 printed %q / %q", res.stdout, res.stderr)
	}
}

func TestErrors(t *testing.T) {
	f := newFake(t)
	f.on("POST", "/api/vdis/U/resize", http.StatusConflict,
		`{"error":{"code":"VDI_IN_USE","params":["U","resize"],"message":"the VDI is attached"}}`)
	res := f.do(t, "vdi", "resize", "U", "--size", "4G").wantCode(t, exitAPI)
	if res.stderr != "vdiskctl: VDI_IN_USE [U, resize]: the VDI is attached\n" || res.stdout != "" {
		t.Fatalf("stderr %q stdout %q", res.stderr, res.stdout)
	}

	f.on("GET", "/api/vdis", http.StatusUnauthorized, `{"error":{"code":"SESSION_INVALID","params":[],"message":"no token"}}`)
	res = f.do(t, "vdi", "list").wantCode(t, exitAPI)
	if !strings.Contains(res.stderr, "vdiskctl: SESSION_INVALID: no token") || !strings.Contains(res.stderr, "vdiskctl login") {
		t.Fatalf("401: %q", res.stderr)
	}

	f.on("GET", "/api/vpools", http.StatusBadGateway, "upstream exploded")
	res = f.do(t, "vpool", "list").wantCode(t, exitAPI)
	if !strings.Contains(res.stderr, "502 Bad Gateway") || !strings.Contains(res.stderr, "upstream exploded") {
		t.Fatalf("non-JSON error: %q", res.stderr)
	}

	// https: a certificate nobody vouches for is a transport error unless
	// --insecure; --url wins over VDISKCTL_URL.
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"data":[],"_paging":{"total_items":0}}`)
	}))
	defer tlsSrv.Close()
	res = f.do(t, "vdi", "list", "--url", tlsSrv.URL).wantCode(t, exitTransport)
	if !strings.Contains(res.stderr, "--insecure") {
		t.Fatalf("TLS error: %q", res.stderr)
	}
	f.do(t, "vdi", "list", "--url", tlsSrv.URL, "--insecure").wantCode(t, 0)

	// Nobody listening: exit 3 with a hint.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	res = f.cli(t, "", map[string]string{"VDISKCTL_URL": "http://" + addr}, "vdi", "list").wantCode(t, exitTransport)
	if !strings.Contains(res.stderr, "cannot reach vdiskd") || !strings.Contains(res.stderr, "make run") {
		t.Fatalf("transport error: %q", res.stderr)
	}
}

func TestTaskWait(t *testing.T) {
	defer func(d time.Duration) { pollInterval = d }(pollInterval)
	pollInterval = time.Millisecond

	f := newFake(t)
	pending := `{"uuid":"T1","name_label":"VDI.copy","object":"U","status":"pending","progress":0,"result":null,"error":null}`
	f.on("POST", "/api/vdis/U/copy", http.StatusAccepted, pending)

	// Without --wait: the task's UUID.
	res := f.do(t, "vdi", "copy", "U").wantCode(t, 0)
	if res.stdout != "T1\n" {
		t.Fatalf("202 without --wait: %q", res.stdout)
	}

	// --wait polls until the task ends and prints its result.
	f.on("GET", "/api/tasks/T1", http.StatusOK, `{"uuid":"T1","status":"pending","progress":0.3}`)
	f.on("GET", "/api/tasks/T1", http.StatusOK, `{"uuid":"T1","status":"pending","progress":0.6}`)
	f.on("GET", "/api/tasks/T1", http.StatusOK, `{"uuid":"T1","status":"success","progress":1,"result":{"uuid":"NEW","name_label":"copy of disk0"}}`)
	f.reset()
	res = f.do(t, "vdi", "copy", "U", "--wait").wantCode(t, 0)
	if res.stdout != "name_label: copy of disk0\nuuid: NEW\n" {
		t.Fatalf("--wait output %q", res.stdout)
	}
	polls := 0
	for _, r := range f.requests() {
		if r.Method == "GET" && r.Path == "/api/tasks/T1" {
			polls++
		}
	}
	if polls != 3 {
		t.Fatalf("%d polls, want 3", polls)
	}

	// --wait --json: the final task.
	res = f.do(t, "vdi", "copy", "U", "--wait", "--json").wantCode(t, 0)
	jsonEqual(t, res.stdout, `{"uuid":"T1","status":"success","progress":1,"result":{"uuid":"NEW","name_label":"copy of disk0"}}`)

	// A failed task exits 1 with its error.
	f.on("POST", "/api/vdis/U/pool_migrate", http.StatusAccepted, `{"uuid":"T2","status":"pending"}`)
	f.on("GET", "/api/tasks/T2", http.StatusOK, `{"uuid":"T2","status":"failure","error":{"code":"SR_BACKEND_FAILURE_79","params":["U"],"message":"no room"}}`)
	res = f.do(t, "vdi", "pool-migrate", "U", "--sr", "p", "--wait").wantCode(t, exitAPI)
	if !strings.Contains(res.stderr, "task T2 failed: SR_BACKEND_FAILURE_79 [U]: no room") {
		t.Fatalf("failed task: %q", res.stderr)
	}
	f.on("POST", "/api/vpools/G/sync_vmachines", http.StatusAccepted, `{"uuid":"T3","status":"pending"}`)
	f.on("GET", "/api/tasks/T3", http.StatusOK, `{"uuid":"T3","status":"cancelled"}`)
	res = f.do(t, "vpool", "sync-vmachines", "G", "--wait").wantCode(t, exitAPI)
	if !strings.Contains(res.stderr, "task T3: cancelled") {
		t.Fatalf("cancelled task: %q", res.stderr)
	}
	f.set("GET", "/api/tasks/T3", http.StatusOK, `{"uuid":"T3","status":"success","result":null}`)
	res = f.do(t, "vpool", "sync-vmachines", "G", "--wait").wantCode(t, 0)
	if res.stdout != "task T3: success\n" {
		t.Fatalf("task without result: %q", res.stdout)
	}
}

// --field prints one field: of an object, of each list item, of a value.
func TestFieldOutput(t *testing.T) {
	f := newFake(t)
	f.on("GET", "/api/vdis", http.StatusOK, vdiList)
	f.on("GET", "/api/vdis/U", http.StatusOK, `{"uuid":"U","virtual_size":4194304,"tags":["a"]}`)
	f.on("GET", "/api/vdis/U/get_virtual_size", http.StatusOK, `{"value":4194304}`)
	if res := f.do(t, "vdi", "list", "--field", "uuid").wantCode(t, 0); res.stdout != "11111111-aaaa\n22222222-bbbb\n" {
		t.Fatalf("list --field uuid: %q", res.stdout)
	}
	if res := f.do(t, "vdi", "get", "U", "--field", "virtual_size").wantCode(t, 0); res.stdout != "4194304\n" {
		t.Fatalf("get --field virtual_size: %q", res.stdout)
	}
	if res := f.do(t, "vdi", "get-virtual-size", "U", "--field", "value").wantCode(t, 0); res.stdout != "4194304\n" {
		t.Fatalf("getter --field value: %q", res.stdout)
	}
	f.do(t, "vdi", "get", "U", "--field", "nope").wantCode(t, 2)
}
