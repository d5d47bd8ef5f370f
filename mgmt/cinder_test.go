package mgmt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
)

// cinder sends one request to the Cinder surface with X-Auth-Token.
func (e *env) cinder(method, path, token string, body any) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, e.body(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); len(out) > 0 && ct != "application/json" {
		e.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, out
}

// cinderOK sends a request that must answer want and decodes the body.
func (e *env) cinderOK(want int, method, path string, body any) map[string]any {
	e.t.Helper()
	code, buf := e.cinder(method, path, e.admin, body)
	if code != want {
		e.t.Fatalf("%s %s: %d, want %d: %s", method, path, code, want, buf)
	}
	out := map[string]any{}
	if len(buf) > 0 {
		if err := json.Unmarshal(buf, &out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, buf)
		}
	}
	return out
}

// cinderFails sends a request that must fail with status, in Cinder's
// fault body {"<name>": {"code": status, "message": ...}}.
func (e *env) cinderFails(status int, name, method, path, token string, body any) string {
	e.t.Helper()
	code, buf := e.cinder(method, path, token, body)
	var fb map[string]struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(buf, &fb); err != nil || len(fb) != 1 {
		e.t.Fatalf("%s %s: not a fault body (%v): %s", method, path, err, buf)
	}
	f, ok := fb[name]
	if code != status || !ok || f.Code != status || f.Message == "" {
		e.t.Fatalf("%s %s: %d %s, want %d %q: %s", method, path, code, buf, status, name, buf)
	}
	return f.Message
}

