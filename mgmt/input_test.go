package mgmt

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

// Bad input gets a 4xx with a clear error body and changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "victim", "tags": []string{"a"}})
	vp := "/api/vdis/" + v.UUID
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"malformed JSON", "POST", "/api/vdis", `{"virtual_size":`, 400, api.CodeInvalidJSON},
		{"not an object", "POST", "/api/vdis", `[1,2]`, 400, api.CodeInvalidJSON},
		{"trailing data", "POST", "/api/vdis", `{"virtual_size":1048576} {}`, 400, api.CodeInvalidJSON},
		{"wrong type", "POST", "/api/vdis", `{"virtual_size":"big"}`, 400, api.CodeFieldTypeError},
		{"float size", "POST", "/api/vdis", `{"virtual_size":1.5}`, 400, api.CodeFieldTypeError},
		{"overflowing size", "POST", "/api/vdis", `{"virtual_size":1e30}`, 400, api.CodeFieldTypeError},
		{"negative size", "POST", "/api/vdis", `{"virtual_size":-4096}`, 400, api.CodeInvalidValue},
		{"zero size", "POST", "/api/vdis", `{"virtual_size":0}`, 400, api.CodeInvalidValue},
		{"absurd size", "POST", "/api/vdis", `{"virtual_size":1152921504606846976}`, 400, api.CodeInvalidValue},
		{"missing size", "POST", "/api/vdis", `{"name_label":"x"}`, 400, api.CodeInvalidValue},
		{"unknown field", "POST", "/api/vdis", `{"virtual_size":1048576,"colour":"red"}`, 400, api.CodeUnknownField},
		{"bad enum", "POST", "/api/vdis", `{"virtual_size":1048576,"type":"floppy"}`, 400, api.CodeInvalidValue},
		{"unknown SR", "POST", "/api/vdis", `{"virtual_size":1048576,"SR":"nowhere"}`, 404, api.CodeUUIDInvalid},
		{"map of numbers", "POST", "/api/vdis", `{"virtual_size":1048576,"other_config":{"a":1}}`, 400, api.CodeFieldTypeError},
		{"empty map key", "POST", vp + "/add_to_other_config", `{"key":"","value":"x"}`, 400, api.CodeInvalidValue},
		{"tags not a list", "POST", vp + "/set_tags", `{"value":"a"}`, 400, api.CodeFieldTypeError},
		{"bool as string", "POST", vp + "/set_read_only", `{"value":"yes"}`, 400, api.CodeFieldTypeError},
		{"null value", "POST", vp + "/set_read_only", `{"value":null}`, 400, api.CodeInvalidValue},
		{"unknown uuid", "POST", "/api/vdis/0f0f0f0f-0000-0000-0000-000000000000/snapshot", ``, 404, api.CodeUUIDInvalid},
		{"shrink", "POST", vp + "/resize", `{"size":1}`, 409, api.CodeShrinkRefused},
		{"unknown query", "GET", "/api/vdis?colour=red", ``, 400, api.CodeUnknownField},
		{"repeated query", "GET", "/api/vdis?tag=a&tag=b", ``, 400, api.CodeInvalidValue},
		{"bad page", "GET", "/api/vdis?page=x", ``, 400, api.CodeFieldTypeError},
		{"negative page", "GET", "/api/vdis?page=-1", ``, 400, api.CodeInvalidValue},
		{"bad sort", "GET", "/api/vdis?sort=nope", ``, 400, api.CodeInvalidValue},
		{"sort by a map", "GET", "/api/vdis?sort=other_config", ``, 400, api.CodeInvalidValue},
		{"unknown route", "GET", "/api/vdiz", ``, 404, api.CodeMethodUnknown},
		{"unknown call", "POST", vp + "/explode", ``, 404, api.CodeMethodUnknown},
		{"wrong method", "PUT", vp, ``, 405, api.CodeMethodNotAllowed},
		{"bad role", "POST", "/api/users", `{"username":"x","password":"12345678","role":"root"}`, 400, api.CodeInvalidValue},
		{"bad vPool name", "POST", "/api/vpools", `{"name":"a b"}`, 400, api.CodeInvalidValue},
		{"bad backend", "POST", "/api/vpools", `{"name":"p","backend_type":"S3"}`, 400, api.CodeInvalidValue},
		{"rdma", "POST", "/api/vpools", `{"name":"p","rdma_enabled":true}`, 400, api.CodeInvalidValue},
		{"too large", "POST", "/api/vdis", `{"name_label":"` + strings.Repeat("x", rpc.MaxBodySize) + `","virtual_size":1}`, 413, api.CodeRequestTooLarge},
		{"long name", "POST", "/api/vdis", `{"name_label":"` + strings.Repeat("x", 2000) + `","virtual_size":1048576}`, 400, api.CodeInvalidValue},
	}
	before := e.vdi(v.UUID)
	vols := e.volumes()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			e.fails(c.status, c.code, c.method, c.path, e.admin, c.body)
		})
	}
	e.t = t
	after := e.vdi(v.UUID)
	before.PhysicalUtilisation, after.PhysicalUtilisation = 0, 0
	if !reflect.DeepEqual(before, after) || e.volumes() != vols {
		t.Fatalf("bad input changed state:\nbefore %+v\nafter  %+v\nvolumes %d -> %d", before, after, vols, e.volumes())
	}
	var pools api.List[api.VPool]
	e.must(200, "GET", "/api/vpools", e.admin, nil, &pools)
	if pools.Paging.TotalItems != 1 {
		t.Fatalf("a refused vPool was created: %+v", pools.Data)
	}
}

