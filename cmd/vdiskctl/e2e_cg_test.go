package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2EConsistencyGroups drives the cg and cgsnapshot commands against a
// real daemon, on VDIs made with 'vdiskctl vdi create' (project default).
func TestE2EConsistencyGroups(t *testing.T) {
	t.Parallel()
	c := loggedIn(t, startDaemon(t, filepath.Join(t.TempDir(), "data"), "", adminPassword))
	a := c.vdi(t, "create", "--name-label", "db-data", "--virtual-size", "4M").UUID
	b := c.vdi(t, "create", "--name-label", "db-log", "--virtual-size", "4M").UUID

	// --json prints Cinder's answer as sent: in its envelope.
	var created struct {
		Group    struct{ ID, Name string } `json:"consistencygroup"`
		Snapshot struct{ ID, Name string } `json:"cgsnapshot"`
	}
	c.okJSON(t, &created, "cg", "create", "--name", "db", "--volume-types", "local")
	cg := created.Group.ID
	if cg == "" || created.Group.Name != "db" {
		t.Fatalf("cg create: %+v", created)
	}
	c.ok(t, "cg", "update", cg, "--add-volumes", a+","+b, "--description", "the database")
	out := c.ok(t, "cg", "show", cg)
	for _, want := range []string{"available", "the database", "db"} {
		if !strings.Contains(out, want) {
			t.Fatalf("cg show lacks %q:\n%s", want, out)
		}
	}
	if ids := strings.Fields(c.ok(t, "cg", "list", "--field", "id")); len(ids) != 1 || ids[0] != cg {
		t.Fatalf("cg list --field id: %q", ids)
	}
	// The members now refuse a destroy of their own, with XenAPI's code.
	c.fails(t, 1, "OPERATION_NOT_ALLOWED", "vdi", "destroy", a)

	c.okJSON(t, &created, "cgsnapshot", "create", "--consistencygroup-id", cg, "--name", "nightly")
	snap := created.Snapshot.ID
	out = c.ok(t, "cgsnapshot", "detail")
	if !strings.Contains(out, snap) || !strings.Contains(out, cg) || !strings.Contains(out, "nightly") {
		t.Fatalf("cgsnapshot detail:\n%s", out)
	}
	c.okJSON(t, &created, "cg", "create-from-src", "--cgsnapshot-id", snap, "--name", "db-restored")
	restored := created.Group.ID
	var group struct {
		Consistencygroup struct{ Status string } `json:"consistencygroup"`
	}
	c.okJSON(t, &group, "cg", "show", restored)
	if group.Consistencygroup.Status != "available" {
		t.Fatalf("restored group: %+v", group)
	}
	// Refusals are Cinder's, with the message, exit 1, nothing printed.
	c.fails(t, 1, "HTTP 400", "cg", "delete", cg)
	c.fails(t, 1, "still has cgsnapshots", "cg", "delete", cg, "--force")
	c.fails(t, 1, "HTTP 404", "cg", "show", "no-such-group")
	c.fails(t, 2, "--volume-types", "cg", "create", "--name", "x")

	c.ok(t, "cgsnapshot", "delete", snap)
	c.ok(t, "cg", "delete", restored, "--force")
	c.ok(t, "cg", "delete", cg, "--force")
	var vdis struct{ Data []json.RawMessage }
	c.okJSON(t, &vdis, "vdi", "list")
	if len(vdis.Data) != 0 {
		t.Fatalf("after the forced deletes %d VDIs remain", len(vdis.Data))
	}
	// Another project sees nothing of the default one's.
	if out := c.ok(t, "--project", "elsewhere", "cg", "list"); strings.TrimSpace(out) != "" && strings.Contains(out, "db") {
		t.Fatalf("cg list in another project:\n%s", out)
	}
}