func field(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

func str(m map[string]any, path ...string) string { s, _ := field(m, path...).(string); return s }

func items(m map[string]any, key string) []map[string]any {
	var out []map[string]any
	for _, v := range m[key].([]any) {
		out = append(out, v.(map[string]any))
	}
	return out
}

// cinderState is everything the Cinder surface shows of tenant t1 and the
// XenAPI surface of the VDIs: what a refused call must leave as it was.
func (e *env) cinderState() string {
	e.t.Helper()
	var b strings.Builder
	for _, p := range []string{"/v3/t1/consistencygroups/detail?all_tenants=1", "/v3/t1/cgsnapshots/detail?all_tenants=1",
		"/v3/t1/volumes/detail?all_tenants=1", "/v3/t1/snapshots/detail?all_tenants=1", "/v3/t1/types"} {
		code, buf := e.cinder("GET", p, e.admin, nil)
		fmt.Fprintf(&b, "%s %d %s\n", p, code, buf)
	}
	code, buf := e.request("GET", "/api/vdis", e.admin, nil)
	fmt.Fprintf(&b, "vdis %d %s\n", code, buf)
	// Links name the server's address, which a restart changes.
	return strings.ReplaceAll(b.String(), strings.TrimPrefix(e.srv.URL, "http://"), "HOST")
}

func (e *env) cgCreate(tenant, name, types string) string {
	e.t.Helper()
	out := e.cinderOK(http.StatusAccepted, "POST", "/v3/"+tenant+"/consistencygroups",
		map[string]any{"consistencygroup": map[string]any{"name": name, "volume_types": types}})
	return str(out, "consistencygroup", "id")
}

func (e *env) volCreate(tenant, name string, extra map[string]any) string {
	e.t.Helper()
	v := map[string]any{"size": 1, "name": name}
	for k, x := range extra {
		v[k] = x
	}
	out := e.cinderOK(http.StatusAccepted, "POST", "/v3/"+tenant+"/volumes", map[string]any{"volume": v})
	return str(out, "volume", "id")
}

// The versions document, which every Cinder client reads first.
func TestCinderVersionDocument(t *testing.T) {
	e := newEnv(t)
	code, buf := e.cinder("GET", "/", "", nil)
	if code != http.StatusMultipleChoices {
		t.Fatalf("GET /: %d %s", code, buf)
	}
	var doc struct {
		Versions []struct {
			ID, Status, Version string
			MinVersion          string `json:"min_version"`
		}
	}
	if err := json.Unmarshal(buf, &doc); err != nil || len(doc.Versions) != 2 {
		t.Fatalf("GET /: %v %s", err, buf)
	}
	if v := doc.Versions[0]; v.ID != "v3.0" || v.Status != "CURRENT" || v.Version != "3.0" {
		t.Fatalf("v3 entry %+v", v)
	}
	if code, buf := e.cinder("GET", "/v3/", "", nil); code != 200 || !strings.Contains(string(buf), `"id":"v3.0"`) {
		t.Fatalf("GET /v3/: %d %s", code, buf)
	}
	if code, buf := e.cinder("GET", "/v2/", "", nil); code != 200 || !strings.Contains(string(buf), `"id":"v2.0"`) {
		t.Fatalf("GET /v2/: %d %s", code, buf)
	}
}

// The four flows of cinder-tempest-plugin's ConsistencyGroupsV2Test.
func TestCinderTempestFlows(t *testing.T) {
	e := newEnv(t)
	t.Run("create and delete a group with a volume", func(t *testing.T) {
		cg := e.cgCreate("t1", "cg-a", "local")
		if s := str(e.cinderOK(200, "GET", "/v2/t1/consistencygroups/"+cg, nil), "consistencygroup", "status"); s != "available" {
			t.Fatalf("group status %s", s)
		}
		vol := e.volCreate("t1", "vol-a", map[string]any{"consistencygroup_id": cg, "volume_type": "local"})
		if g := str(e.cinderOK(200, "GET", "/v2/t1/volumes/"+vol, nil), "volume", "consistencygroup_id"); g != cg {
			t.Fatalf("volume's group %q", g)
		}
		e.cinderOK(http.StatusAccepted, "POST", "/v2/t1/consistencygroups/"+cg+"/delete",
			map[string]any{"consistencygroup": map[string]any{"force": true}})
		e.cinderFails(404, "itemNotFound", "GET", "/v2/t1/volumes/"+vol, e.admin, nil)
		e.cinderFails(404, "itemNotFound", "GET", "/v2/t1/consistencygroups/"+cg, e.admin, nil)
	})
	t.Run("cgsnapshot create and delete", func(t *testing.T) {
		cg := e.cgCreate("t1", "cg-b", "local")
		vol := e.volCreate("t1", "vol-b", map[string]any{"consistencygroup_id": cg, "volume_type": "local"})
		out := e.cinderOK(http.StatusAccepted, "POST", "/v2/t1/cgsnapshots",
			map[string]any{"cgsnapshot": map[string]any{"consistencygroup_id": cg, "name": "snap-b"}})
		cgs := str(out, "cgsnapshot", "id")
		if str(out, "cgsnapshot", "name") != "snap-b" {
			t.Fatalf("create answered %v", out)
		}
		snaps := items(e.cinderOK(200, "GET", "/v2/t1/snapshots/detail?cgsnapshot_id="+cgs, nil), "snapshots")
		if len(snaps) != 1 || snaps[0]["volume_id"] != vol || snaps[0]["status"] != "available" {
			t.Fatalf("member snapshots %v", snaps)
		}
		e.cinderOK(http.StatusAccepted, "DELETE", "/v2/t1/cgsnapshots/"+cgs, nil)
		e.cinderFails(404, "itemNotFound", "GET", "/v2/t1/snapshots/"+snaps[0]["id"].(string), e.admin, nil)
		e.cinderFails(404, "itemNotFound", "GET", "/v2/t1/cgsnapshots/"+cgs, e.admin, nil)
		e.cinderOK(http.StatusAccepted, "POST", "/v2/t1/consistencygroups/"+cg+"/delete",
			map[string]any{"consistencygroup": map[string]any{"force": true}})
	})
	t.Run("create from a cgsnapshot and from a group", func(t *testing.T) {
		cg := e.cgCreate("t1", "cg-c", "local")
		vol := e.volCreate("t1", "vol-c", map[string]any{"consistencygroup_id": cg, "volume_type": "local"})
		e.write(vol, 0, pattern(1, 4096))
		cgs := str(e.cinderOK(http.StatusAccepted, "POST", "/v2/t1/cgsnapshots",
			map[string]any{"cgsnapshot": map[string]any{"consistencygroup_id": cg}}), "cgsnapshot", "id")
		e.write(vol, 0, pattern(2, 4096))
		for _, src := range []map[string]any{{"cgsnapshot_id": cgs}, {"source_cgid": cg}} {
			src["name"] = "from"
			out := e.cinderOK(http.StatusAccepted, "POST", "/v2/t1/consistencygroups/create_from_src",
				map[string]any{"consistencygroup-from-src": src})
			ncg := str(out, "consistencygroup", "id")
			if s := str(e.cinderOK(200, "GET", "/v2/t1/consistencygroups/"+ncg, nil), "consistencygroup", "status"); s != "available" {
				t.Fatalf("new group status %s", s)
			}
			vols := items(e.cinderOK(200, "GET", "/v2/t1/volumes/detail?consistencygroup_id="+ncg, nil), "volumes")
			if len(vols) != 1 {
				t.Fatalf("new group's volumes %v", vols)
			}
			want := pattern(2, 4096)
			if src["cgsnapshot_id"] != nil {
				want = pattern(1, 4096)
				if vols[0]["snapshot_id"] == nil {
					t.Fatalf("volume from a cgsnapshot names no snapshot: %v", vols[0])
				}
			}
			if got := e.read(vols[0]["id"].(string), 0, 4096); !bytes.Equal(got, want) {
				t.Fatalf("%v: the new volume holds other data", src)
			}
			e.cinderOK(http.StatusAccepted, "POST", "/v2/t1/consistencygroups/"+ncg+"/delete",
				map[string]any{"consistencygroup": map[string]any{"force": true}})
		}
		e.cinderOK(http.StatusAccepted, "DELETE", "/v2/t1/cgsnapshots/"+cgs, nil)
		e.cinderOK(http.StatusAccepted, "POST", "/v2/t1/consistencygroups/"+cg+"/delete",
			map[string]any{"consistencygroup": map[string]any{"force": true}})
	})
}

// Every refusal answers Cinder's fault body and changes nothing.
func TestCinderRefusalsChangeNothing(t *testing.T) {
	e := newEnv(t)
	e.must(http.StatusCreated, "POST", "/api/vpools", e.admin, map[string]any{"name": "gold"}, nil)
	cg := e.cgCreate("t1", "cg", "local")
	other := e.cgCreate("t1", "other", "local,gold")
	empty := e.cgCreate("t1", "empty", "local")
	in := e.volCreate("t1", "in", map[string]any{"consistencygroup_id": cg, "volume_type": "local"})
	inOther := e.volCreate("t1", "in-other", map[string]any{"consistencygroup_id": other, "volume_type": "local"})
	free := e.volCreate("t1", "free", nil)
	gold := e.volCreate("t1", "gold", map[string]any{"volume_type": "gold"})
	two := e.volCreate("t1", "two", map[string]any{"size": 2})
	cgs := str(e.cinderOK(http.StatusAccepted, "POST", "/v3/t1/cgsnapshots",
		map[string]any{"cgsnapshot": map[string]any{"consistencygroup_id": other}}), "cgsnapshot", "id")
	member := items(e.cinderOK(200, "GET", "/v3/t1/snapshots?cgsnapshot_id="+cgs, nil), "snapshots")[0]["id"].(string)
	long := strings.Repeat("n", 256)
	upd := func(m map[string]any) map[string]any { return map[string]any{"consistencygroup": m} }
	before := e.cinderState()
	for _, c := range []struct {
		name, method, path string
		body               any
		status             int
	}{
		{"malformed JSON", "POST", "/v3/t1/consistencygroups", `{"consistencygroup":`, 400},
		{"no envelope", "POST", "/v3/t1/consistencygroups", map[string]any{"name": "x", "volume_types": "local"}, 400},
		{"envelope not an object", "POST", "/v3/t1/consistencygroups", map[string]any{"consistencygroup": "x"}, 400},
		{"no volume types", "POST", "/v3/t1/consistencygroups", upd(map[string]any{"name": "x"}), 400},
		{"empty volume types", "POST", "/v3/t1/consistencygroups", upd(map[string]any{"volume_types": ","}), 400},
		{"volume types not a string", "POST", "/v3/t1/consistencygroups", upd(map[string]any{"volume_types": []string{"local"}}), 400},
		{"unknown volume type", "POST", "/v3/t1/consistencygroups", upd(map[string]any{"volume_types": "local,tin"}), 404},
		{"unknown member", "POST", "/v3/t1/consistencygroups", upd(map[string]any{"volume_types": "local", "colour": "red"}), 400},
		{"name too long", "POST", "/v3/t1/consistencygroups", upd(map[string]any{"volume_types": "local", "name": long}), 400},
		{"other zone", "POST", "/v3/t1/consistencygroups", upd(map[string]any{"volume_types": "local", "availability_zone": "mars"}), 400},
		{"empty update", "PUT", "/v3/t1/consistencygroups/" + cg, upd(map[string]any{}), 400},
		{"update add and remove the same", "PUT", "/v3/t1/consistencygroups/" + cg, upd(map[string]any{"add_volumes": free, "remove_volumes": free}), 400},
		{"update add another group's", "PUT", "/v3/t1/consistencygroups/" + cg + "/update", upd(map[string]any{"add_volumes": free + "," + inOther}), 400},
		{"update add another type", "PUT", "/v3/t1/consistencygroups/" + cg, upd(map[string]any{"add_volumes": free + "," + gold}), 400},
		{"update add a snapshot", "PUT", "/v3/t1/consistencygroups/" + cg, upd(map[string]any{"add_volumes": member}), 400},
		{"update add unknown", "PUT", "/v3/t1/consistencygroups/" + cg, upd(map[string]any{"add_volumes": free + ",nope"}), 400},
		{"update remove a non-member", "PUT", "/v3/t1/consistencygroups/" + cg, upd(map[string]any{"remove_volumes": in + "," + free}), 400},
		{"update name too long", "PUT", "/v3/t1/consistencygroups/" + cg, upd(map[string]any{"name": long, "add_volumes": free}), 400},
		{"update unknown group", "PUT", "/v3/t1/consistencygroups/nope", upd(map[string]any{"name": "x"}), 404},
		{"delete with volumes", "POST", "/v3/t1/consistencygroups/" + cg + "/delete", upd(map[string]any{"force": false}), 400},
		{"delete with cgsnapshots, even forced", "POST", "/v3/t1/consistencygroups/" + other + "/delete", upd(map[string]any{"force": true}), 400},
		{"delete force not a boolean", "POST", "/v3/t1/consistencygroups/" + empty + "/delete", upd(map[string]any{"force": "maybe"}), 400},
		{"delete unknown", "POST", "/v3/t1/consistencygroups/nope/delete", upd(map[string]any{}), 404},
		{"from both sources", "POST", "/v3/t1/consistencygroups/create_from_src", map[string]any{"consistencygroup-from-src": map[string]any{"cgsnapshot_id": cgs, "source_cgid": cg}}, 400},
		{"from no source", "POST", "/v3/t1/consistencygroups/create_from_src", map[string]any{"consistencygroup-from-src": map[string]any{"name": "x"}}, 400},
		{"from an empty group", "POST", "/v3/t1/consistencygroups/create_from_src", map[string]any{"consistencygroup-from-src": map[string]any{"source_cgid": empty}}, 400},
		{"from an unknown cgsnapshot", "POST", "/v3/t1/consistencygroups/create_from_src", map[string]any{"consistencygroup-from-src": map[string]any{"cgsnapshot_id": "nope"}}, 404},
		{"cgsnapshot of an unknown group", "POST", "/v3/t1/cgsnapshots", map[string]any{"cgsnapshot": map[string]any{"consistencygroup_id": "nope"}}, 404},
		{"cgsnapshot without a group", "POST", "/v3/t1/cgsnapshots", map[string]any{"cgsnapshot": map[string]any{"name": "x"}}, 400},
		{"cgsnapshot name too long", "POST", "/v3/t1/cgsnapshots", map[string]any{"cgsnapshot": map[string]any{"consistencygroup_id": cg, "name": long}}, 400},
		{"delete a member volume", "DELETE", "/v3/t1/volumes/" + in, nil, 400},
		{"delete a member snapshot", "DELETE", "/v3/t1/snapshots/" + member, nil, 400},
		{"volume in a group of another type", "POST", "/v3/t1/volumes", map[string]any{"volume": map[string]any{"size": 1, "volume_type": "gold", "consistencygroup_id": cg}}, 400},
		{"volume without size", "POST", "/v3/t1/volumes", map[string]any{"volume": map[string]any{"name": "x"}}, 400},
		{"volume in a group without a type", "POST", "/v3/t1/volumes", map[string]any{"volume": map[string]any{"size": 1, "consistencygroup_id": cg}}, 400},
		{"volume size overflowing", "POST", "/v3/t1/volumes", map[string]any{"volume": map[string]any{"size": 1 << 34}}, 400},
		{"volume from a volume, too big", "POST", "/v3/t1/volumes", map[string]any{"volume": map[string]any{"size": 300000, "source_volid": free}}, 400},
		{"volume from a volume, smaller", "POST", "/v3/t1/volumes", map[string]any{"volume": map[string]any{"size": 1, "source_volid": two}}, 400},
		{"volume from a volume of another type", "POST", "/v3/t1/volumes", map[string]any{"volume": map[string]any{"source_volid": free, "volume_type": "gold"}}, 400},
		{"volume from a snapshot into a group", "POST", "/v3/t1/volumes", map[string]any{"volume": map[string]any{"snapshot_id": member, "consistencygroup_id": cg, "volume_type": "local"}}, 400},
		{"unknown member beside the envelope", "POST", "/v3/t1/volumes", map[string]any{"volume": map[string]any{"size": 1}, "size": 1}, 400},
		{"volume from an image", "POST", "/v3/t1/volumes", map[string]any{"volume": map[string]any{"size": 1, "imageRef": "x"}}, 400},
		{"list limit negative", "GET", "/v3/t1/consistencygroups?limit=-1", nil, 400},
		{"list limit not a number", "GET", "/v3/t1/volumes/detail?limit=ten", nil, 400},
		{"list bad sort key", "GET", "/v3/t1/consistencygroups/detail?sort_key=colour", nil, 400},
		{"list sort with sort_key", "GET", "/v3/t1/consistencygroups/detail?sort=name:asc&sort_key=name", nil, 400},
		{"list bad sort dir", "GET", "/v3/t1/consistencygroups/detail?sort=name:up", nil, 400},
		{"list unknown marker", "GET", "/v3/t1/consistencygroups/detail?marker=nope", nil, 404},
		{"show unknown query", "GET", "/v3/t1/consistencygroups/" + cg + "?x=1", nil, 400},
	} {
		name := map[int]string{400: "badRequest", 404: "itemNotFound"}[c.status]
		msg := e.cinderFails(c.status, name, c.method, c.path, e.admin, c.body)
		t.Logf("%s: %s", c.name, msg)
		if after := e.cinderState(); after != before {
			t.Fatalf("%s changed the state:\n%s\n%s", c.name, before, after)
		}
	}
	// The XenAPI surface refuses a member's destroy with its own code.
	e.fails(http.StatusConflict, "OPERATION_NOT_ALLOWED", "DELETE", "/api/vdis/"+in, e.admin, nil)
	e.fails(http.StatusConflict, "OPERATION_NOT_ALLOWED", "DELETE", "/api/vdis/"+member, e.admin, nil)
	if after := e.cinderState(); after != before {
		t.Fatalf("the XenAPI refusals changed the state")
	}
}

// Lists: created_at desc by default, limit/marker/offset, sort, filters,
// and a next link when the page is full.
func TestCinderPaging(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.cgCreate("t1", fmt.Sprintf("cg%d", 4-i), "local"))
		e.advance(time.Second)
	}
	names := func(path string) ([]string, map[string]any) {
		out := e.cinderOK(200, "GET", path, nil)
		var ns []string
		for _, g := range items(out, "consistencygroups") {
			ns = append(ns, g["name"].(string))
		}
		return ns, out
	}
	if got, _ := names("/v3/t1/consistencygroups"); !slices.Equal(got, []string{"cg0", "cg1", "cg2", "cg3", "cg4"}) {
		t.Fatalf("default order %v", got)
	}
	got, out := names("/v3/t1/consistencygroups/detail?limit=2")
	if !slices.Equal(got, []string{"cg0", "cg1"}) {
		t.Fatalf("first page %v", got)
	}
	links, _ := out["consistencygroup_links"].([]any)
	if len(links) != 1 {
		t.Fatalf("a full page without a next link: %v", out)
	}
	next, err := url.Parse(links[0].(map[string]any)["href"].(string))
	if err != nil || next.Query().Get("marker") != ids[3] || next.Query().Get("limit") != "2" {
		t.Fatalf("next link %v", links)
	}
	if got, _ := names(next.RequestURI()); !slices.Equal(got, []string{"cg2", "cg3"}) {
		t.Fatalf("second page %v", got)
	}
	if got, out := names("/v3/t1/consistencygroups?limit=2&offset=4"); !slices.Equal(got, []string{"cg4"}) || out["consistencygroup_links"] != nil {
		t.Fatalf("last page %v %v", got, out)
	}
	if got, _ := names("/v3/t1/consistencygroups?sort=name:asc"); !slices.Equal(got, []string{"cg0", "cg1", "cg2", "cg3", "cg4"}) {
		t.Fatalf("sort=name:asc %v", got)
	}
	if got, _ := names("/v3/t1/consistencygroups?sort_key=name&sort_dir=desc"); !slices.Equal(got, []string{"cg4", "cg3", "cg2", "cg1", "cg0"}) {
		t.Fatalf("sort_key=name desc %v", got)
	}
	if got, _ := names("/v3/t1/consistencygroups?name=cg3"); !slices.Equal(got, []string{"cg3"}) {
		t.Fatalf("filter name %v", got)
	}
	if got, _ := names("/v3/t1/consistencygroups?colour=red"); len(got) != 0 {
		t.Fatalf("a filter on an unknown field matched %v", got)
	}
	if got, _ := names("/v3/t1/consistencygroups?limit=5000"); len(got) != 5 {
		t.Fatalf("limit over the maximum %v", got)
	}
}

