package mgmt

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/stats"
	"github.com/vdiskd/vdiskd/mgmt/vstats/vstatsapi"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// vsphere sends one request as vSphere's clients do: the session id in
// vmware-api-session-id ("basic:user:pw" to open one).
func (e *env) vsphere(method, path, session string, body any) (int, []byte) {
	e.t.Helper()
	if session != "" && !strings.HasPrefix(session, "basic:") {
		session = "vsphere:" + session
	}
	return e.request(method, path, session, body)
}

// vsphereOK sends a request that must answer want, decoding into out.
func (e *env) vsphereOK(want int, method, path, session string, body, out any) {
	e.t.Helper()
	code, buf := e.vsphere(method, path, session, body)
	if code != want {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, code, buf, want)
	}
	if out != nil {
		if err := json.Unmarshal(buf, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, buf)
		}
	}
}

// vsphereFails sends a request that must fail with status, in vSphere's
// error body, its message naming field.
func (e *env) vsphereFails(status int, field, method, path, session string, body any) {
	e.t.Helper()
	code, buf := e.vsphere(method, path, session, body)
	var eb vstatsapi.ErrorBody
	if code != status || json.Unmarshal(buf, &eb) != nil || eb.ErrorType == "" || len(eb.Messages) != 1 ||
		!strings.Contains(eb.Messages[0].DefaultMessage, field) {
		e.t.Fatalf("%s %s: %d %s, want %d naming %q", method, path, code, buf, status, field)
	}
}

// session logs in as vSphere's clients do.
func (e *env) session(user, pw string) string {
	e.t.Helper()
	var id string
	e.vsphereOK(http.StatusCreated, "POST", "/api/session", "basic:"+user+":"+pw, nil, &id)
	return id
}

// The flow a vSphere monitoring client (Centreon's vSphere 8 plugin)
// uses: a session, the specs listed following next, a spec created with
// a trailing slash, patched, and the data points of a resource; then the
// session ends.
func TestVStatsClientFlow(t *testing.T) {
	e := withNBD(t, "z")
	v := e.createVDI(map[string]any{"name_label": "db", "virtual_size": 64 << 20})
	sid := e.session("admin", adminPassword)

	var who vstatsapi.Session
	e.vsphereOK(http.StatusOK, "GET", "/api/session", sid, nil, &who)
	if who.User != "admin" {
		t.Fatalf("GET /api/session: %+v", who)
	}
	var list vstatsapi.AcqSpecs
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/acq-specs", sid, nil, &list)
	if len(list.AcqSpecs) != 0 || list.Next != "" {
		t.Fatalf("specs before any: %+v", list)
	}
	exp := e.clock().Add(time.Hour).Unix()
	var id string
	e.vsphereOK(http.StatusCreated, "POST", "/api/stats/acq-specs/", sid, map[string]any{
		"counters":   map[string]any{"cid_mid": map[string]any{"cid": "vdisk.write_operations"}},
		"resources":  []any{map[string]any{"predicate": "EQUAL", "scheme": "uuid", "type": "VDISK", "id_value": v.UUID}},
		"expiration": exp, "interval": 5}, &id)
	e.vsphereOK(http.StatusNoContent, "PATCH", "/api/stats/acq-specs/"+id, sid, map[string]any{"interval": 10}, nil)
	var sp stats.Spec
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/acq-specs/"+id, sid, nil, &sp)
	if sp.Interval != 10 || sp.Expiration != exp || sp.Status != "ENABLED" || sp.Counters.CidMid.Cid != "vdisk.write_operations" {
		t.Fatalf("the patched spec: %+v", sp)
	}

	// Real NBD writes between two samples: the points move as the
	// counter does, and equal what the REST statistics say.
	tick := func() {
		t.Helper()
		if err := e.s.stats.Tick(); err != nil {
			t.Fatal(err)
		}
	}
	tick()
	c := nbdtest.Connect(t, "tcp", e.nbdAddr, nbdtest.Negotiation{Export: exportName(v.UUID, e.admin)})
	for i := range 7 {
		c.Write(uint64(i)*4096, pattern(byte(i), 4096))
	}
	c.Disconnect()
	e.advance(10 * time.Second)
	tick()
	var dp vstatsapi.DataPoints
	start := e.clock().Add(-time.Minute).Unix()
	e.vsphereOK(http.StatusOK, "GET", fmt.Sprintf("/api/stats/data/dp?rsrcs=type.VDISK.uuid=%s&cid=vdisk.write_operations&start=%d", v.UUID, start),
		sid, nil, &dp)
	if len(dp.DataPoints) != 2 || dp.DataPoints[1].Val-dp.DataPoints[0].Val != 7 || dp.DataPoints[1].Rid != "type.VDISK="+v.UUID {
		t.Fatalf("data points %+v", dp)
	}
	var st api.Statistics
	e.must(http.StatusOK, "GET", "/api/vdis/"+v.UUID+"/statistics", e.admin, nil, &st)
	if st["write_operations"] != dp.DataPoints[1].Val {
		t.Fatalf("REST says %v write operations, vStats %v", st["write_operations"], dp.DataPoints[1].Val)
	}

	// Paging with next, as the client follows it.
	for range 4 {
		e.vsphereOK(http.StatusCreated, "POST", "/api/stats/acq-specs", sid, map[string]any{
			"counters": map[string]any{"set_id": "vpool-io"}, "resources": []any{map[string]any{"type": "VPOOL", "predicate": "ALL", "id_value": "*"}}}, nil)
	}
	seen := 0
	for page, pages := "", 0; ; pages++ {
		path := "/api/stats/acq-specs"
		if page != "" {
			path += "?page=" + page
		}
		e.vsphereOK(http.StatusOK, "GET", path, sid, nil, &list)
		seen += len(list.AcqSpecs)
		if page = list.Next; page == "" || pages > 10 {
			break
		}
	}
	if seen != 5 {
		t.Fatalf("%d specs listed", seen)
	}
	// Specs persist across a restart; the session (a token) too.
	e.restart()
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/acq-specs/"+id, sid, nil, &sp)
	e.vsphereOK(http.StatusNoContent, "DELETE", "/api/stats/acq-specs/"+id, sid, nil, nil)
	e.vsphereFails(http.StatusNotFound, id, "GET", "/api/stats/acq-specs/"+id, sid, nil)
	e.vsphereOK(http.StatusNoContent, "DELETE", "/api/session", sid, nil, nil)
	e.vsphereFails(http.StatusUnauthorized, "token", "GET", "/api/stats/acq-specs", sid, nil)
}

