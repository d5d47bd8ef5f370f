package systest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
)

// TestCrashDuringGroupOperations SIGKILLs the daemon at seeded random
// moments while a consistency-group call of the Cinder API is in flight,
// one call per round, and checks after each restart that the call happened
// entirely or not at all. The calls:
//
//   - group create;
//   - group update: a rename, 3 volumes added and 2 removed in one call;
//   - group delete with force, taking its 5 volumes;
//   - cgsnapshot create over 5 volumes, and cgsnapshot delete;
//   - create_from_src from a cgsnapshot, and from a group.
//
// Each round works in a project (tenant) of its own, beside a bystander
// group with two volumes. Its state is what the Cinder API lists of the
// project (consistencygroups, cgsnapshots, volumes, snapshots: every
// volume's consistencygroup_id, every snapshot's volume_id and
// cgsnapshot_id, their statuses and sizes) and what the XenAPI REST lists
// of every VDI that was not another project's before the call (the VDI,
// is_a_snapshot, snapshot_of, its snapshots, size, vPool). After the
// restart that state must equal the state before the call or the state the
// call makes from it, exactly: a group with only some of its new volumes, a
// cgsnapshot with only some of its snapshots, a VDI with no Cinder record,
// a member left in a deleted group, fail the round. A call answered 202
// before the kill must show the state after it.
//
// Kill delays are drawn per operation from 0 to 1.3 x its latency (measured
// on this machine first, from the moment the request is written to the
// moment the answer's first byte arrives), so kills land before, during
// and after the call's one commit. The test logs how many rounds of each
// operation ended before and after the call (and after it but unanswered,
// the kill between the commit and the answer), and fails if no round at
// all ended after its call: then the kills never hit the window.
func TestCrashDuringGroupOperations(t *testing.T) {
	seed := crashSeed(t)
	rounds := crashRounds(10, 100, 2) // per operation
	d := startVdiskd(t)

	// Latencies first: each operation three times without a kill, when
	// it must answer 202 and leave exactly the state after it.
	latency := map[string]time.Duration{}
	for _, op := range cgOps {
		var took []time.Duration
		for i := range 3 {
			tenant := fmt.Sprintf("cg-lat-%s-%d", op.name, i)
			c := op.prepare(t, d, tenant)
			before := d.cgView(t, tenant, nil)
			res := d.cgFire(c, nil)
			if res.err != nil || res.status != http.StatusAccepted {
				t.Fatalf("%s without a kill: HTTP %d %s %v", op.name, res.status, res.body, res.err)
			}
			took = append(took, res.latency)
			got := d.cgView(t, tenant, before.others)
			if exp, why := op.after(before, got, c); why != "" || !exp.equal(got) {
				t.Fatalf("%s without a kill: the state is not the one after the call (%s):\n%s", op.name, why,
					strings.Join(exp.diff(got), "\n"))
			}
			d.cgCleanUp(t, tenant)
		}
		slices.Sort(took)
		latency[op.name] = took[len(took)/2]
	}
	t.Logf("latencies (medians of 3, request written to answer): %v", latency)

	type tally struct{ before, afterUnanswered, afterAnswered int }
	outcomes := map[string]*tally{}
	for _, op := range cgOps {
		outcomes[op.name] = &tally{}
	}
	for r := 0; r < rounds*len(cgOps); r++ {
		op := cgOps[r%len(cgOps)]
		rng := crashRand(seed, 2<<32+uint64(r))
		delay := time.Duration(rng.Float64() * float64(latency[op.name]) * 1.3)
		tenant := fmt.Sprintf("cg-r%03d-%s", r, op.name)
		c := op.prepare(t, d, tenant)
		before := d.cgView(t, tenant, nil)

		wrote := make(chan struct{})
		resc := make(chan cgResult, 1)
		go func() { resc <- d.cgFire(c, wrote) }()
		testwait.Recv(t, wrote, op.name+"'s request to be written")
		coWait(delay)
		d.Kill(t)
		res := testwait.Recv(t, resc, op.name+"'s caller to see the kill")
		d = d.relaunch(t)

		got := d.cgView(t, tenant, before.others)
		exp, why := op.after(before, got, c)
		var outcome string
		switch {
		case res.err == nil && res.status != http.StatusAccepted:
			t.Errorf("round %d: %s answered HTTP %d before the kill: %s", r, op.name, res.status, res.body)
		case got.equal(before) && res.err == nil:
			t.Errorf("round %d: %s answered 202 before the kill, but after the restart the state is the one before the call", r, op.name)
		case got.equal(before):
			outcome = "before"
			outcomes[op.name].before++
		case why == "" && exp.equal(got):
			outcome = "after"
			if res.err == nil {
				outcomes[op.name].afterAnswered++
				outcome += ", answered"
			} else {
				outcomes[op.name].afterUnanswered++
				outcome += ", unanswered"
			}
		default:
			outcome = "PARTIAL"
			if why == "" {
				why = strings.Join(exp.diff(got), "\n\t")
			}
			t.Errorf("round %d: %s, killed %v after the request was written: PARTIAL STATE after the restart: "+
				"neither the state before the call nor the one after it.\n"+
				"against the state before the call:\n\t%s\nagainst the state after it:\n\t%s",
				r, op.name, delay, strings.Join(before.diff(got), "\n\t"), why)
		}
		t.Logf("round %d: %s, killed %v after the request was written (answer: %s): %s", r, op.name, delay, res, outcome)
		if t.Failed() {
			t.Fatalf("round %d (%s) failed (seed %d); the daemon's log after the restart:\n%s", r, op.name, seed, tail(d.Log(), 30))
		}
		d.cgCleanUp(t, tenant)
	}
	after := 0
	var summary []string
	for _, op := range cgOps {
		o := outcomes[op.name]
		after += o.afterAnswered + o.afterUnanswered
		summary = append(summary, fmt.Sprintf("%s: %d before, %d after (%d unanswered)", op.name, o.before,
			o.afterAnswered+o.afterUnanswered, o.afterUnanswered))
	}
	t.Logf("outcomes per operation:\n\t%s", strings.Join(summary, "\n\t"))
	if after == 0 {
		t.Errorf("every round of every operation ended with the state before its call: the kills never hit the call's window; tune the delays")
	}
}

