package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/stats"
	"github.com/vdiskd/vdiskd/mgmt/vstats/vstatsapi"
)

// TestE2EStats drives the stats commands against a real daemon: a spec
// on a VDI, its data points as the sampler takes them, the catalogue, a
// cache sync, refusals.
func TestE2EStats(t *testing.T) {
	t.Parallel()
	c := loggedIn(t, startDaemon(t, filepath.Join(t.TempDir(), "data"), "", adminPassword))
	v := c.vdi(t, "create", "--name-label", "db", "--virtual-size", "4M").UUID

	id := strings.TrimSpace(c.ok(t, "stats", "acq-spec-create", "--counters", `{"cid_mid":{"cid":"vdisk.read_operations"}}`,
		"--resources", `[{"type":"VDISK","id_value":"`+v+`"}]`, "--interval", "1", "--memo", "e2e"))
	if !strings.HasPrefix(id, "acq-") {
		t.Fatalf("acq-spec-create printed %q", id)
	}
	var sp stats.Spec
	c.okJSON(t, &sp, "stats", "acq-spec-get", id)
	if sp.Interval != 1 || sp.Memo != "e2e" || sp.Status != "ENABLED" {
		t.Fatalf("the spec %+v", sp)
	}
	c.ok(t, "stats", "acq-spec-update", id, "--interval", "2")
	// The sampler runs every second: points come.
	var dp vstatsapi.DataPoints
	for deadline := time.Now().Add(20 * time.Second); len(dp.DataPoints) < 2; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no data points after 20 s: %+v", dp)
		}
		c.okJSON(t, &dp, "stats", "data-points", "--cid", "vdisk.read_operations", "--rsrcs", "type.VDISK="+v)
	}
	if out := c.ok(t, "stats", "counter-list", "--types", "VPOOL", "--metric", "data_read"); !strings.Contains(out, "vpool.data_read") {
		t.Fatalf("counter-list:\n%s", out)
	}
	var sync stats.SyncResult
	c.okJSON(t, &sync, "stats", "cache-sync", "--start-epoch", "0")
	if len(sync.Created) != 1 || sync.Created[0].ID != id {
		t.Fatalf("a full sync %+v", sync)
	}
	raw := c.ok(t, "stats", "cache-sync", "--start-epoch", "0", "--json")
	if !json.Valid([]byte(raw)) || !strings.Contains(raw, "created_acq_specs") {
		t.Fatalf("cache-sync --json:\n%s", raw)
	}
	// Refusals: JSON vdiskctl cannot read (exit 2), a counter the daemon
	// has not (exit 1, the field named).
	c.fails(t, 2, "--counters", "stats", "acq-spec-create", "--counters", "{bad", "--resources", "[]")
	c.fails(t, 1, "counters.cid_mid.cid", "stats", "acq-spec-create", "--counters", `{"cid_mid":{"cid":"vdisk.nope"}}`,
		"--resources", `[{"type":"VDISK","id_value":"`+v+`"}]`)
	c.ok(t, "stats", "acq-spec-delete", id)
	c.fails(t, 1, "NOT_FOUND", "stats", "acq-spec-get", id)
}