// The catalogue: every counter documented, filters, metadata, sets,
// providers, resource types, schemas and addresses.
func TestVStatsCatalogue(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "a", "virtual_size": 1 << 20})
	sid := e.session("admin", adminPassword)
	var counters []vstatsapi.Counter
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/counters", sid, nil, &counters)
	// Every OVS key and its rate on vDisks and vPools, and the node's.
	if len(counters) != 2*2*17+8 {
		t.Fatalf("%d counters", len(counters))
	}
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/counters?types=VPOOL&metric=data_read", sid, nil, &counters)
	if len(counters) != 1 || counters[0] != (vstatsapi.Counter{Cid: "vpool.data_read", Metric: "data_read", ResourceAddressSchema: "VPOOL"}) {
		t.Fatalf("filtered %+v", counters)
	}
	for _, c := range []string{"vdisk.data_written_ps", "node.nbd_write_latency_p99"} {
		var md []vstatsapi.CounterMetadata
		e.vsphereOK(http.StatusOK, "GET", "/api/stats/counters/"+c+"/metadata/default", sid, nil, &md)
		if len(md) != 1 || md[0].Mid != "1" || md[0].UserInfo == nil || md[0].UserInfo.Description.DefaultMessage == "" || md[0].Pid != e.s.NodeGUID() {
			t.Fatalf("%s's metadata %+v", c, md)
		}
	}
	var md vstatsapi.CounterMetadata
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/counters/vdisk.data_written_ps/metadata/1", sid, nil, &md)
	if md.Units != "BYTESPERSECOND" || md.Type != "RATE" {
		t.Fatalf("a rate's metadata %+v", md)
	}
	e.vsphereFails(http.StatusNotFound, "vdisk.nope", "GET", "/api/stats/counters/vdisk.nope", sid, nil)
	e.vsphereFails(http.StatusNotFound, "2", "GET", "/api/stats/counters/vdisk.data_read/metadata/2", sid, nil)
	var sets []vstatsapi.CounterSet
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/counter-sets", sid, nil, &sets)
	if len(sets) != 7 {
		t.Fatalf("%d counter sets", len(sets))
	}
	var provs []vstatsapi.Provider
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/providers", sid, nil, &provs)
	if len(provs) != 1 || provs[0].ID != e.s.NodeGUID() {
		t.Fatalf("providers %+v", provs)
	}
	var types []vstatsapi.RsrcType
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/rsrc-types", sid, nil, &types)
	if len(types) != 3 {
		t.Fatalf("types %+v", types)
	}
	var schema vstatsapi.RsrcAddrSchema
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/rsrc-addr-schemas/VDISK", sid, nil, &schema)
	if len(schema.Schema) != 1 || schema.Schema[0].QueryOptions != "EQUAL_ALL" {
		t.Fatalf("schema %+v", schema)
	}
	var addrs vstatsapi.RsrcAddrs
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/rsrc-addrs?types=VDISK", sid, nil, &addrs)
	if len(addrs.RsrcAddrs) != 1 || addrs.RsrcAddrs[0].ID != "type.VDISK="+v.UUID {
		t.Fatalf("addresses %+v", addrs)
	}
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/rsrc-addrs/type.VDISK="+v.UUID, sid, nil, nil)
	var metrics []vstatsapi.Metric
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/metrics", sid, nil, &metrics)
	if len(metrics) != 2*17+8 {
		t.Fatalf("%d metrics", len(metrics))
	}
}