// cgOp is one group call: prepare makes what it acts on in a fresh
// project and returns the call; after returns the state the call makes
// from the state before it, taking the IDs of what it creates from got
// (the state after the restart), or why got cannot be that state.
type cgOp struct {
	name    string
	prepare func(t *testing.T, d *daemon, tenant string) cgCall
	after   func(before, got cgView, c cgCall) (cgView, string)
}

// cgCall is a Cinder call and the objects it names.
type cgCall struct {
	method, path string // path below /v3
	body         any
	group        string   // the group acted on or read
	cgsnapshot   string   // the cgsnapshot acted on or read
	add, remove  []string // group update
}

var cgOps = []cgOp{
	{"group-create", cgPrepareCreate, cgAfterCreate},
	{"group-update", cgPrepareUpdate, cgAfterUpdate},
	{"group-delete-force", cgPrepareDelete, cgAfterDelete},
	{"cgsnapshot-create", cgPrepareSnapshot, cgAfterSnapshot},
	{"cgsnapshot-delete", cgPrepareSnapshotDelete, cgAfterSnapshotDelete},
	{"from-cgsnapshot", cgPrepareFromSnapshot, cgAfterFromSource},
	{"from-group", cgPrepareFromGroup, cgAfterFromSource},
}

// cgBystander makes a group with two volumes beside the round's: no call
// may change it.
func (d *daemon) cgBystander(t *testing.T, tenant string) string {
	t.Helper()
	g := d.cgCreateGroup(t, tenant, "bystander")
	d.cgCreateVolumes(t, tenant, g, "bystander-vol", 2)
	return g
}

func cgPrepareCreate(t *testing.T, d *daemon, tenant string) cgCall {
	d.cgBystander(t, tenant)
	return cgCall{method: http.MethodPost, path: "/" + tenant + "/consistencygroups",
		body: map[string]any{"consistencygroup": map[string]any{"name": "cg-new", "description": "made in a crash round",
			"volume_types": "local"}}}
}