// Tenancy: a project sees only its own; all_tenants is a pool-admin's.
func TestCinderTenancyAndRoles(t *testing.T) {
	e := newEnv(t)
	cg := e.cgCreate("t1", "mine", "local")
	vol := e.volCreate("t1", "mine", nil)
	vmAdmin := e.userWithRole(api.VMAdmin)
	reader := e.userWithRole(api.ReadOnly)
	for _, p := range []string{"/v3/t2/consistencygroups/" + cg, "/v3/t2/volumes/" + vol} {
		e.cinderFails(404, "itemNotFound", "GET", p, vmAdmin, nil)
	}
	code, buf := e.cinder("GET", "/v3/t2/consistencygroups/detail", vmAdmin, nil)
	if code != 200 || strings.Contains(string(buf), cg) {
		t.Fatalf("t2 lists t1's group: %d %s", code, buf)
	}
	e.cinderFails(400, "badRequest", "PUT", "/v3/t2/consistencygroups/"+e.cgCreate("t2", "theirs", "local"),
		vmAdmin, map[string]any{"consistencygroup": map[string]any{"add_volumes": vol}})
	// all_tenants from anyone but a pool-admin is ignored, as Cinder does
	// (cinderclient sends it with every lookup by name).
	if code, buf := e.cinder("GET", "/v3/t2/consistencygroups/detail?all_tenants=1&name=mine", vmAdmin, nil); code != 200 || strings.Contains(string(buf), cg) {
		t.Fatalf("all_tenants from a vm-admin: %d %s", code, buf)
	}
	if code, buf := e.cinder("GET", "/v3/t2/consistencygroups/detail?all_tenants=1", e.admin, nil); code != 200 || !strings.Contains(string(buf), cg) {
		t.Fatalf("all_tenants from a pool-admin: %d %s", code, buf)
	}
	// Reads are read-only's; changes need vm-admin.
	if code, _ := e.cinder("GET", "/v3/t1/consistencygroups", reader, nil); code != 200 {
		t.Fatalf("a reader cannot list: %d", code)
	}
	e.cinderFails(404, "itemNotFound", "POST", "/v3/t2/volumes", vmAdmin,
		map[string]any{"volume": map[string]any{"source_volid": vol}})
	e.cinderFails(403, "forbidden", "POST", "/v3/t1/consistencygroups", reader,
		map[string]any{"consistencygroup": map[string]any{"volume_types": "local"}})
	e.cinderFails(403, "forbidden", "POST", "/v3/t1/consistencygroups/"+cg+"/delete", reader, nil)
	// No token, a bad one, and Cinder's noauth token without noauth.
	for _, tok := range []string{"", "nonsense", "u1:t1"} {
		code, buf := e.cinder("GET", "/v3/t1/consistencygroups", tok, nil)
		if code != 401 || !strings.Contains(string(buf), `"error"`) {
			t.Fatalf("token %q: %d %s", tok, code, buf)
		}
	}
}