func TestPagingAndSorting(t *testing.T) {
	e := newEnv(t)
	for i, name := range []string{"c", "a", "e", "b", "d"} {
		e.createVDI(map[string]any{"name_label": name, "virtual_size": (i + 1) << 20})
	}
	var l api.List[api.VDI]
	e.must(200, "GET", "/api/vdis?sort=name_label", e.admin, nil, &l)
	if names(l.Data) != "abcde" || l.Paging != (api.Paging{TotalItems: 5, CurrentPage: 1, MaxPage: 1, StartNumber: 1, EndNumber: 5}) {
		t.Fatalf("sorted list %s %+v", names(l.Data), l.Paging)
	}
	e.must(200, "GET", "/api/vdis?sort=-virtual_size,name_label&page=2&page_size=2", e.admin, nil, &l)
	if names(l.Data) != "ea" || l.Paging != (api.Paging{TotalItems: 5, CurrentPage: 2, MaxPage: 3, StartNumber: 3, EndNumber: 4}) {
		t.Fatalf("page 2: %s %+v", names(l.Data), l.Paging)
	}
	e.must(200, "GET", "/api/vdis?sort=name_label&page=9&page_size=2", e.admin, nil, &l)
	if names(l.Data) != "e" || l.Paging.CurrentPage != 3 {
		t.Fatalf("page past the end: %s %+v", names(l.Data), l.Paging)
	}
	l = api.List[api.VDI]{}
	e.must(200, "GET", "/api/vdis?page_size=2", e.admin, nil, &l)
	if len(l.Data) != 5 || l.Paging.MaxPage != 1 {
		t.Fatalf("page_size without page: %+v", l.Paging)
	}
	e.must(200, "GET", "/api/vdis?name_label=d", e.admin, nil, &l)
	if names(l.Data) != "d" {
		t.Fatalf("get_by_name_label: %s", names(l.Data))
	}
}

func names(vs []api.VDI) string {
	var b strings.Builder
	for _, v := range vs {
		b.WriteString(v.NameLabel)
	}
	return b.String()
}

// FuzzCalls sends arbitrary bodies and query strings to every call, as a
// pool-admin, against a real store: nothing may answer 5xx or panic, and
// every error is the JSON error body.
func FuzzCalls(f *testing.F) {
	for i, body := range []string{``, `{}`, `null`, `{"virtual_size":4194304}`, `{"value":"x"}`, `{"key":"a","value":"b"}`,
		`{"size":8388608}`, `{"value":{"a":"b"}}`, `{"value":["a"]}`, `{"value":true}`, `{"sr":"local"}`, `{"name":"p2"}`,
		`{"username":"u","password":"password","role":"vm-admin"}`, `{"uuid":"00000000-0000-0000-0000-000000000000"}`} {
		f.Add(uint16(i*7), []byte(body), "")
	}
	f.Add(uint16(3), []byte(`{"virtual_size":1e400}`), "page=2&sort=-name_label")
	f.Add(uint16(40), []byte(`{"value":"\u0000\ud800"}`), "vdi_from=x")
	e := newEnv(f)
	v := e.createVDI(map[string]any{"name_label": "fuzz"})
	calls := api.All()
	f.Fuzz(func(t *testing.T, which uint16, body []byte, query string) {
		rpc := calls[int(which)%len(calls)]
		if rpc.Auth == api.AuthPassword || rpc == &api.TokenDelete.RPC || rpc == &api.UserUpdate.RPC || rpc == &api.UserDelete.RPC {
			return // these would lock the fuzzer's own user out
		}
		path := strings.NewReplacer("{uuid}", v.UUID, "{guid}", "local", "{username}", "nobody").Replace(rpc.Path)
		if query != "" {
			path += "?" + strings.NewReplacer("#", "", " ", "+").Replace(query)
		}
		req, err := http.NewRequest(rpc.Method(), e.srv.URL+path, strings.NewReader(string(body)))
		if err != nil {
			return // not a request a client could send
		}
		req.Header.Set("Authorization", "Bearer "+e.admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s with %q: status %d", rpc.Method(), path, body, resp.StatusCode)
		}
		if resp.StatusCode >= 400 {
			var eb api.ErrorBody
			if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error == nil || eb.Error.Code == "" {
				t.Fatalf("%s %s: error %d without an error body", rpc.Method(), path, resp.StatusCode)
			}
		}
	})
}