func cgAfterCreate(before, got cgView, c cgCall) (cgView, string) {
	exp := before.clone()
	fresh := newKeys(before.Groups, got.Groups)
	if len(fresh) != 1 {
		return exp, fmt.Sprintf("%d new groups, want 1", len(fresh))
	}
	exp.Groups[fresh[0]] = cgGroup{Name: "cg-new", Status: "available", Types: exp.poolTypes()}
	return exp, ""
}

func cgPrepareUpdate(t *testing.T, d *daemon, tenant string) cgCall {
	d.cgBystander(t, tenant)
	g := d.cgCreateGroup(t, tenant, "cg-update")
	members := d.cgCreateVolumes(t, tenant, g, "member", 3)
	loose := d.cgCreateVolumes(t, tenant, "", "loose", 3)
	c := cgCall{method: http.MethodPut, path: "/" + tenant + "/consistencygroups/" + g + "/update", group: g,
		add: loose, remove: members[:2]}
	c.body = map[string]any{"consistencygroup": map[string]any{"name": "cg-renamed",
		"add_volumes": strings.Join(c.add, ","), "remove_volumes": strings.Join(c.remove, ",")}}
	return c
}

func cgAfterUpdate(before, got cgView, c cgCall) (cgView, string) {
	exp := before.clone()
	g := exp.Groups[c.group]
	g.Name = "cg-renamed"
	exp.Groups[c.group] = g
	for _, id := range c.add {
		v := exp.Volumes[id]
		v.Group = c.group
		exp.Volumes[id] = v
	}
	for _, id := range c.remove {
		v := exp.Volumes[id]
		v.Group = ""
		exp.Volumes[id] = v
	}
	return exp, ""
}

func cgPrepareDelete(t *testing.T, d *daemon, tenant string) cgCall {
	d.cgBystander(t, tenant)
	g := d.cgCreateGroup(t, tenant, "cg-doomed")
	d.cgCreateVolumes(t, tenant, g, "doomed", 5)
	return cgCall{method: http.MethodPost, path: "/" + tenant + "/consistencygroups/" + g + "/delete", group: g,
		body: map[string]any{"consistencygroup": map[string]any{"force": true}}}
}

func cgAfterDelete(before, got cgView, c cgCall) (cgView, string) {
	exp := before.clone()
	delete(exp.Groups, c.group)
	for _, id := range before.membersOf(c.group) {
		delete(exp.Volumes, id)
		delete(exp.VDIs, id)
	}
	return exp, ""
}

func cgPrepareSnapshot(t *testing.T, d *daemon, tenant string) cgCall {
	d.cgBystander(t, tenant)
	g := d.cgCreateGroup(t, tenant, "cg-snapped")
	d.cgCreateVolumes(t, tenant, g, "member", 5)
	return cgCall{method: http.MethodPost, path: "/" + tenant + "/cgsnapshots", group: g,
		body: map[string]any{"cgsnapshot": map[string]any{"consistencygroup_id": g, "name": "cgs-new"}}}
}

// cgAfterSnapshot: one new cgsnapshot of the group, and one new snapshot
// of each member, in it.
func cgAfterSnapshot(before, got cgView, c cgCall) (cgView, string) {
	exp := before.clone()
	fresh := newKeys(before.CGSnapshots, got.CGSnapshots)
	if len(fresh) != 1 {
		return exp, fmt.Sprintf("%d new cgsnapshots, want 1", len(fresh))
	}
	cgs := fresh[0]
	exp.CGSnapshots[cgs] = cgCGSnapshot{Group: c.group, Name: "cgs-new", Status: "available"}
	members := before.membersOf(c.group)
	taken := map[string]string{} // member -> its new snapshot
	for _, s := range newKeys(before.Snapshots, got.Snapshots) {
		v := got.Snapshots[s].VolumeID
		if !slices.Contains(members, v) {
			return exp, fmt.Sprintf("new snapshot %s is of %q, no member of group %s %v", s, v, c.group, members)
		}
		if taken[v] != "" {
			return exp, fmt.Sprintf("member %s has two new snapshots, %s and %s", v, taken[v], s)
		}
		taken[v] = s
		exp.Snapshots[s] = cgSnapshot{Name: got.Snapshots[s].Name, Status: "available", VolumeID: v, CGSnapshot: cgs,
			Size: before.Volumes[v].Size}
		src := before.VDIs[v]
		exp.VDIs[s] = cgVDI{Snapshot: true, SnapshotOf: v, Size: src.Size, SR: src.SR}
		src.Snapshots = cgJoin(append(cgSplit(src.Snapshots), s))
		exp.VDIs[v] = src
	}
	if len(taken) != len(members) {
		return exp, fmt.Sprintf("cgsnapshot %s has snapshots of %d of the group's %d members", cgs, len(taken), len(members))
	}
	return exp, ""
}

