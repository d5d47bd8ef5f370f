package mgmt

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/vstats/vstatsapi"
)

// FuzzVStatsCalls sends arbitrary bodies and queries to every call of the
// vStats surface: nothing may answer 5xx, a refusal is vSphere's error
// body, a success JSON (or nothing, for 204).
func FuzzVStatsCalls(f *testing.F) {
	for i, body := range []string{``, `{}`, `null`, `[]`, `{"counters":{}}`,
		`{"counters":{"cid_mid":{"cid":"vdisk.data_read"}},"resources":[{"type":"VDISK","predicate":"ALL","id_value":"*"}]}`,
		`{"counters":{"set_id":"vpool-io"},"resources":[{"type":"VPOOL","id_value":"x"}],"interval":-5}`,
		`{"counters":{"cid_mid":{"cid":"node.nbd_read_latency_p50","mid":"1"}},"resources":[{"key":"NODE","id_value":"n"}],"expiration":1e30}`,
		`{"interval":"10"}`, `{"memo_":"\u0000"}`} {
		f.Add(uint8(i*3), []byte(body), "")
	}
	f.Add(uint8(22), []byte(``), "start=0&end=99999999999&cid=vdisk.data_read&types=VDISK,VPOOL&rsrcs=type.VDISK=x&order=DEFAULT")
	f.Add(uint8(23), []byte(``), "start_epoch=0&end_epoch=1&page=eyJrIjoic3luYyJ9")
	e := newEnv(f)
	v := e.createVDI(map[string]any{"name_label": "fuzz", "virtual_size": 1 << 20})
	sid := e.session("admin", adminPassword)
	e.userWithRole(api.ReadOnly)
	var id string
	e.vsphereOK(http.StatusCreated, "POST", "/api/stats/acq-specs", sid, map[string]any{
		"counters":  map[string]any{"cid_mid": map[string]any{"cid": "vdisk.data_read"}},
		"resources": []any{map[string]any{"type": "VDISK", "id_value": v.UUID}}}, &id)
	calls := vstatsapi.Table.All()
	ids := strings.NewReplacer("{cid}", "vdisk.data_read", "{mid}", "1", "{counter_set}", "vdisk-io", "{id}", id)
	f.Fuzz(func(t *testing.T, which uint8, body []byte, query string) {
		rpc := calls[int(which)%len(calls)]
		if rpc == &vstatsapi.SessionDelete.RPC {
			return // it would end the session the other inputs use
		}
		path := ids.Replace(rpc.Path)
		if query != "" {
			path += "?" + strings.NewReplacer("#", "", " ", "+").Replace(query)
		}
		req, err := http.NewRequest(rpc.Method(), e.srv.URL+path, strings.NewReader(string(body)))
		if err != nil {
			return // not a request a client could send
		}
		if rpc == &vstatsapi.SessionCreate.RPC {
			// Another user's: past its token cap the oldest go, never sid.
			req.SetBasicAuth("u-read-only", "password-u-read-only")
		} else {
			req.Header.Set("vmware-api-session-id", sid)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case resp.StatusCode >= 500:
			t.Fatalf("%s %s with %q: status %d %s", rpc.Method(), path, body, resp.StatusCode, out)
		case resp.StatusCode == http.StatusNoContent:
		case resp.StatusCode >= 400:
			var eb vstatsapi.ErrorBody
			if json.Unmarshal(out, &eb) != nil || eb.ErrorType == "" || len(eb.Messages) != 1 {
				t.Fatalf("%s %s: %d: not vSphere's error body: %s", rpc.Method(), path, resp.StatusCode, out)
			}
		default:
			if !json.Valid(out) {
				t.Fatalf("%s %s: %d without JSON: %s", rpc.Method(), path, resp.StatusCode, out)
			}
		}
	})
}
