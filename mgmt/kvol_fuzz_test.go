package mgmt

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vdiskd/vdiskd/mgmt/kvol/kvolapi"
)

// FuzzKvolCalls sends arbitrary query strings to every kvol call: nothing
// may answer 5xx, a refusal is kvol's error body with its status, a 204
// has no body, and anything else is JSON.
func FuzzKvolCalls(f *testing.F) {
	for i, q := range []string{"", "zone=z1&volume-type-id=local", "src-zone=z1&src-volume-type-id=local&dst-zone=%00",
		"src-zone=z0&src-volume-type-id=local&src-snapshot-id=6f1c2a4e-1b7d-4e0b-9a51-3c1d2e3f4a5b&dst-zone=z1&dst-tenant-id=t&dst-volume-type-id=local&bootable=yes",
		"src-zone=z0&src-volume-type-id=local&src-volume-id=6f1c2a4e-1b7d-4e0b-9a51-3c1d2e3f4a5b&dst-zone=z1&dst-tenant-id=t&dst-volume-type-id=local",
		"rowkey=1&limit=1000", "rowkey=99999999999999999999", "limit=-1&limit=2", "rowkey=%ff"} {
		f.Add(uint8(i), q)
	}
	e := newEnvWith(f, inZone("z1", nil))
	calls := kvolapi.Table.All()
	f.Fuzz(func(t *testing.T, which uint8, query string) {
		rpc := calls[int(which)%len(calls)]
		req, err := http.NewRequest(rpc.Method(), e.srv.URL+rpc.Path+"?"+strings.NewReplacer("#", "", " ", "+").Replace(query), nil)
		if err != nil {
			return // not a request a client could send
		}
		req.SetBasicAuth("admin", e.admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case resp.StatusCode >= 500:
			t.Fatalf("%s?%s: status %d %s", rpc.Path, query, resp.StatusCode, body)
		case resp.StatusCode == http.StatusNoContent:
			if len(body) != 0 {
				t.Fatalf("%s?%s: 204 with a body", rpc.Path, query)
			}
		case resp.StatusCode >= 400:
			var eb struct {
				Code    int
				Message string
			}
			if json.Unmarshal(body, &eb) != nil || eb.Code != resp.StatusCode || eb.Message == "" {
				t.Fatalf("%s?%s: %d: not kvol's error body: %s", rpc.Path, query, resp.StatusCode, body)
			}
		default:
			if !json.Valid(body) {
				t.Fatalf("%s?%s: %d without a JSON body: %s", rpc.Path, query, resp.StatusCode, body)
			}
		}
	})
}
