package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// The Cinder surface (consistency groups), driven by the real cinder CLI:
// Debian's python3-cinderclient 9.1, run as /usr/bin/cinder under the
// system python (scripts/ensure-tools.sh installs it). Every flow of the
// CLI is checked against the REST state it leaves, every refusal of
// Cinder's consistency-group rules (shared reference mgmt.md §2) for its
// non-zero exit, its message and HTTP status, and for leaving the four
// Cinder lists (groups, cgsnapshots, volumes, snapshots, as a pool-admin
// sees them with all_tenants) exactly as they were.
//
// Data goes in and out over NBD with qemu-io, so that groups made from a
// cgsnapshot or from a source group are proven to hold the right point in
// time. The CLI costs about a second of python start-up a call: calls run
// one after another, one per behaviour, and the before/after dumps are
// plain HTTP.

// cinderBin is Debian's cinder CLI; the python3 first on PATH may be
// another interpreter without the cinderclient module.
const cinderBin = "/usr/bin/cinder"

// cinderTimeout bounds one CLI call.
const cinderTimeout = 60 * time.Second

// cinderTenant is the project of most of the test; cinderOther another.
const (
	cinderTenant = "t1"
	cinderOther  = "t2"
)

func TestCinderCLI(t *testing.T) {
	vdiskdtest.RequireTool(t, cinderBin, "qemu-io")
	start := time.Now()
	d := startVdiskd(t)
	f := &cinderFixture{d: d, token: d.Token}
	f.admin = cinderTokenCLI(d.URL, "v3", cinderTenant, d.Token)

	// A second vPool: the second volume type.
	var gold struct {
		GUID string `json:"guid"`
	}
	d.MustCall(t, http.MethodPost, "/vpools", map[string]any{"name": "gold", "backend_type": "LOCAL"}, &gold)
	var types struct {
		Types []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"volume_types"`
	}
	f.getJSON(t, f.path("types"), &types)
	f.types = map[string]string{}
	for _, vt := range types.Types {
		f.types[vt.Name] = vt.ID
	}
	if len(f.types) != 2 || f.types["local"] == "" || f.types["gold"] != gold.GUID {
		t.Fatalf("volume types %+v, want the vPools local and gold (%s)", types.Types, gold.GUID)
	}
	// A vm-admin: may change groups, may not look at other projects'.
	d.MustCall(t, http.MethodPost, "/users",
		map[string]any{"username": "cinder-vmadmin", "password": "cinder-vmadmin-pw", "role": "vm-admin"}, nil)
	f.vmToken = d.Login(t, "cinder-vmadmin", "cinder-vmadmin-pw")

	s := &cinderState{}
	steps := []struct {
		name string
		run  func(*testing.T, *cinderFixture, *cinderState)
	}{
		{"type-list", cinderTypeList},
		{"create", cinderCreateVolumes},
		{"consisgroup-create", cinderGroupCreate},
		{"consisgroup-list-show", cinderGroupListShow},
		{"consisgroup-update", cinderGroupUpdate},
		{"refused/update", cinderRefusedUpdates},
		{"refused/delete-with-volumes", cinderRefusedDeleteWithVolumes},
		{"refused/volume-delete-of-member", cinderRefusedMemberDelete},
		{"refused/names-over-255", cinderRefusedLongNames},
		{"refused/cgsnapshot-create-unknown-group", cinderRefusedSnapshotUnknownGroup},
		{"cgsnapshot-create", cinderSnapshotCreate},
		{"cgsnapshot-list-show", cinderSnapshotListShow},
		{"refused/with-cgsnapshots", cinderRefusedWithSnapshots},
		{"consisgroup-create-from-src", cinderFromSource},
		{"refused/create-from-src", cinderRefusedFromSource},
		{"refused/force-delete", cinderRefusedForceDelete},
		{"tenants", cinderTenants},
		{"non-admin-finds-by-name", cinderNonAdminByName},
		{"cgsnapshot-delete", cinderSnapshotDelete},
		{"consisgroup-delete", cinderGroupDelete},
		{"noauth", cinderNoAuth},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) { st.run(t, f, s) })
	}
	t.Logf("TestCinderCLI: %d cinder CLI calls, %v in all", f.calls, time.Since(start).Round(time.Millisecond))
}

// cinderState is what the steps make and later steps use; a step that
// needs something an earlier (failed) step did not make skips.
type cinderState struct {
	vA, vB, vG, vX string            // vA, vB, vX: type local (vX through /v2); vG: gold
	vH             string            // gold, in no group (made over HTTP)
	cgOne, cgTwo   string            // cgOne: local (vB); cgTwo: local and gold (vA, vG)
	snapOne        string            // cgsnapshot of cgOne
	snapTwo        string            // cgsnapshot of cgTwo
	members        map[string]string // snapTwo's member snapshots, by volume
	fromSnap       string            // group made from snapTwo
	fromCG         string            // group made from cgTwo
	cgEmpty        string
}

func (s *cinderState) need(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if id == "" {
			t.Skip("an earlier step failed to make what this one needs")
		}
	}
}

// The bytes written over NBD at offset 0 (64 KiB): into vA, vB and vG
// before the cgsnapshot, into vA and vG again after it.
const (
	cinderPatA, cinderPatB, cinderPatG = 0x11, 0x22, 0x33
	cinderPatA2, cinderPatG2           = 0x44, 0x55
)

const (
	// cinderNameOver255 is one character more than Cinder's names and
	// descriptions may have.
	cinderNameOver255 = 256
	// cinderUnknownID is no object's id.
	cinderUnknownID = "00000000-0000-4000-8000-000000000000"
	// cinderGroupMissing is how the CLI says it found no group.
	cinderGroupMissing = "No consistencygroup with a name or ID of"
)

// ---------------------------------------------------------------------------
// The flows.

func cinderTypeList(t *testing.T, f *cinderFixture, s *cinderState) {
	// Every vPool is a volume type, by its guid and name.
	r := f.admin.ok(t, f, "type-list")
	got := map[string]string{}
	for _, row := range cinderTable(r.stdout) {
		got[row["Name"]] = row["ID"]
	}
	if !maps.Equal(got, f.types) {
		t.Errorf("cinder type-list: %v, want the vPools %v\n%s", got, f.types, r.stdout)
	}
}

func cinderCreateVolumes(t *testing.T, f *cinderFixture, s *cinderState) {
	mk := func(c cinderCLI, wantType string, args ...string) string {
		t.Helper()
		v := cinderDict(c.ok(t, f, append([]string{"create"}, args...)...).stdout)
		if v["volume_type"] != wantType || v["status"] != "available" || v["size"] != "1" ||
			v["os-vol-tenant-attr:tenant_id"] != cinderTenant || v["consistencygroup_id"] != "None" {
			t.Errorf("cinder create %v: %v, want an available 1 GiB volume of type %s in project %s", args, v, wantType, cinderTenant)
		}
		if v["id"] == "" {
			t.Fatalf("cinder create %v: no id in %v", args, v)
		}
		return v["id"]
	}
	s.vA = mk(f.admin, "local", "--name", "vol-a", "1") // the default type
	s.vB = mk(f.admin, "local", "--name", "vol-b", "--volume-type", "local", "1")
	s.vG = mk(f.admin, "gold", "--name", "vol-g", "--volume-type", "gold", "1")
	s.vX = mk(f.cli("v2", cinderTenant), "local", "--name", "vol-x", "1")
	var h struct {
		Volume cinderVolume `json:"volume"`
	}
	if st, b := f.http(t, f.token, http.MethodPost, f.path("volumes"),
		map[string]any{"volume": map[string]any{"name": "vol-h", "size": 1, "volume_type": "gold"}}); st != http.StatusAccepted {
		t.Fatalf("POST volumes: HTTP %d %s", st, b)
	} else if err := json.Unmarshal(b, &h); err != nil || h.Volume.VolumeType != "gold" {
		t.Fatalf("POST volumes: %s: %v", b, err)
	}
	s.vH = h.Volume.ID

	// Distinct data in each source volume, over NBD.
	for id, pat := range map[string]int{s.vA: cinderPatA, s.vB: cinderPatB, s.vG: cinderPatG} {
		clQemuIO(t, f.d.URI(t, id), fmt.Sprintf("write -P 0x%02x 0 64k", pat))
	}
	f.waitDetached(t)
}

func cinderGroupCreate(t *testing.T, f *cinderFixture, s *cinderState) {
	one := cinderDict(f.admin.ok(t, f, "consisgroup-create", "--name", "cg-one", "local").stdout)
	two := cinderDict(f.admin.ok(t, f, "consisgroup-create", "--name", "cg-two", "--description", "two types",
		"local,gold").stdout)
	s.cgOne, s.cgTwo = one["id"], two["id"]
	s.need(t, s.cgOne, s.cgTwo)
	g1, g2 := f.group(t, s.cgOne), f.group(t, s.cgTwo)
	if g1.Status != "available" || !slices.Equal(g1.VolumeTypes, []string{f.types["local"]}) || cinderText(g1.Name) != "cg-one" {
		t.Errorf("cg-one: %+v, want available with volume type local (%s)", g1, f.types["local"])
	}
	if g2.Status != "available" || !slices.Equal(g2.VolumeTypes, []string{f.types["local"], f.types["gold"]}) ||
		cinderText(g2.Description) != "two types" {
		t.Errorf("cg-two: %+v, want available with volume types local and gold", g2)
	}
}

func cinderGroupListShow(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.cgOne, s.cgTwo)
	rows := cinderTable(f.admin.ok(t, f, "consisgroup-list").stdout)
	for id, name := range map[string]string{s.cgOne: "cg-one", s.cgTwo: "cg-two"} {
		if !slices.ContainsFunc(rows, func(r map[string]string) bool {
			return r["ID"] == id && r["Name"] == name && r["Status"] == "available"
		}) {
			t.Errorf("cinder consisgroup-list: no available %s (%s) in %v", name, id, rows)
		}
	}
	byID := cinderDict(f.admin.ok(t, f, "consisgroup-show", s.cgOne).stdout)
	if byID["id"] != s.cgOne || byID["name"] != "cg-one" || byID["status"] != "available" ||
		byID["availability_zone"] != "local" || !strings.Contains(byID["volume_types"], f.types["local"]) {
		t.Errorf("cinder consisgroup-show %s: %v", s.cgOne, byID)
	}
	byName := cinderDict(f.admin.ok(t, f, "consisgroup-show", "cg-two").stdout)
	if byName["id"] != s.cgTwo || byName["description"] != "two types" ||
		!strings.Contains(byName["volume_types"], f.types["gold"]) {
		t.Errorf("cinder consisgroup-show cg-two: %v", byName)
	}
	// The same through /v2.
	v2 := cinderDict(f.cli("v2", cinderTenant).ok(t, f, "consisgroup-show", "cg-one").stdout)
	if v2["id"] != s.cgOne {
		t.Errorf("cinder consisgroup-show cg-one through /v2: %v", v2)
	}
}

func cinderGroupUpdate(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.cgOne, s.cgTwo, s.vA, s.vB, s.vG, s.vX)
	accepted := func(r cinderResult, group string) {
		t.Helper()
		if want := fmt.Sprintf("Request to update consistency group '%s' has been accepted.", group); !strings.Contains(r.stdout, want) {
			t.Errorf("cinder consisgroup-update: %q, want %q", r.out(), want)
		}
	}
	// Two types, two volumes of different types at once.
	accepted(f.admin.ok(t, f, "consisgroup-update", "cg-two", "--add-volumes", s.vA+","+s.vG), "cg-two")
	accepted(f.admin.ok(t, f, "consisgroup-update", s.cgOne, "--add-volumes", s.vB+","+s.vX), s.cgOne)
	f.wantMembers(t, s.cgOne, s.vB, s.vX)
	accepted(f.admin.ok(t, f, "consisgroup-update", "cg-one", "--remove-volumes", s.vX), "cg-one")
	accepted(f.admin.ok(t, f, "consisgroup-update", "cg-one", "--name", "cg-one-renamed",
		"--description", "renamed"), "cg-one")
	f.wantMembers(t, s.cgOne, s.vB)
	f.wantMembers(t, s.cgTwo, s.vA, s.vG)
	if g := f.group(t, s.cgOne); cinderText(g.Name) != "cg-one-renamed" || cinderText(g.Description) != "renamed" || g.Status != "available" {
		t.Errorf("cg-one after the rename: %+v", g)
	}
}

func cinderRefusedUpdates(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.cgOne, s.cgTwo, s.vA, s.vB, s.vG, s.vX, s.vH)
	t.Run("group-not-available", func(t *testing.T) {
		// A group is stored available; its transient statuses (updating,
		// deleting) last only while one call holds it, and calls on one
		// group are serialised, so no client can reach a non-available
		// group through the API.
		t.Skip("not reachable: a group is never seen other than available between calls")
	})
	t.Run("type-not-in-group", func(t *testing.T) {
		// vX alone could be added: nothing of the update may happen.
		f.refusedCLI(t, f.admin, 400, "is not one of the group's",
			"consisgroup-update", "cg-one-renamed", "--add-volumes", s.vX+","+s.vH)
	})
	t.Run("volume-in-another-group", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 400, "already in consistency group "+s.cgTwo,
			"consisgroup-update", "cg-one-renamed", "--add-volumes", s.vA)
	})
	t.Run("unknown-volume", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 400, "could not be found",
			"consisgroup-update", "cg-one-renamed", "--add-volumes", cinderUnknownID)
	})
	t.Run("add-and-remove-same-volume", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 400, "is in both add_volumes and remove_volumes",
			"consisgroup-update", "cg-one-renamed", "--add-volumes", s.vX, "--remove-volumes", s.vX)
	})
	t.Run("remove-volume-not-in-group", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 400, "it is not in the group",
			"consisgroup-update", "cg-one-renamed", "--remove-volumes", s.vX)
	})
	t.Run("remove-member-of-another-group", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 400, "it is not in the group",
			"consisgroup-update", "cg-one-renamed", "--remove-volumes", s.vA)
	})
	t.Run("nothing-to-update", func(t *testing.T) {
		// (The CLI refuses this itself.)
		f.refusedHTTP(t, f.token, http.MethodPut, f.path("consistencygroups/"+s.cgOne),
			map[string]any{"consistencygroup": map[string]any{}}, 400, "must be given to update a consistency group")
	})
}

func cinderRefusedDeleteWithVolumes(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.cgOne)
	r := f.refusedCLI(t, f.admin, 400, "still contains volumes", "consisgroup-delete", "cg-one-renamed")
	if !strings.Contains(r.out(), "Unable to delete any of the specified consistency groups") {
		t.Errorf("cinder consisgroup-delete: %q", r.out())
	}
	// force must be a boolean (strutils.bool_from_string, strict).
	f.refusedHTTP(t, f.token, http.MethodPost, f.path("consistencygroups/"+s.cgOne+"/delete"),
		map[string]any{"consistencygroup": map[string]any{"force": "perhaps"}}, 400, "force")
}

func cinderRefusedMemberDelete(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.vB, s.cgOne)
	t.Run("cinder-delete", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 400, "is in consistency group "+s.cgOne, "delete", s.vB)
	})
	t.Run("xenapi-rest-destroy", func(t *testing.T) {
		before := f.dump(t)
		var eb struct {
			Error struct {
				Code    string   `json:"code"`
				Params  []string `json:"params"`
				Message string   `json:"message"`
			} `json:"error"`
		}
		st, body := f.d.CallRaw(t, f.token, http.MethodDelete, "/vdis/"+s.vB, nil, nil)
		if err := json.Unmarshal(body, &eb); err != nil {
			t.Errorf("DELETE /api/vdis/%s: %s: %v", s.vB, body, err)
		}
		if st != http.StatusConflict || eb.Error.Code != "OPERATION_NOT_ALLOWED" || !strings.Contains(eb.Error.Message, s.cgOne) {
			t.Errorf("DELETE /api/vdis/%s of a group member: HTTP %d %s, want 409 OPERATION_NOT_ALLOWED naming group %s", s.vB, st, body, s.cgOne)
		}
		f.unchanged(t, before)
	})
}

func cinderRefusedLongNames(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.cgOne, s.cgTwo)
	long := strings.Repeat("n", cinderNameOver255)
	const msg = "more than 255 characters"
	t.Run("consisgroup-create", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 400, msg, "consisgroup-create", "--name", long, "local")
	})
	t.Run("consisgroup-create-description", func(t *testing.T) {
		f.refusedHTTP(t, f.token, http.MethodPost, f.path("consistencygroups"),
			map[string]any{"consistencygroup": map[string]any{"name": "ok", "description": long, "volume_types": "local"}}, 400, msg)
	})
	t.Run("consisgroup-update", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 400, msg, "consisgroup-update", "cg-one-renamed", "--name", long)
	})
	t.Run("cgsnapshot-create", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 400, msg, "cgsnapshot-create", "--name", long, "cg-two")
	})
	t.Run("create-from-src", func(t *testing.T) {
		f.refusedHTTP(t, f.token, http.MethodPost, f.path("consistencygroups/create_from_src"),
			map[string]any{"consistencygroup-from-src": map[string]any{"name": long, "source_cgid": s.cgTwo}}, 400, msg)
	})
}

func cinderRefusedSnapshotUnknownGroup(t *testing.T, f *cinderFixture, s *cinderState) {
	// The CLI looks the group up first (GET, then by name) and stops.
	f.refusedCLI(t, f.admin, 0, cinderGroupMissing+" '"+cinderUnknownID+"' exists", "cgsnapshot-create", cinderUnknownID)
	// The server's answer to the create itself.
	f.refusedHTTP(t, f.token, http.MethodPost, f.path("cgsnapshots"),
		map[string]any{"cgsnapshot": map[string]any{"consistencygroup_id": cinderUnknownID, "name": "x"}}, 404, "could not be found")
	f.refusedHTTP(t, f.token, http.MethodPost, f.path("cgsnapshots"),
		map[string]any{"cgsnapshot": map[string]any{"name": "x"}}, 400, "consistencygroup_id")
}

func cinderSnapshotCreate(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.cgOne, s.cgTwo, s.vA, s.vG)
	two := cinderDict(f.admin.ok(t, f, "cgsnapshot-create", "--name", "snap-two", "--description", "both types", "cg-two").stdout)
	one := cinderDict(f.admin.ok(t, f, "cgsnapshot-create", "--name", "snap-one", s.cgOne).stdout)
	if two["consistencygroup_id"] != s.cgTwo || two["status"] != "available" || two["name"] != "snap-two" {
		t.Errorf("cinder cgsnapshot-create cg-two: %v", two)
	}
	if one["consistencygroup_id"] != s.cgOne || one["status"] != "available" {
		t.Errorf("cinder cgsnapshot-create cg-one: %v", one)
	}
	s.snapOne, s.snapTwo = one["id"], two["id"]
	s.need(t, s.snapTwo)
	// One member snapshot per volume, each of its volume.
	var snaps struct {
		Snapshots []cinderSnapshot `json:"snapshots"`
	}
	f.getJSON(t, f.path("snapshots/detail?cgsnapshot_id="+s.snapTwo), &snaps)
	s.members = map[string]string{}
	for _, sn := range snaps.Snapshots {
		if cinderText(sn.CGSnapshotID) != s.snapTwo || sn.Status != "available" {
			t.Errorf("member snapshot of %s: %+v", s.snapTwo, sn)
		}
		s.members[sn.VolumeID] = sn.ID
	}
	if len(s.members) != 2 || s.members[s.vA] == "" || s.members[s.vG] == "" {
		t.Errorf("snap-two's member snapshots: %+v, want one of %s and one of %s", snaps.Snapshots, s.vA, s.vG)
	}
	// After the cgsnapshot the sources change; its members must not.
	clQemuIO(t, f.d.URI(t, s.vA), fmt.Sprintf("write -P 0x%02x 0 64k", cinderPatA2))
	clQemuIO(t, f.d.URI(t, s.vG), fmt.Sprintf("write -P 0x%02x 0 64k", cinderPatG2))
	f.waitDetached(t)
}

func cinderSnapshotListShow(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.snapOne, s.snapTwo)
	ids := func(r cinderResult) []string {
		var out []string
		for _, row := range cinderTable(r.stdout) {
			out = append(out, row["ID"])
		}
		slices.Sort(out)
		return out
	}
	both := []string{s.snapOne, s.snapTwo}
	slices.Sort(both)
	if got := ids(f.admin.ok(t, f, "cgsnapshot-list")); !slices.Equal(got, both) {
		t.Errorf("cinder cgsnapshot-list: %v, want %v", got, both)
	}
	if got := ids(f.admin.ok(t, f, "cgsnapshot-list", "--consistencygroup-id", s.cgTwo)); !slices.Equal(got, []string{s.snapTwo}) {
		t.Errorf("cinder cgsnapshot-list --consistencygroup-id %s: %v, want [%s]", s.cgTwo, got, s.snapTwo)
	}
	if got := ids(f.admin.ok(t, f, "cgsnapshot-list", "--status", "available")); !slices.Equal(got, both) {
		t.Errorf("cinder cgsnapshot-list --status available: %v, want %v", got, both)
	}
	byID := cinderDict(f.admin.ok(t, f, "cgsnapshot-show", s.snapTwo).stdout)
	byName := cinderDict(f.admin.ok(t, f, "cgsnapshot-show", "snap-one").stdout)
	if byID["id"] != s.snapTwo || byID["consistencygroup_id"] != s.cgTwo || byID["description"] != "both types" {
		t.Errorf("cinder cgsnapshot-show %s: %v", s.snapTwo, byID)
	}
	if byName["id"] != s.snapOne || byName["consistencygroup_id"] != s.cgOne {
		t.Errorf("cinder cgsnapshot-show snap-one: %v", byName)
	}
	// snapshot-list shows the member snapshots, of their volumes.
	rows := cinderTable(f.admin.ok(t, f, "snapshot-list").stdout)
	for vol, snap := range s.members {
		if !slices.ContainsFunc(rows, func(r map[string]string) bool {
			return r["ID"] == snap && r["Volume ID"] == vol && r["Status"] == "available"
		}) {
			t.Errorf("cinder snapshot-list: no available snapshot %s of volume %s in %v", snap, vol, rows)
		}
	}
	if len(rows) != 3 {
		t.Errorf("cinder snapshot-list: %d snapshots, want 3 (snap-two's two, snap-one's one): %v", len(rows), rows)
	}
}

func cinderRefusedWithSnapshots(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.snapTwo, s.members[s.vA])
	t.Run("delete-force-with-cgsnapshots", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 400, "still has cgsnapshots", "consisgroup-delete", "--force", "cg-two")
	})
	t.Run("delete-with-cgsnapshots", func(t *testing.T) {
		f.refusedHTTP(t, f.token, http.MethodPost, f.path("consistencygroups/"+s.cgTwo+"/delete"),
			map[string]any{"consistencygroup": map[string]any{"force": false}}, 400, "cgsnapshots")
	})
	t.Run("add-snapshot-id", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 400, s.members[s.vA],
			"consisgroup-update", "cg-one-renamed", "--add-volumes", s.members[s.vA])
	})
	t.Run("snapshot-delete-of-member", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 400, "is part of cgsnapshot "+s.snapTwo, "snapshot-delete", s.members[s.vG])
	})
}

func cinderFromSource(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.snapTwo, s.members[s.vA], s.members[s.vG])
	fromSnap := cinderDict(f.admin.ok(t, f, "consisgroup-create-from-src", "--cgsnapshot", "snap-two",
		"--name", "from-snap").stdout)
	fromCG := cinderDict(f.admin.ok(t, f, "consisgroup-create-from-src", "--source-cg", s.cgTwo,
		"--name", "from-cg", "--description", "a copy").stdout)
	s.fromSnap, s.fromCG = fromSnap["id"], fromCG["id"]
	s.need(t, s.fromSnap, s.fromCG)
	if fromSnap["name"] != "from-snap" || fromCG["name"] != "from-cg" {
		t.Errorf("cinder consisgroup-create-from-src: %v, %v", fromSnap, fromCG)
	}
	for _, id := range []string{s.fromSnap, s.fromCG} {
		if g := f.group(t, id); g.Status != "available" ||
			!slices.Equal(g.VolumeTypes, []string{f.types["local"], f.types["gold"]}) {
			t.Errorf("group %s made from a source: %+v, want available with cg-two's volume types", id, g)
		}
	}
	listed := cinderTable(f.admin.ok(t, f, "list").stdout)
	// Each new group has one new volume per source volume, in the group,
	// of its source's type and size, with the source's data at that point.
	check := func(group string, source func(cinderVolume) string, data map[string]int) {
		t.Helper()
		vols := f.groupVolumes(t, group)
		if len(vols) != 2 {
			t.Fatalf("group %s: %d volumes, want 2: %+v", group, len(vols), vols)
		}
		seen := map[string]bool{}
		for _, v := range vols {
			src := source(v)
			seen[src] = true
			wantType := map[string]string{s.vA: "local", s.vG: "gold"}[src]
			if wantType == "" || v.VolumeType != wantType || v.Size != 1 || v.Status != "available" ||
				cinderText(v.ConsistencyGroupID) != group || cinderText(v.TenantID) != cinderTenant {
				t.Errorf("volume %s of group %s: %+v, want an available 1 GiB %s volume made from %s", v.ID, group, v, wantType, src)
			}
			if !slices.ContainsFunc(listed, func(r map[string]string) bool { return r["ID"] == v.ID }) {
				t.Errorf("cinder list does not show volume %s of group %s: %v", v.ID, group, listed)
			}
			if pat, ok := data[src]; ok {
				clQemuIO(t, f.d.URI(t, v.ID), fmt.Sprintf("read -P 0x%02x 0 64k", pat), "read -P 0 64k 64k")
			}
		}
		if !seen[s.vA] || !seen[s.vG] {
			t.Errorf("group %s: volumes %+v, want one from each of %s and %s", group, vols, s.vA, s.vG)
		}
	}
	snapVolume := map[string]string{s.members[s.vA]: s.vA, s.members[s.vG]: s.vG}
	check(s.fromSnap, func(v cinderVolume) string { return snapVolume[cinderText(v.SnapshotID)] },
		map[string]int{s.vA: cinderPatA, s.vG: cinderPatG})
	check(s.fromCG, func(v cinderVolume) string { return cinderText(v.SourceVolID) },
		map[string]int{s.vA: cinderPatA2, s.vG: cinderPatG2})
	// The sources are as they were.
	f.wantMembers(t, s.cgTwo, s.vA, s.vG)
	f.waitDetached(t)
}

func cinderRefusedFromSource(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.snapTwo, s.cgTwo)
	t.Run("both-sources", func(t *testing.T) {
		// The CLI refuses both by itself ("both cgsnapshot and source CG
		// are provided"): only HTTP reaches the server.
		f.refusedHTTP(t, f.token, http.MethodPost, f.path("consistencygroups/create_from_src"),
			map[string]any{"consistencygroup-from-src": map[string]any{"name": "both", "cgsnapshot_id": s.snapTwo,
				"source_cgid": s.cgTwo}}, 400, "only one of cgsnapshot_id and source_cgid")
	})
	t.Run("no-source", func(t *testing.T) {
		f.refusedCLI(t, f.admin, 0, "neither cgsnapshot nor source CG is provided",
			"consisgroup-create-from-src", "--name", "none")
		f.refusedHTTP(t, f.token, http.MethodPost, f.path("consistencygroups/create_from_src"),
			map[string]any{"consistencygroup-from-src": map[string]any{"name": "none"}}, 400,
			"either cgsnapshot_id or source_cgid")
	})
	t.Run("unknown-source", func(t *testing.T) {
		f.refusedHTTP(t, f.token, http.MethodPost, f.path("consistencygroups/create_from_src"),
			map[string]any{"consistencygroup-from-src": map[string]any{"cgsnapshot_id": cinderUnknownID}}, 404, "could not be found")
	})
	t.Run("empty-group", func(t *testing.T) {
		s.cgEmpty = cinderDict(f.admin.ok(t, f, "consisgroup-create", "--name", "cg-empty", "local").stdout)["id"]
		s.need(t, s.cgEmpty)
		f.refusedCLI(t, f.admin, 400, "is empty", "consisgroup-create-from-src", "--source-cg", "cg-empty")
	})
}

func cinderRefusedForceDelete(t *testing.T, f *cinderFixture, s *cinderState) {
	// A group of its own, made over HTTP: cg-force, with one volume.
	var g struct {
		Group cinderGroup `json:"consistencygroup"`
	}
	var v struct {
		Volume cinderVolume `json:"volume"`
	}
	for _, c := range []struct {
		path string
		body any
		out  any
	}{
		{"consistencygroups", map[string]any{"consistencygroup": map[string]any{"name": "cg-force", "volume_types": "local"}}, &g},
		{"volumes", map[string]any{"volume": map[string]any{"name": "vol-f", "size": 1}}, &v},
	} {
		st, b := f.http(t, f.token, http.MethodPost, f.path(c.path), c.body)
		if err := json.Unmarshal(b, c.out); st != http.StatusAccepted || err != nil {
			t.Fatalf("POST %s: HTTP %d %s", c.path, st, b)
		}
	}
	group, member := g.Group.ID, v.Volume.ID
	if st, b := f.http(t, f.token, http.MethodPut, f.path("consistencygroups/"+group),
		map[string]any{"consistencygroup": map[string]any{"add_volumes": member}}); st != http.StatusAccepted {
		t.Fatalf("PUT consistencygroups/%s: HTTP %d %s", group, st, b)
	}
	f.wantMembers(t, group, member)
	// Cinder: with force the volumes go too, but none may have snapshots
	// (the group's are cgsnapshots, refused above) or be attached.
	t.Run("member-with-snapshot", func(t *testing.T) {
		var sn struct {
			Snapshot cinderSnapshot `json:"snapshot"`
		}
		if st, b := f.http(t, f.token, http.MethodPost, f.path("snapshots"),
			map[string]any{"snapshot": map[string]any{"volume_id": member, "name": "plain"}}); st != http.StatusAccepted {
			t.Fatalf("POST snapshots of %s: HTTP %d %s", member, st, b)
		} else if err := json.Unmarshal(b, &sn); err != nil || sn.Snapshot.ID == "" {
			t.Fatalf("POST snapshots: %s: %v", b, err)
		}
		f.refusedCLI(t, f.admin, 400, "has snapshots", "consisgroup-delete", "--force", "cg-force")
		if st, b := f.http(t, f.token, http.MethodDelete, f.path("snapshots/"+sn.Snapshot.ID), nil); st != http.StatusAccepted {
			t.Errorf("DELETE snapshots/%s: HTTP %d %s", sn.Snapshot.ID, st, b)
		}
	})
	t.Run("member-attached", func(t *testing.T) {
		if _, err := f.group0(t, group); err != nil {
			t.Skipf("group %s is gone: %v", group, err)
		}
		c := nbdtest.Connect(t, "tcp", f.d.NBDHost, nbdtest.Negotiation{Export: f.d.ExportName(t, member)})
		f.waitStatus(t, member, "in-use")
		f.refusedCLI(t, f.admin, 400, "is attached", "consisgroup-delete", "--force", group)
		c.Disconnect()
		f.waitDetached(t)
	})
}

func cinderTenants(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.cgOne, s.cgTwo, s.snapTwo)
	vmT2 := cinderTokenCLI(f.d.URL, "v3", cinderOther, f.vmToken)
	t1Groups := []string{s.cgOne, s.cgTwo}
	leaks := func(out string) []string {
		var l []string
		for _, id := range append(slices.Clone(t1Groups), s.snapOne, s.snapTwo, s.vA, s.vB) {
			if id != "" && strings.Contains(out, id) {
				l = append(l, id)
			}
		}
		return l
	}
	t.Run("t2-sees-nothing-of-t1", func(t *testing.T) {
		if r := vmT2.ok(t, f, "consisgroup-list"); len(cinderTable(r.stdout)) != 0 || len(leaks(r.out())) > 0 {
			t.Errorf("cinder consisgroup-list in %s: %q, want no groups", cinderOther, r.out())
		}
		if r := vmT2.exec(t, f, "consisgroup-show", s.cgOne); r.code == 0 || strings.Contains(r.out(), "cg-one-renamed") {
			t.Errorf("cinder consisgroup-show %s in %s: exit %d %q, want a refusal", s.cgOne, cinderOther, r.code, r.out())
		}
		for _, p := range []string{"consistencygroups/" + s.cgOne, "cgsnapshots/" + s.snapTwo, "volumes/" + s.vA} {
			st, b := f.http(t, f.vmToken, http.MethodGet, "/v3/"+cinderOther+"/"+p, nil)
			if st != http.StatusNotFound || !strings.Contains(string(b), `"itemNotFound"`) {
				t.Errorf("GET /v3/%s/%s as a vm-admin: HTTP %d %s, want 404 itemNotFound", cinderOther, p, st, b)
			}
		}
		for _, l := range []string{"consistencygroups/detail", "cgsnapshots/detail", "volumes/detail", "snapshots/detail"} {
			st, b := f.http(t, f.vmToken, http.MethodGet, "/v3/"+cinderOther+"/"+l, nil)
			if st != http.StatusOK || len(leaks(string(b))) > 0 {
				t.Errorf("GET /v3/%s/%s as a vm-admin: HTTP %d %s, want none of %s's", cinderOther, l, st, b, cinderTenant)
			}
		}
		// A vm-admin changes its own project's groups; t1 does not see them.
		g := cinderDict(vmT2.ok(t, f, "consisgroup-create", "--name", "t2-group", "local").stdout)["id"]
		if g == "" {
			t.Fatal("no group made in t2")
		}
		st, b := f.http(t, f.vmToken, http.MethodGet, f.path("consistencygroups/"+g), nil)
		if st != http.StatusNotFound {
			t.Errorf("GET /v3/%s/consistencygroups/%s (t2's) as a vm-admin: HTTP %d %s, want 404", cinderTenant, g, st, b)
		}
		var l struct {
			Groups []cinderGroup `json:"consistencygroups"`
		}
		f.getJSONAs(t, f.vmToken, f.path("consistencygroups"), &l)
		if slices.ContainsFunc(l.Groups, func(x cinderGroup) bool { return x.ID == g }) {
			t.Errorf("t1's consistencygroups list t2's group %s: %+v", g, l.Groups)
		}
	})
	t.Run("all-tenants-non-admin", func(t *testing.T) {
		// python-cinderclient 9.1's consisgroup-list drops --all-tenants
		// (it calls list() without search_opts): it lists the project's.
		if r := vmT2.ok(t, f, "consisgroup-list", "--all-tenants"); len(leaks(r.out())) > 0 {
			t.Errorf("cinder consisgroup-list --all-tenants as a vm-admin in %s shows %s's: %q", cinderOther, cinderTenant, r.out())
		}
		// cgsnapshot-list sends all_tenants=1. A non-admin either is
		// refused (403: vdiskd's policy) or gets the project's own only
		// (Cinder ignores all_tenants for non-admins); never another's.
		before := f.dump(t)
		r := vmT2.exec(t, f, "cgsnapshot-list", "--all-tenants")
		switch {
		case len(leaks(r.out())) > 0:
			t.Errorf("cinder cgsnapshot-list --all-tenants as a vm-admin in %s shows %s's: %q", cinderOther, cinderTenant, r.out())
		case r.code != 0 && !strings.Contains(r.out(), "(HTTP 403)"):
			t.Errorf("cinder cgsnapshot-list --all-tenants as a vm-admin: exit %d %q, want HTTP 403 or the project's own", r.code, r.out())
		case r.code != 0:
			t.Logf("cgsnapshot-list --all-tenants as a vm-admin: refused %q", strings.TrimSpace(r.out()))
		}
		for _, l := range []string{"consistencygroups/detail", "cgsnapshots/detail"} {
			st, b := f.http(t, f.vmToken, http.MethodGet, "/v3/"+cinderOther+"/"+l+"?all_tenants=1", nil)
			if len(leaks(string(b))) > 0 || (st != http.StatusOK && (st != http.StatusForbidden || !strings.Contains(string(b), `"forbidden"`))) {
				t.Errorf("GET /v3/%s/%s?all_tenants=1 as a vm-admin: HTTP %d %s, want 403 forbidden or none of %s's", cinderOther, l, st, b, cinderTenant)
			}
		}
		f.unchanged(t, before)
	})
	t.Run("all-tenants-admin", func(t *testing.T) {
		adminT2 := cinderTokenCLI(f.d.URL, "v3", cinderOther, f.token)
		r := adminT2.ok(t, f, "cgsnapshot-list", "--all-tenants")
		for _, id := range []string{s.snapOne, s.snapTwo} {
			if !strings.Contains(r.stdout, id) {
				t.Errorf("cinder cgsnapshot-list --all-tenants as admin in %s: no %s\n%s", cinderOther, id, r.stdout)
			}
		}
		var l struct {
			Groups []cinderGroup `json:"consistencygroups"`
		}
		f.getJSONAs(t, f.token, "/v3/"+cinderOther+"/consistencygroups/detail?all_tenants=1", &l)
		for _, id := range t1Groups {
			if !slices.ContainsFunc(l.Groups, func(g cinderGroup) bool { return g.ID == id }) {
				t.Errorf("consistencygroups/detail?all_tenants=1 as admin in %s: no %s: %+v", cinderOther, id, l.Groups)
			}
		}
	})
}

// cinderNonAdminByName: python-cinderclient finds a group, cgsnapshot or
// volume named on its command line with GET .../detail?all_tenants=1&
// name=NAME, whoever the caller (cinderclient/base.py findall). Cinder
// ignores all_tenants for a non-admin and lists the project's; a non-admin
// must be able to name its own objects.
func cinderNonAdminByName(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.cgOne)
	vm := cinderTokenCLI(f.d.URL, "v3", cinderTenant, f.vmToken)
	r := vm.exec(t, f, "consisgroup-show", "cg-one-renamed")
	if r.code != 0 || cinderDict(r.stdout)["id"] != s.cgOne {
		t.Errorf("cinder consisgroup-show cg-one-renamed as a vm-admin of %s: exit %d %q, want group %s",
			cinderTenant, r.code, strings.TrimSpace(r.out()), s.cgOne)
	}
}

func cinderSnapshotDelete(t *testing.T, f *cinderFixture, s *cinderState) {
	s.need(t, s.snapOne, s.snapTwo)
	f.admin.ok(t, f, "cgsnapshot-delete", "snap-two", s.snapOne)
	for _, id := range []string{s.snapOne, s.snapTwo} {
		f.waitGone(t, f.path("cgsnapshots/"+id))
	}
	// The member snapshots went with them.
	var first string
	for _, id := range s.members {
		f.waitGone(t, f.path("snapshots/"+id))
		first = id
	}
	if first != "" {
		if r := f.admin.exec(t, f, "snapshot-show", first); r.code == 0 || !strings.Contains(r.out(), "No snapshot with a name or ID of") {
			t.Errorf("cinder snapshot-show %s after cgsnapshot-delete: exit %d %q, want not found", first, r.code, r.out())
		}
	}
	var snaps struct {
		Snapshots []cinderSnapshot `json:"snapshots"`
	}
	f.getJSON(t, f.path("snapshots/detail"), &snaps)
	if len(snaps.Snapshots) != 0 {
		t.Errorf("snapshots left after both cgsnapshots were deleted: %+v", snaps.Snapshots)
	}
	// The sources are untouched.
	f.wantMembers(t, s.cgTwo, s.vA, s.vG)
}

func cinderGroupDelete(t *testing.T, f *cinderFixture, s *cinderState) {
	t.Run("empty-without-force", func(t *testing.T) {
		s.need(t, s.cgEmpty)
		f.admin.ok(t, f, "consisgroup-delete", "cg-empty")
		f.waitGone(t, f.path("consistencygroups/"+s.cgEmpty))
		if r := f.admin.exec(t, f, "consisgroup-show", s.cgEmpty); r.code == 0 || !strings.Contains(r.out(), cinderGroupMissing) {
			t.Errorf("cinder consisgroup-show %s after its delete: exit %d %q", s.cgEmpty, r.code, r.out())
		}
	})
	t.Run("non-empty-with-force", func(t *testing.T) {
		s.need(t, s.cgTwo, s.snapTwo)
		if _, err := f.group0(t, s.cgTwo); err != nil {
			t.Fatalf("cg-two: %v", err)
		}
		f.admin.ok(t, f, "consisgroup-delete", "--force", "cg-two")
		f.waitGone(t, f.path("consistencygroups/"+s.cgTwo))
		for _, v := range []string{s.vA, s.vG} {
			f.waitGone(t, f.path("volumes/"+v))
			if st := f.d.Call(t, http.MethodGet, "/vdis/"+v, nil, nil); st != http.StatusNotFound {
				t.Errorf("GET /api/vdis/%s after its group's forced delete: HTTP %d, want 404", v, st)
			}
		}
		if r := f.admin.exec(t, f, "show", s.vA); r.code == 0 || !strings.Contains(r.out(), "No volume with a name or ID of") {
			t.Errorf("cinder show %s after its group's forced delete: exit %d %q", s.vA, r.code, r.out())
		}
		// The groups made from it keep their volumes.
		for _, g := range []string{s.fromSnap, s.fromCG} {
			if g != "" && len(f.groupVolumes(t, g)) != 2 {
				t.Errorf("group %s lost volumes with its source's delete", g)
			}
		}
	})
}

func cinderNoAuth(t *testing.T, f *cinderFixture, s *cinderState) {
	d2 := startVdiskd(t, "--cinder-auth", "noauth")
	// The noauth plugin's get_endpoint appends the project, but
	// CINDER_ENDPOINT overrides the endpoint whole: it must name the
	// project itself.
	na := cinderNoauthCLI(d2.URL, "v2", "u1", cinderTenant)
	v := cinderDict(na.ok(t, f, "create", "--name", "na-vol", "1").stdout)
	if v["user_id"] != "u1" || v["os-vol-tenant-attr:tenant_id"] != cinderTenant || v["id"] == "" {
		t.Fatalf("cinder create with noauth u1:%s: %v", cinderTenant, v)
	}
	g := cinderDict(na.ok(t, f, "consisgroup-create", "--name", "na-group", "local").stdout)
	if g["id"] == "" {
		t.Fatalf("cinder consisgroup-create with noauth: %v", g)
	}
	na.ok(t, f, "consisgroup-update", "na-group", "--add-volumes", v["id"])
	cs := cinderDict(na.ok(t, f, "cgsnapshot-create", "--name", "na-snap", "na-group").stdout)
	if cs["consistencygroup_id"] != g["id"] || cs["status"] != "available" {
		t.Errorf("cinder cgsnapshot-create with noauth: %v", cs)
	}
	rows := cinderTable(cinderNoauthCLI(d2.URL, "v3", "u1", cinderTenant).ok(t, f, "consisgroup-list").stdout)
	if len(rows) != 1 || rows[0]["ID"] != g["id"] || rows[0]["Name"] != "na-group" {
		t.Errorf("cinder consisgroup-list with noauth through /v3: %v, want na-group", rows)
	}
	// Another project's path than the token's: Cinder's "Malformed request url".
	r := cinderCLI{env: []string{"OS_AUTH_TYPE=noauth", "OS_USER_ID=u1", "OS_PROJECT_ID=" + cinderTenant,
		"CINDER_ENDPOINT=" + d2.URL + "/v3/" + cinderOther, "OS_VOLUME_API_VERSION=3.0"}}.exec(t, f, "consisgroup-list")
	if r.code == 0 || !strings.Contains(r.out(), "Malformed request url (HTTP 400)") {
		t.Errorf("noauth u1:%s on /v3/%s: exit %d %q, want Malformed request url (HTTP 400)", cinderTenant, cinderOther, r.code, r.out())
	}

	t.Run("token-daemon-refuses-noauth", func(t *testing.T) {
		before := f.dump(t)
		r := cinderNoauthCLI(f.d.URL, "v2", "u1", cinderTenant).exec(t, f, "consisgroup-create", "--name", "sneaky", "local")
		if r.code == 0 || !strings.Contains(r.out(), "(HTTP 401)") {
			t.Errorf("noauth u1:%s to a --cinder-auth token daemon: exit %d %q, want HTTP 401", cinderTenant, r.code, r.out())
		}
		st, b := f.http(t, "u1:"+cinderTenant, http.MethodGet, f.path("consistencygroups"), nil)
		var body struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(b, &body); err != nil || st != http.StatusUnauthorized || body.Error.Code != 401 {
			t.Errorf("X-Auth-Token u1:%s to a token daemon: HTTP %d %s, want 401 {\"error\":{\"code\":401,...}}", cinderTenant, st, b)
		}
		f.unchanged(t, before)
	})
}

// ---------------------------------------------------------------------------
// The CLI.

// cinderCLI is one way to run the cinder CLI: its environment (auth
// plugin, endpoint, API version) and leading flags.
type cinderCLI struct {
	env   []string
	flags []string
}

// cinderTokenCLI sends a vdiskd token: keystoneauth's admin_token plugin, which
// must be given as --os-auth-type (OS_AUTH_TYPE clashes with an option of
// cinderclient's).
func cinderTokenCLI(base, api, tenant, token string) cinderCLI {
	return cinderCLI{
		env: []string{"OS_TOKEN=" + token, "CINDER_ENDPOINT=" + base + "/" + api + "/" + tenant,
			"OS_VOLUME_API_VERSION=3.0", "OS_PROJECT_ID=" + tenant},
		flags: []string{"--os-auth-type", "admin_token"},
	}
}

// cinderNoauthCLI is cinderclient's noauth plugin: X-Auth-Token user:project.
func cinderNoauthCLI(base, api, user, tenant string) cinderCLI {
	return cinderCLI{env: []string{"OS_AUTH_TYPE=noauth", "OS_USER_ID=" + user, "OS_PROJECT_ID=" + tenant,
		"CINDER_ENDPOINT=" + base + "/" + api + "/" + tenant, "OS_VOLUME_API_VERSION=3.0"}}
}

// cli is the admin's CLI through /<api>/<tenant>.
func (f *cinderFixture) cli(api, tenant string) cinderCLI {
	return cinderTokenCLI(f.d.URL, api, tenant, f.token)
}

type cinderResult struct {
	code           int
	stdout, stderr string
}

func (r cinderResult) out() string { return r.stdout + r.stderr }

// exec runs the CLI with a deadline and returns its exit code and output.
func (c cinderCLI) exec(t *testing.T, f *cinderFixture, args ...string) cinderResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cinderTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cinderBin, append(slices.Clone(c.flags), args...)...)
	// None of the caller's OpenStack settings.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "OS_") || strings.HasPrefix(strings.ToUpper(kv), "CINDER_") ||
			strings.HasPrefix(kv, "PYTHON")
	})
	cmd.Env = append(cmd.Env, c.env...)
	cmd.WaitDelay = 5 * time.Second
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	began := time.Now()
	err := cmd.Run()
	f.calls++
	r := cinderResult{stdout: so.String(), stderr: se.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("cinder %s: no answer within %v\n%s", cinderArgs(args), cinderTimeout, r.out())
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("cinder %s: %v", cinderArgs(args), err)
	}
	t.Logf("cinder %s: exit %d (%v)", cinderArgs(args), r.code, time.Since(began).Round(10*time.Millisecond))
	return r
}

// ok runs the CLI and fails the test unless it exits 0.
func (c cinderCLI) ok(t *testing.T, f *cinderFixture, args ...string) cinderResult {
	t.Helper()
	r := c.exec(t, f, args...)
	if r.code != 0 {
		t.Fatalf("cinder %s: exit %d\n%s", cinderArgs(args), r.code, r.out())
	}
	return r
}

func cinderArgs(args []string) string {
	var out []string
	for _, a := range args {
		if len(a) > 60 {
			a = fmt.Sprintf("%.20s...(%d characters)", a, len(a))
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}

// cinderTable reads the rows of the table the CLI prints (prettytable), each
// by its header's column names.
func cinderTable(out string) []map[string]string {
	var header []string
	var rows []map[string]string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if header == nil {
			header = cells
			continue
		}
		row := map[string]string{}
		for i, h := range header {
			if i < len(cells) {
				row[h] = cells[i]
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// cinderDict reads a Property | Value table.
func cinderDict(out string) map[string]string {
	m := map[string]string{}
	for _, r := range cinderTable(out) {
		m[r["Property"]] = r["Value"]
	}
	return m
}

// ---------------------------------------------------------------------------
// REST.

type cinderFixture struct {
	d       *daemon
	token   string // admin (pool-admin)
	vmToken string // a vm-admin's
	admin   cinderCLI
	types   map[string]string // vPool guid by name
	calls   int
}

type cinderGroup struct {
	ID          string   `json:"id"`
	Status      string   `json:"status"`
	Name        *string  `json:"name"`
	Description *string  `json:"description"`
	VolumeTypes []string `json:"volume_types"`
}

type cinderVolume struct {
	ID                 string  `json:"id"`
	Status             string  `json:"status"`
	Size               int64   `json:"size"`
	VolumeType         string  `json:"volume_type"`
	SnapshotID         *string `json:"snapshot_id"`
	SourceVolID        *string `json:"source_volid"`
	ConsistencyGroupID *string `json:"consistencygroup_id"`
	TenantID           *string `json:"os-vol-tenant-attr:tenant_id"`
}

type cinderSnapshot struct {
	ID           string  `json:"id"`
	Status       string  `json:"status"`
	VolumeID     string  `json:"volume_id"`
	CGSnapshotID *string `json:"cgsnapshot_id"`
}

func cinderText(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// path is a Cinder path of the main tenant, through /v3.
func (f *cinderFixture) path(p string) string { return "/v3/" + cinderTenant + "/" + p }

// http makes a Cinder call with X-Auth-Token.
func (f *cinderFixture) http(t *testing.T, token, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, f.d.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := vdiskdtest.HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, b
}

func (f *cinderFixture) getJSON(t *testing.T, path string, out any) {
	t.Helper()
	f.getJSONAs(t, f.token, path, out)
}

func (f *cinderFixture) getJSONAs(t *testing.T, token, path string, out any) {
	t.Helper()
	st, b := f.http(t, token, http.MethodGet, path, nil)
	if st != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d %s", path, st, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %s: %v", path, b, err)
	}
}

// group0 reads a group, or says why not.
func (f *cinderFixture) group0(t *testing.T, id string) (cinderGroup, error) {
	t.Helper()
	st, b := f.http(t, f.token, http.MethodGet, f.path("consistencygroups/"+id), nil)
	var g struct {
		Group cinderGroup `json:"consistencygroup"`
	}
	if st != http.StatusOK {
		return g.Group, fmt.Errorf("HTTP %d %s", st, b)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		return g.Group, fmt.Errorf("%s: %v", b, err)
	}
	return g.Group, nil
}

func (f *cinderFixture) group(t *testing.T, id string) cinderGroup {
	t.Helper()
	g, err := f.group0(t, id)
	if err != nil {
		t.Fatalf("GET consistencygroups/%s: %v", id, err)
	}
	return g
}

// groupVolumes lists the volumes (of any project) whose
// consistencygroup_id is group.
func (f *cinderFixture) groupVolumes(t *testing.T, group string) []cinderVolume {
	t.Helper()
	var l struct {
		Volumes []cinderVolume `json:"volumes"`
	}
	f.getJSON(t, f.path("volumes/detail?all_tenants=1"), &l)
	return slices.DeleteFunc(l.Volumes, func(v cinderVolume) bool { return cinderText(v.ConsistencyGroupID) != group })
}

// wantMembers checks a group's volumes.
func (f *cinderFixture) wantMembers(t *testing.T, group string, want ...string) {
	t.Helper()
	var got []string
	for _, v := range f.groupVolumes(t, group) {
		got = append(got, v.ID)
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Errorf("group %s has volumes %v, want %v", group, got, want)
	}
}

// waitStatus waits for a volume's status (an NBD client's attach and
// detach are seen a moment after the client's own view).
func (f *cinderFixture) waitStatus(t *testing.T, id, status string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var v struct {
			Volume cinderVolume `json:"volume"`
		}
		f.getJSON(t, f.path("volumes/"+id), &v)
		if v.Volume.Status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("volume %s is %s, not %s, after 10s", id, v.Volume.Status, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitDetached waits until no volume of any project is in-use: the
// dumps compared around a refusal must not see an NBD client leave.
func (f *cinderFixture) waitDetached(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var l struct {
			Volumes []cinderVolume `json:"volumes"`
		}
		f.getJSON(t, f.path("volumes/detail?all_tenants=1"), &l)
		if !slices.ContainsFunc(l.Volumes, func(v cinderVolume) bool { return v.Status != "available" }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("volumes still not available after 10s: %+v", l.Volumes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGone waits for a Cinder object to answer 404 (Tempest's waiters
// treat 404 as deleted; vdiskd's deletes are done when they answer).
func (f *cinderFixture) waitGone(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, b := f.http(t, f.token, http.MethodGet, path, nil)
		if st == http.StatusNotFound && strings.Contains(string(b), `"itemNotFound"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("GET %s: HTTP %d %s, want 404 itemNotFound", path, st, b)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cinderDumped are the lists compared around every refusal.
var cinderDumped = []struct{ path, key string }{
	{"consistencygroups/detail", "consistencygroups"},
	{"cgsnapshots/detail", "cgsnapshots"},
	{"volumes/detail", "volumes"},
	{"snapshots/detail", "snapshots"},
}

// cinderDump is every object of the four lists, as a pool-admin sees them
// across projects: list -> id -> its JSON.
type cinderDump map[string]map[string]string

func (f *cinderFixture) dump(t *testing.T) cinderDump {
	t.Helper()
	d := cinderDump{}
	for _, l := range cinderDumped {
		var raw map[string][]json.RawMessage
		f.getJSON(t, f.path(l.path+"?all_tenants=1"), &raw)
		d[l.key] = map[string]string{}
		for _, o := range raw[l.key] {
			var id struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(o, &id); err != nil || id.ID == "" {
				t.Fatalf("%s: an object without an id: %s", l.path, o)
			}
			d[l.key][id.ID] = string(o)
		}
	}
	return d
}

// unchanged fails the test if the lists differ from before.
func (f *cinderFixture) unchanged(t *testing.T, before cinderDump) {
	t.Helper()
	after := f.dump(t)
	for _, l := range cinderDumped {
		b, a := before[l.key], after[l.key]
		for id, was := range b {
			switch now, ok := a[id]; {
			case !ok:
				t.Errorf("the refused call removed %s %s: %s", l.key, id, was)
			case now != was:
				t.Errorf("the refused call changed %s %s:\nbefore %s\nafter  %s", l.key, id, was, now)
			}
		}
		for id, now := range a {
			if _, ok := b[id]; !ok {
				t.Errorf("the refused call added %s %s: %s", l.key, id, now)
			}
		}
	}
}

// refusedCLI runs a CLI call that must be refused: a non-zero exit, the
// message, "(HTTP status)" when the server refused (status 0: the CLI
// refuses by itself), and nothing changed.
func (f *cinderFixture) refusedCLI(t *testing.T, c cinderCLI, status int, msg string, args ...string) cinderResult {
	t.Helper()
	before := f.dump(t)
	r := c.exec(t, f, args...)
	if r.code == 0 {
		t.Errorf("cinder %s: exit 0, want a refusal\n%s", cinderArgs(args), r.out())
	}
	if status != 0 && !strings.Contains(r.out(), fmt.Sprintf("(HTTP %d)", status)) {
		t.Errorf("cinder %s: %q, want HTTP %d", cinderArgs(args), strings.TrimSpace(r.out()), status)
	}
	if msg != "" && !strings.Contains(r.out(), msg) {
		t.Errorf("cinder %s: %q, want a message with %q", cinderArgs(args), strings.TrimSpace(r.out()), msg)
	}
	t.Logf("refused: %s", strings.Join(strings.Fields(r.out()), " "))
	f.unchanged(t, before)
	return r
}

// cinderFaultNames are Cinder's fault body names by status.
var cinderFaultNames = map[int]string{400: "badRequest", 403: "forbidden", 404: "itemNotFound"}

// refusedHTTP makes a call that must be refused with status and Cinder's
// fault body {"<name>": {"code": status, "message": "...msg..."}}, and
// change nothing.
func (f *cinderFixture) refusedHTTP(t *testing.T, token, method, path string, body any, status int, msg string) {
	t.Helper()
	before := f.dump(t)
	st, b := f.http(t, token, method, path, body)
	var fb map[string]struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(b, &fb)
	got, ok := fb[cinderFaultNames[status]]
	if st != status || !ok || len(fb) != 1 || got.Code != status || !strings.Contains(got.Message, msg) {
		t.Errorf("%s %s %v: HTTP %d %s, want %d {%q: {code %d, message with %q}}", method, path, body, st, b,
			status, cinderFaultNames[status], status, msg)
	}
	f.unchanged(t, before)
}