// cgPrepareSnapshotDelete makes a group of 5 volumes and a cgsnapshot of
// it; the call deletes the cgsnapshot.
func cgPrepareSnapshotDelete(t *testing.T, d *daemon, tenant string) cgCall {
	c := cgPrepareSnapshot(t, d, tenant)
	cgs := d.cgCreateSnapshot(t, tenant, c.group)
	return cgCall{method: http.MethodDelete, path: "/" + tenant + "/cgsnapshots/" + cgs, group: c.group, cgsnapshot: cgs}
}

func cgAfterSnapshotDelete(before, got cgView, c cgCall) (cgView, string) {
	exp := before.clone()
	delete(exp.CGSnapshots, c.cgsnapshot)
	for id, s := range before.Snapshots {
		if s.CGSnapshot != c.cgsnapshot {
			continue
		}
		delete(exp.Snapshots, id)
		delete(exp.VDIs, id)
		src := exp.VDIs[s.VolumeID]
		src.Snapshots = cgJoin(slices.DeleteFunc(cgSplit(src.Snapshots), func(x string) bool { return x == id }))
		exp.VDIs[s.VolumeID] = src
	}
	return exp, ""
}

func cgPrepareFromSnapshot(t *testing.T, d *daemon, tenant string) cgCall {
	c := cgPrepareSnapshot(t, d, tenant)
	cgs := d.cgCreateSnapshot(t, tenant, c.group)
	return cgCall{method: http.MethodPost, path: "/" + tenant + "/consistencygroups/create_from_src", group: c.group,
		cgsnapshot: cgs, body: map[string]any{"consistencygroup-from-src": map[string]any{"name": "cg-from-src",
			"cgsnapshot_id": cgs}}}
}

func cgPrepareFromGroup(t *testing.T, d *daemon, tenant string) cgCall {
	d.cgBystander(t, tenant)
	g := d.cgCreateGroup(t, tenant, "cg-source")
	d.cgCreateVolumes(t, tenant, g, "member", 5)
	return cgCall{method: http.MethodPost, path: "/" + tenant + "/consistencygroups/create_from_src", group: g,
		body: map[string]any{"consistencygroup-from-src": map[string]any{"name": "cg-from-src", "source_cgid": g}}}
}

// cgAfterFromSource: one new group with the source group's volume types,
// and one new volume in it per source (the cgsnapshot's snapshots, or the
// group's volumes), each naming its source.
func cgAfterFromSource(before, got cgView, c cgCall) (cgView, string) {
	exp := before.clone()
	fresh := newKeys(before.Groups, got.Groups)
	if len(fresh) != 1 {
		return exp, fmt.Sprintf("%d new groups, want 1", len(fresh))
	}
	ng := fresh[0]
	exp.Groups[ng] = cgGroup{Name: "cg-from-src", Status: "available", Types: before.Groups[c.group].Types}
	var sources []string
	if c.cgsnapshot != "" {
		for id, s := range before.Snapshots {
			if s.CGSnapshot == c.cgsnapshot {
				sources = append(sources, id)
			}
		}
	} else {
		sources = before.membersOf(c.group)
	}
	taken := map[string]string{} // source -> its new volume
	for _, id := range newKeys(before.Volumes, got.Volumes) {
		v := got.Volumes[id]
		src := v.SourceVolID
		if c.cgsnapshot != "" {
			src = v.SnapshotID
		}
		if !slices.Contains(sources, src) {
			return exp, fmt.Sprintf("new volume %s comes from %q (snapshot_id %q, source_volid %q), none of the sources %v",
				id, src, v.SnapshotID, v.SourceVolID, sources)
		}
		if taken[src] != "" {
			return exp, fmt.Sprintf("source %s has two new volumes, %s and %s", src, taken[src], id)
		}
		taken[src] = id
		n := cgVolume{Name: v.Name, Status: "available", Group: ng, Size: before.Volumes[src].Size}
		if c.cgsnapshot != "" {
			n.SnapshotID, n.Size = src, before.Snapshots[src].Size
		} else {
			n.SourceVolID = src
		}
		exp.Volumes[id] = n
		exp.VDIs[id] = cgVDI{Size: before.VDIs[src].Size, SR: before.VDIs[src].SR}
	}
	if len(taken) != len(sources) {
		return exp, fmt.Sprintf("group %s has new volumes from %d of the %d sources", ng, len(taken), len(sources))
	}
	return exp, ""
}