// Bad input gets 400 naming the field and changes nothing; roles hold; a
// missing or ended session is 401.
func TestVStatsRefusals(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "a", "virtual_size": 1 << 20})
	sid := e.session("admin", adminPassword)
	good := func() map[string]any {
		return map[string]any{"counters": map[string]any{"cid_mid": map[string]any{"cid": "vdisk.data_read"}},
			"resources": []any{map[string]any{"type": "VDISK", "id_value": v.UUID}}}
	}
	with := func(k string, val any) map[string]any {
		m := good()
		m[k] = val
		return m
	}
	for _, c := range []struct {
		field string
		body  any
	}{
		{"counters.cid_mid.cid", with("counters", map[string]any{"cid_mid": map[string]any{"cid": "vdisk.nope"}})},
		{"resources[0].type", with("resources", []any{map[string]any{"type": "VM", "id_value": "vm-1"}})},
		{"resources[0].id_value", with("resources", []any{map[string]any{"type": "VDISK", "id_value": "no-such-vdi"}})},
		{"interval", with("interval", "ten")},
		{"interval", with("interval", 0.5)},
		{"interval", with("interval", 100000)},
		{"expiration", with("expiration", 5)},
		{"endpoints", with("endpoints", []string{"obj-1"})},
		{"counters", map[string]any{"resources": good()["resources"]}},
		{"colour", with("colour", "red")},
		{"JSON", "{not json"},
	} {
		e.vsphereFails(http.StatusBadRequest, c.field, "POST", "/api/stats/acq-specs", sid, c.body)
	}
	var list vstatsapi.AcqSpecs
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/acq-specs", sid, nil, &list)
	if len(list.AcqSpecs) != 0 {
		t.Fatalf("refusals stored %d specs", len(list.AcqSpecs))
	}
	for _, q := range []struct{ query, field string }{
		{"start_epoch=10&end_epoch=5", "end_epoch"}, {"start_epoch=-1", "start_epoch"}, {"start_epoch=abc", "start_epoch"},
		{"", "start_epoch"}, {"start_epoch=0&page=nope", "page"},
	} {
		e.vsphereFails(http.StatusBadRequest, q.field, "GET", "/api/stats/cache/sync?"+q.query, sid, nil)
	}
	for _, q := range []struct{ query, field string }{
		{"cid=vdisk.nope", "cid"}, {"types=VM", "types"}, {"rsrcs=VDISK=x", "rsrcs"}, {"start=10&end=5", "end"}, {"order=NEWEST", "order"},
	} {
		e.vsphereFails(http.StatusBadRequest, q.field, "GET", "/api/stats/data/dp?"+q.query, sid, nil)
	}
	e.vsphereFails(http.StatusBadRequest, "types", "GET", "/api/stats/counters?types=VM", sid, nil)

	// A read-only user reads, and cannot create.
	ro := e.userWithRole(api.ReadOnly)
	e.vsphereOK(http.StatusOK, "GET", "/api/stats/acq-specs", ro, nil, nil)
	e.vsphereFails(http.StatusForbidden, "", "POST", "/api/stats/acq-specs", ro, good())
	e.vsphereFails(http.StatusUnauthorized, "", "GET", "/api/stats/acq-specs", "", nil)
	e.vsphereFails(http.StatusUnauthorized, "", "POST", "/api/session", "basic:admin:wrong", nil)
	e.vsphereFails(http.StatusNotFound, "", "PATCH", "/api/stats/acq-specs/acq-99", sid, map[string]any{"interval": 5})
}