func TestCinderNoAuth(t *testing.T) {
	e := newEnvWith(t, func(o *Options) { o.CinderNoAuth = true })
	code, buf := e.cinder("POST", "/v3/t1/consistencygroups", "u1:t1",
		map[string]any{"consistencygroup": map[string]any{"name": "na", "volume_types": "local"}})
	if code != 202 {
		t.Fatalf("noauth create: %d %s", code, buf)
	}
	e.cinderFails(400, "badRequest", "GET", "/v3/t2/consistencygroups", "u1:t1", nil)
	if code, _ := e.cinder("GET", "/v3/t1/consistencygroups", "", nil); code != 401 {
		t.Fatalf("noauth without a token: %d", code)
	}
	// A vdiskd token still works, with its own role.
	if code, _ := e.cinder("GET", "/v3/t1/consistencygroups", e.userWithRole(api.ReadOnly), nil); code != 200 {
		t.Fatal("a vdiskd token in noauth mode")
	}
}

// Groups, memberships and cgsnapshots survive a restart as they were.
func TestCinderGroupsSurviveRestart(t *testing.T) {
	e := newEnv(t)
	cg := e.cgCreate("t1", "keep", "local")
	for i := 0; i < 3; i++ {
		e.volCreate("t1", fmt.Sprint("v", i), map[string]any{"consistencygroup_id": cg, "volume_type": "local"})
	}
	e.cinderOK(http.StatusAccepted, "POST", "/v3/t1/cgsnapshots", map[string]any{"cgsnapshot": map[string]any{"consistencygroup_id": cg}})
	before := e.cinderState()
	e.restart()
	e.admin = e.login("admin", adminPassword)
	if after := e.cinderState(); after != before {
		b, a := strings.Split(before, "\n"), strings.Split(after, "\n")
		for i := range b {
			if i < len(a) && a[i] != b[i] {
				j := 0
				for j < len(b[i]) && j < len(a[i]) && a[i][j] == b[i][j] {
					j++
				}
				t.Errorf("restart changed %.60s at byte %d:\n%.200s\n%.200s", b[i], j, b[i][max(0, j-100):], a[i][max(0, j-100):])
			}
		}
		t.FailNow()
	}
}