// ---------------------------------------------------------------------------
// The state of a project, as the Cinder API and the XenAPI REST show it.

type cgGroup struct{ Name, Status, Types string }

type cgCGSnapshot struct{ Group, Name, Status string }

type cgVolume struct {
	Name, Status, Group, SnapshotID, SourceVolID string
	Size                                         int64
}

type cgSnapshot struct {
	Name, Status, VolumeID, CGSnapshot string
	Size                               int64
}

// cgVDI is a VDI as the XenAPI REST lists it; Snapshots are sorted and
// joined with commas.
type cgVDI struct {
	Snapshot   bool
	SnapshotOf string
	Snapshots  string
	Size       int64
	SR         string
}

// cgView is a project's state: its Cinder objects by ID, and the VDIs
// that were no other project's before the call (so a new VDI the Cinder
// API does not show is in VDIs, and fails the comparison).
type cgView struct {
	Groups      map[string]cgGroup
	CGSnapshots map[string]cgCGSnapshot
	Volumes     map[string]cgVolume
	Snapshots   map[string]cgSnapshot
	VDIs        map[string]cgVDI
	// others are the VDIs that are not the project's (set before the
	// call; a view after it leaves them out of VDIs).
	others map[string]bool
}

func (v cgView) clone() cgView {
	return cgView{Groups: maps.Clone(v.Groups), CGSnapshots: maps.Clone(v.CGSnapshots), Volumes: maps.Clone(v.Volumes),
		Snapshots: maps.Clone(v.Snapshots), VDIs: maps.Clone(v.VDIs), others: v.others}
}

func (v cgView) equal(w cgView) bool {
	return maps.Equal(v.Groups, w.Groups) && maps.Equal(v.CGSnapshots, w.CGSnapshots) &&
		maps.Equal(v.Volumes, w.Volumes) && maps.Equal(v.Snapshots, w.Snapshots) && maps.Equal(v.VDIs, w.VDIs)
}

// diff lists how got differs from v (the expected state).
func (v cgView) diff(got cgView) []string {
	var out []string
	out = append(out, cgDiff("consistency group", v.Groups, got.Groups)...)
	out = append(out, cgDiff("cgsnapshot", v.CGSnapshots, got.CGSnapshots)...)
	out = append(out, cgDiff("volume", v.Volumes, got.Volumes)...)
	out = append(out, cgDiff("snapshot", v.Snapshots, got.Snapshots)...)
	out = append(out, cgDiff("VDI (XenAPI)", v.VDIs, got.VDIs)...)
	if len(out) == 0 {
		out = append(out, "(no difference)")
	}
	return out
}

func cgDiff[V comparable](what string, want, got map[string]V) []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[id]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s %s is missing (want %+v)", what, id, want[id]))
		case g != want[id]:
			out = append(out, fmt.Sprintf("%s %s is %+v, want %+v", what, id, g, want[id]))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[id]; !ok {
			out = append(out, fmt.Sprintf("%s %s should not exist: %+v", what, id, got[id]))
		}
	}
	return out
}

