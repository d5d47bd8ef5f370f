package mgmt

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
)

// FuzzCinderCalls sends arbitrary bodies and queries to every call of the
// Cinder surface: nothing may answer 5xx, every refusal must be Cinder's
// fault body with its status, and every success JSON.
func FuzzCinderCalls(f *testing.F) {
	for i, body := range []string{``, `{}`, `null`, `[]`, `{"consistencygroup":{}}`,
		`{"consistencygroup":{"volume_types":"local","name":"f"}}`, `{"consistencygroup":{"force":"yes"}}`,
		`{"consistencygroup":{"add_volumes":"a,b","remove_volumes":","}}`, `{"cgsnapshot":{"consistencygroup_id":"x"}}`,
		`{"consistencygroup-from-src":{"source_cgid":"x"}}`, `{"volume":{"size":1}}`, `{"volume":{"size":-1e9}}`,
		`{"snapshot":{"volume_id":"x","force":true}}`, `{"consistencygroup":null}`, `{"consistencygroup":{"name":"\u0000"}}`} {
		f.Add(uint16(i*5), []byte(body), "")
	}
	f.Add(uint16(2), []byte(``), "limit=1&marker=x&sort=name:asc,id:desc")
	f.Add(uint16(3), []byte(``), "offset=99999999999999999999&all_tenants=1")
	e := newEnv(f)
	cg := e.cgCreate("t1", "fuzz", "local")
	vol := e.volCreate("t1", "fuzz", map[string]any{"consistencygroup_id": cg, "volume_type": "local"})
	cgs := str(e.cinderOK(http.StatusAccepted, "POST", "/v3/t1/cgsnapshots",
		map[string]any{"cgsnapshot": map[string]any{"consistencygroup_id": cg}}), "cgsnapshot", "id")
	snap := items(e.cinderOK(200, "GET", "/v3/t1/snapshots", nil), "snapshots")[0]["id"].(string)
	calls := cinderapi.Table.All()
	ids := strings.NewReplacer("{api:v[23]}", "v3", "{tenant_id}", "t1", "{consistencygroup_id}", cg,
		"{cgsnapshot_id}", cgs, "{volume_id}", vol, "{snapshot_id}", snap, "{volume_type_id}", "local")
	f.Fuzz(func(t *testing.T, which uint16, body []byte, query string) {
		rpc := calls[int(which)%len(calls)]
		path := ids.Replace(rpc.Path)
		if query != "" {
			path += "?" + strings.NewReplacer("#", "", " ", "+").Replace(query)
		}
		req, err := http.NewRequest(rpc.Method(), e.srv.URL+path, strings.NewReader(string(body)))
		if err != nil {
			return // not a request a client could send
		}
		req.Header.Set("X-Auth-Token", e.admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s with %q: status %d", rpc.Method(), path, body, resp.StatusCode)
		}
		var out map[string]json.RawMessage
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil && resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%s %s: %d without a JSON body: %v", rpc.Method(), path, resp.StatusCode, err)
		}
		if resp.StatusCode >= 400 {
			var fb struct{ Code int }
			if len(out) != 1 {
				t.Fatalf("%s %s: %d: not a fault body: %v", rpc.Method(), path, resp.StatusCode, out)
			}
			for _, v := range out {
				if json.Unmarshal(v, &fb) != nil || fb.Code != resp.StatusCode {
					t.Fatalf("%s %s: %d: fault body %s", rpc.Method(), path, resp.StatusCode, v)
				}
			}
		}
	})
}