// Volumes from a snapshot or a volume are clones, grown in the same
// commit; what the XenAPI surface derives from a project's volume stays in
// that project; extension members beside the envelope are ignored.
func TestCinderVolumesFromSources(t *testing.T) {
	e := newEnv(t)
	src := e.volCreate("t1", "src", nil)
	e.write(src, 0, pattern(7, 4096))
	big := e.cinderOK(http.StatusAccepted, "POST", "/v3/t1/volumes", map[string]any{
		"volume":                     map[string]any{"source_volid": src, "size": 3, "name": "big"},
		"OS-SCH-HNT:scheduler_hints": map[string]any{"same_host": []string{src}},
	})
	id := str(big, "volume", "id")
	if field(big, "volume", "size") != 3.0 || str(big, "volume", "source_volid") != src {
		t.Fatalf("grown clone %v", big)
	}
	if got := e.read(id, 0, 4096); !bytes.Equal(got, pattern(7, 4096)) {
		t.Fatal("the clone lost its source's data")
	}
	// A XenAPI snapshot of a t1 volume is a t1 snapshot: t1 sees it (and
	// so learns why its volume cannot be deleted); default does not.
	snap := e.post(src, "snapshot", nil).UUID
	if snaps := items(e.cinderOK(200, "GET", "/v3/t1/snapshots", nil), "snapshots"); len(snaps) != 1 || snaps[0]["id"] != snap {
		t.Fatalf("t1's snapshots %v", snaps)
	}
	if snaps := items(e.cinderOK(200, "GET", "/v3/default/snapshots", nil), "snapshots"); len(snaps) != 0 {
		t.Fatalf("default sees t1's snapshot: %v", snaps)
	}
	from := e.cinderOK(http.StatusAccepted, "POST", "/v3/t1/volumes", map[string]any{"volume": map[string]any{"snapshot_id": snap}})
	if str(from, "volume", "snapshot_id") != snap || field(from, "volume", "size") != 1.0 {
		t.Fatalf("volume from a snapshot %v", from)
	}
	e.cinderFails(400, "badRequest", "DELETE", "/v3/t1/volumes/"+src, e.admin, nil)
}
