package main

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/kvol/kvolapi"
)

// TestE2EKvol drives zones, replication and kvol commands against two
// real daemons: zone a replicates its vPool to zone b, and b makes a volume
// from a's snapshot, then recovers a's volume.
func TestE2EKvol(t *testing.T) {
	t.Parallel()
	start := func(zone string) *daemon {
		opts := daemonOptions(filepath.Join(t.TempDir(), zone), "", adminPassword)
		opts.Args = []string{"--zone", zone}
		d, err := vdiskdtest.TryStart(t, opts)
		if err != nil {
			t.Fatal(err)
		}
		return &daemon{d}
	}
	a, b := start("a"), start("b")
	// One vdiskctl configuration per daemon: each logged in to its own.
	c, cb := loggedIn(t, a), loggedIn(t, b)

	c.ok(t, "zone", "create", "--name", "b", "--zone-url", b.URL, "--username", "admin", "--password", adminPassword)
	if out := c.ok(t, "zone", "list"); !strings.Contains(out, "true") {
		t.Fatalf("zone list shows b unreachable:\n%s", out)
	}
	v := c.vdi(t, "create", "--name-label", "web", "--virtual-size", "8M").UUID
	snap := c.vdi(t, "snapshot", v).UUID
	c.ok(t, "replication", "create", "--vpool", "local", "--dst-zone", "b", "--dst-vpool", "local", "--interval-s", "10")
	// The first round starts at once; wait for it.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if st := strings.TrimSpace(c.ok(t, "replication", "get", "1", "--field", "status")); st == "active" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("replication 1 is %s after 30 s", st)
		}
	}
	if ids := strings.Fields(cb.ok(t, "replica", "list", "--origin-snapshot", snap, "--field", "origin_vdi")); len(ids) != 1 || ids[0] != v {
		t.Fatalf("b's replica of %s: %q", snap, ids)
	}

	var bl kvolapi.Backups
	c.okJSON(t, &bl, "kvol", "list", "--zone", "a", "--volume-type-id", "local")
	if len(bl.Backup) != 1 || bl.Backup[0].ZoneID != "b" || bl.Backup[0].Seq != 1 {
		t.Fatalf("kvol list: %+v", bl)
	}
	if out := c.ok(t, "kvol", "show", "--src-zone", "a", "--src-volume-type-id", "local"); !strings.Contains(out, "active") {
		t.Fatalf("kvol show:\n%s", out)
	}
	// Nothing found: nothing on stdout, a word on stderr, exit 0.
	if r := c.run(t, "", "kvol", "list", "--zone", "a", "--volume-type-id", "nope"); r.code != 0 || r.stdout != "" ||
		!strings.Contains(r.stderr, "204") {
		t.Fatalf("an empty kvol list: %+v", r)
	}

	var q kvolapi.Queued
	cb.okJSON(t, &q, "kvol", "create", "--src-zone", "a", "--src-volume-type-id", "local", "--src-snapshot-id", snap,
		"--dst-zone", "b", "--dst-tenant-id", "t1", "--dst-volume-type-id", "local", "--bootable", "yes")
	job := waitKvolJob(t, cb, "createlist", q.Rowkey)
	if job.OrgSnapshotID != snap || job.NewVolumeID == "" {
		t.Fatalf("create job %+v", job)
	}
	cb.okJSON(t, &q, "kvol", "recovery", "--src-zone", "a", "--src-volume-type-id", "local", "--src-volume-id", v,
		"--dst-zone", "b", "--dst-tenant-id", "t1", "--dst-volume-type-id", "local")
	job = waitKvolJob(t, cb, "recoverylist", q.Rowkey)
	if job.OrgVolumeID != v || job.NewVolumeID == "" {
		t.Fatalf("recovery job %+v", job)
	}
	if out := cb.ok(t, "kvol", "createlist"); !strings.Contains(out, "SUCCESS") || !strings.Contains(out, snap) {
		t.Fatalf("kvol createlist:\n%s", out)
	}

	// Refusals: checked by vdiskctl (exit 2), or by the daemon (exit 1).
	c.fails(t, 2, "--dst-tenant-id", "kvol", "create", "--src-zone", "a", "--src-volume-type-id", "local",
		"--src-snapshot-id", snap, "--dst-zone", "a", "--dst-volume-type-id", "local")
	c.fails(t, 2, "bootable", "kvol", "create", "--src-zone", "a", "--src-volume-type-id", "local",
		"--src-snapshot-id", snap, "--dst-zone", "a", "--dst-tenant-id", "t", "--dst-volume-type-id", "local", "--bootable", "maybe")
	c.fails(t, 1, "send the call to zone b's daemon", "kvol", "create", "--src-zone", "a", "--src-volume-type-id", "local",
		"--src-snapshot-id", snap, "--dst-zone", "b", "--dst-tenant-id", "t", "--dst-volume-type-id", "local")
	c.fails(t, 1, "HTTP 401", "kvol", "list", "--zone", "a", "--volume-type-id", "local", "--token", "vdt_nope")

	c.ok(t, "replication", "delete", "1")
	c.ok(t, "zone", "delete", "b")
}

// waitKvolJob polls a kvol job through vdiskctl until it succeeds, and
// fails the test if it fails or takes more than 30 s.
func waitKvolJob(t *testing.T, c *ctl, list string, rowkey int64) kvolapi.Job {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var jobs kvolapi.Jobs
		out := c.ok(t, "kvol", list, "--rowkey", strconv.FormatInt(rowkey, 10), "--json")
		if err := json.Unmarshal([]byte(out), &jobs); err != nil || len(jobs.Clist) != 1 {
			t.Fatalf("kvol %s: %v\n%s", list, err, out)
		}
		switch j := jobs.Clist[0]; j.Status {
		case kvolapi.StatusSuccess:
			return j
		case kvolapi.StatusFailed:
			t.Fatalf("kvol job %d failed: %s", rowkey, j.ResultMsg)
		}
		if time.Now().After(deadline) {
			t.Fatalf("kvol job %d not done after 30 s", rowkey)
		}
	}
}