// newKeys are the keys of got that before does not have, sorted.
func newKeys[V any](before, got map[string]V) []string {
	var out []string
	for id := range got {
		if _, ok := before[id]; !ok {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// membersOf are a group's volumes, sorted.
func (v cgView) membersOf(group string) []string {
	var out []string
	for id, vol := range v.Volumes {
		if vol.Group == group {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// poolTypes is the volume types of the view's groups ("local" as a guid):
// every group here has the same.
func (v cgView) poolTypes() string {
	for _, g := range v.Groups {
		return g.Types
	}
	return ""
}

func cgSplit(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func cgJoin(ids []string) string {
	ids = slices.Clone(ids)
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

// cgView reads a project's state. others nil: the call is still to come,
// and every VDI not the project's is recorded as another's; otherwise
// those VDIs must all still be there and are left out.
func (d *daemon) cgView(t *testing.T, tenant string, others map[string]bool) cgView {
	t.Helper()
	v := cgView{Groups: map[string]cgGroup{}, CGSnapshots: map[string]cgCGSnapshot{}, Volumes: map[string]cgVolume{},
		Snapshots: map[string]cgSnapshot{}, VDIs: map[string]cgVDI{}, others: others}
	var groups struct{ Consistencygroups []cinderapi.Group }
	d.mustCinder(t, http.MethodGet, "/"+tenant+"/consistencygroups/detail", nil, &groups)
	for _, g := range groups.Consistencygroups {
		v.Groups[g.ID] = cgGroup{Name: cgStr(g.Name), Status: g.Status, Types: strings.Join(g.VolumeTypes, ",")}
	}
	var cgsnaps struct{ Cgsnapshots []cinderapi.GroupSnapshot }
	d.mustCinder(t, http.MethodGet, "/"+tenant+"/cgsnapshots/detail", nil, &cgsnaps)
	for _, c := range cgsnaps.Cgsnapshots {
		v.CGSnapshots[c.ID] = cgCGSnapshot{Group: c.ConsistencyGroupID, Name: cgStr(c.Name), Status: c.Status}
	}
	var vols struct{ Volumes []cinderapi.Volume }
	d.mustCinder(t, http.MethodGet, "/"+tenant+"/volumes/detail", nil, &vols)
	for _, x := range vols.Volumes {
		v.Volumes[x.ID] = cgVolume{Name: cgStr(x.Name), Status: x.Status, Group: cgStr(x.ConsistencyGroupID),
			SnapshotID: cgStr(x.SnapshotID), SourceVolID: cgStr(x.SourceVolID), Size: x.Size}
	}
	var snaps struct{ Snapshots []cinderapi.Snapshot }
	d.mustCinder(t, http.MethodGet, "/"+tenant+"/snapshots/detail", nil, &snaps)
	for _, x := range snaps.Snapshots {
		v.Snapshots[x.ID] = cgSnapshot{Name: cgStr(x.Name), Status: x.Status, VolumeID: x.VolumeID,
			CGSnapshot: cgStr(x.CGSnapshotID), Size: x.Size}
	}
	vdis := d.vdis(t)
	if others == nil {
		v.others = map[string]bool{}
		for id := range vdis {
			_, vol := v.Volumes[id]
			_, snap := v.Snapshots[id]
			if !vol && !snap {
				v.others[id] = true
			}
		}
	} else {
		for id := range others {
			if _, ok := vdis[id]; !ok {
				t.Errorf("VDI %s, which is not project %s's, is gone", id, tenant)
			}
		}
	}
	for id, x := range vdis {
		if !v.others[id] {
			v.VDIs[id] = cgVDI{Snapshot: x.IsASnapshot, SnapshotOf: strings.TrimPrefix(x.SnapshotOf, "OpaqueRef:NULL"),
				Snapshots: cgJoin(x.Snapshots), Size: x.VirtualSize, SR: x.SR}
		}
	}
	return v
}

func cgStr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// cgCleanUp deletes what a round left in its project: the cgsnapshots,
// then the groups with their volumes, then the volumes left.
func (d *daemon) cgCleanUp(t *testing.T, tenant string) {
	t.Helper()
	v := d.cgView(t, tenant, map[string]bool{})
	for id := range v.CGSnapshots {
		d.mustCinder(t, http.MethodDelete, "/"+tenant+"/cgsnapshots/"+id, nil, nil)
	}
	for id := range v.Groups {
		d.mustCinder(t, http.MethodPost, "/"+tenant+"/consistencygroups/"+id+"/delete",
			map[string]any{"consistencygroup": map[string]any{"force": true}}, nil)
	}
	for id, vol := range v.Volumes {
		if vol.Group == "" {
			d.mustCinder(t, http.MethodDelete, "/"+tenant+"/volumes/"+id, nil, nil)
		}
	}
}

// ---------------------------------------------------------------------------
// Calls to the Cinder API (/v3), with the admin's vdiskd token as
// X-Auth-Token.

// cinderRequest makes a request to the Cinder API; path is below /v3.
func (d *daemon) cinderRequest(method, path string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.URL+"/v3"+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Auth-Token", d.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// tryCinder makes a Cinder call and returns the status and the body; a
// 2xx body is decoded into out (if not nil).
func (d *daemon) tryCinder(method, path string, body, out any) (int, []byte, error) {
	req, err := d.cinderRequest(method, path, body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := vdiskdtest.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, err
	}
	if out != nil && resp.StatusCode < 300 && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, b, fmt.Errorf("decoding %q: %w", b, err)
		}
	}
	return resp.StatusCode, b, nil
}

// mustCinder is tryCinder that fails the test unless the answer is 2xx.
func (d *daemon) mustCinder(t *testing.T, method, path string, body, out any) {
	t.Helper()
	st, b, err := d.tryCinder(method, path, body, out)
	if err != nil || st >= 300 {
		t.Fatalf("Cinder %s /v3%s: HTTP %d %s %v", method, path, st, b, err)
	}
}

// cgCreateGroup makes a group of volume type local.
func (d *daemon) cgCreateGroup(t *testing.T, tenant, name string) string {
	t.Helper()
	var out struct{ Consistencygroup cinderapi.Summary }
	d.mustCinder(t, http.MethodPost, "/"+tenant+"/consistencygroups",
		map[string]any{"consistencygroup": map[string]any{"name": name, "volume_types": "local"}}, &out)
	return out.Consistencygroup.ID
}

// cgCreateVolumes makes n 1 GiB volumes, in group (if not ""), in order.
func (d *daemon) cgCreateVolumes(t *testing.T, tenant, group, name string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		args := map[string]any{"size": 1, "name": fmt.Sprintf("%s-%d", name, i), "volume_type": "local"}
		if group != "" {
			args["consistencygroup_id"] = group
		}
		var out struct{ Volume cinderapi.Volume }
		d.mustCinder(t, http.MethodPost, "/"+tenant+"/volumes", map[string]any{"volume": args}, &out)
		ids = append(ids, out.Volume.ID)
	}
	return ids
}

// cgCreateSnapshot makes a cgsnapshot of a group.
func (d *daemon) cgCreateSnapshot(t *testing.T, tenant, group string) string {
	t.Helper()
	var out struct{ Cgsnapshot cinderapi.Summary }
	d.mustCinder(t, http.MethodPost, "/"+tenant+"/cgsnapshots",
		map[string]any{"cgsnapshot": map[string]any{"consistencygroup_id": group, "name": "cgs-source"}}, &out)
	return out.Cgsnapshot.ID
}

// cgResult is what the caller of a call saw.
type cgResult struct {
	status  int
	body    []byte
	err     error         // the transport's: the daemon died first
	latency time.Duration // from the request written to the answer's first byte
}

func (r cgResult) String() string {
	if r.err != nil {
		return "none"
	}
	return fmt.Sprintf("HTTP %d", r.status)
}

// cgFire makes a call, closing wrote (if not nil) once the request is
// written to the socket, or once the call failed without that.
func (d *daemon) cgFire(c cgCall, wrote chan<- struct{}) cgResult {
	var (
		mu                sync.Mutex
		written, answered time.Time
	)
	signal := func() {
		if wrote != nil {
			close(wrote)
			wrote = nil
		}
	}
	defer func() {
		mu.Lock()
		signal()
		mu.Unlock()
	}()
	req, err := d.cinderRequest(c.method, c.path, c.body)
	if err != nil {
		return cgResult{err: err}
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		// A write that failed (on a pooled connection the server had
		// closed) is retried on a new connection: the first write that
		// worked counts.
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			mu.Lock()
			defer mu.Unlock()
			if info.Err == nil && written.IsZero() {
				written = time.Now()
				signal()
			}
		},
		GotFirstResponseByte: func() {
			mu.Lock()
			defer mu.Unlock()
			answered = time.Now()
		},
	}))
	resp, err := vdiskdtest.HTTP.Do(req)
	if err != nil {
		return cgResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	mu.Lock()
	defer mu.Unlock()
	return cgResult{status: resp.StatusCode, body: b, err: err, latency: answered.Sub(written)}
}
