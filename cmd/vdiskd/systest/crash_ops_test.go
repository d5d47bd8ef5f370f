package systest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// TestCrashDuringOperations SIGKILLs the daemon at seeded random moments
// during snapshot, clone (also of an on_boot=reset VDI: clone and hidden
// base are separate commits), destroy (of a middle snapshot whose versions
// then need collecting, of a live VDI, of a VDI a clone still reads),
// resize and copy (a task), one operation per round, and checks after each
// restart that the operation happened entirely or not at all:
//
//   - an operation that answered before the kill happened;
//   - a snapshot or clone exists with the source's content, or does not
//     exist; a destroyed VDI is gone, or present with all its content; a
//     resized VDI has the new size (and zeros past the old end) or the old
//     one; a copy exists complete, equal to its source and idle, or is
//     absent, and its task is unknown or failed;
//   - the VDI list is consistent: every listed VDI reads back, snapshot
//     links go both ways, no operation is left running, the keeper VDI the
//     rounds work on holds its data;
//   - nothing is orphaned: once the round's VDIs are destroyed, the vPool's
//     stored_data and the keeper's physical_utilisation come back to the
//     keeper's bytes exactly (polled while the collector works).
//
// Kill delays scale with each operation's latency, measured on this
// machine before the rounds (see the loop), so kills land before, during
// and after an operation's commit and during what it leaves to the
// background.
func TestCrashDuringOperations(t *testing.T) {
	seed := crashSeed(t)
	rounds := crashRounds(32, 320, 8)
	d := startVdiskd(t)
	var pool api.VPool
	d.MustCall(t, http.MethodPost, "/vpools", map[string]any{"name": "crash-ops", "backend_type": "LOCAL"}, &pool)
	s := &coState{pool: pool.GUID}
	s.keeper = d.coCreate(t, s, "keeper", 16<<20)
	s.keeperData = make([]byte, 16<<20)
	coPattern(s.keeperData[:8<<20], 1)
	coPattern(s.keeperData[12<<20:13<<20], 2)
	d.coWrite(t, s.keeper, 0, s.keeperData[:8<<20])
	d.coWrite(t, s.keeper, 12<<20, s.keeperData[12<<20:13<<20])
	s.keeperBytes = 9 << 20 // 2304 distinct 4 KiB blocks of data
	d.coSettle(t, s, s.keeperBytes)

	// Latencies first: each operation three times (once under -race or
	// -short), without a kill.
	latency := map[string]time.Duration{}
	runs := 3
	if vdiskdtest.Race || testing.Short() {
		runs = 1
	}
	for _, op := range coOps {
		var took []time.Duration
		for i := 0; i < runs; i++ {
			c := op.prepare(t, d, s)
			start := time.Now()
			res := d.coFire(c, nil, nil)
			took = append(took, time.Since(start))
			if !res.answered || (c.task && res.taskStatus != api.TaskSuccess) {
				t.Fatalf("%s without a kill: %+v", op.name, res)
			}
			op.check(t, d, s, c, res)
			d.coCleanUp(t, s)
		}
		slices.Sort(took)
		latency[op.name] = took[len(took)/2]
	}
	t.Logf("latencies (medians of %d): %v", runs, latency)

	// Half the rounds kill 0 to 1.5 x latency after the call went out
	// (skewed towards 0, where the commit of a quick operation is: the
	// latency is mostly the client's): before, during or just after the
	// commit. The other half kill 0 to latency/2 + 2 ms after the answer
	// (also skewed towards 0), while the work an operation leaves to the
	// background runs: the collector after a destroy (a few milliseconds
	// here), the copy after its 202.
	outcomes := map[string]map[string]int{}
	for r := 0; r < rounds; r++ {
		op := coOps[r%len(coOps)]
		rng := crashRand(seed, 1<<32+uint64(r))
		afterAnswer := rng.IntN(2) == 0
		u := rng.Float64()
		delay := time.Duration(u * u * u * float64(latency[op.name]*3/2))
		if afterAnswer {
			delay = time.Duration(u * u * float64(latency[op.name]/2+2*time.Millisecond))
		}
		c := op.prepare(t, d, s)
		answered, killed := make(chan struct{}), make(chan struct{})
		resc := make(chan coResult, 1)
		go func() { resc <- d.coFire(c, answered, killed) }()
		when := "after the call went out"
		if afterAnswer {
			when = "after the answer"
			select {
			case <-answered:
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: %s did not answer within 10s", r, op.name)
			}
		}
		coWait(delay)
		d.Kill(t)
		close(killed)
		res := <-resc
		res.killed = true
		d = d.relaunch(t)
		d.coConsistent(t, s)
		done := op.check(t, d, s, c, res)
		d.coCleanUp(t, s)
		outcome := fmt.Sprintf("answered=%v done=%v", res.answered, done)
		if outcomes[op.name] == nil {
			outcomes[op.name] = map[string]int{}
		}
		outcomes[op.name][outcome]++
		t.Logf("round %d: %s, killed %v %s: %s", r, op.name, delay, when, outcome)
		if t.Failed() {
			t.Fatalf("round %d (%s) failed (seed %d); the daemon's log after the restart:\n%s", r, op.name, seed, tail(d.Log(), 30))
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

// coWait waits d, spinning below 3 ms: a timer would oversleep the
// fractions of a millisecond the commit of a metadata change takes.
func coWait(d time.Duration) {
	if d > 3*time.Millisecond {
		time.Sleep(d)
		return
	}
	for start := time.Now(); time.Since(start) < d; {
	}
}

// coState is what the rounds share: the vPool and the keeper VDI, with its
// content and its bytes of data.
type coState struct {
	pool        string
	keeper      string
	keeperData  []byte
	keeperBytes int64
	generation  uint64 // rewrites of the keeper, for fresh patterns
}

// coCall is one operation's REST call and what it acts on.
type coCall struct {
	method, path string
	body         any
	task         bool   // answers 202 with a task
	target       string // the VDI acted on
	targetData   []byte // its content before the call
	clone        string // destroy-cloned: the clone of the target
	before       map[string]bool
}

// coResult is what the caller saw before the kill.
type coResult struct {
	killed     bool // the daemon was killed and restarted since
	answered   bool
	status     int
	vdi        api.VDI // the answer's record, for calls that return one
	task       api.Task
	taskStatus string // the last status polled
}

// coFire makes the call; for a task it polls until the task ends or the
// daemon dies. It closes answered (if not nil) when the answer arrived,
// and stops polling when killed (if not nil) is closed.
func (d *daemon) coFire(c coCall, answered chan<- struct{}, killed <-chan struct{}) coResult {
	var res coResult
	var out json.RawMessage
	st, _, err := d.TryCall(c.method, c.path, c.body, &out)
	if err != nil {
		return res
	}
	res.answered, res.status = true, st
	if answered != nil {
		close(answered)
	}
	if st >= 300 {
		return res
	}
	if !c.task {
		json.Unmarshal(out, &res.vdi)
		return res
	}
	json.Unmarshal(out, &res.task)
	res.taskStatus = res.task.Status
	for res.taskStatus == api.TaskPending {
		select {
		case <-killed:
			return res
		case <-time.After(2 * time.Millisecond):
		}
		var tk api.Task
		if st, _, err := d.TryCall(http.MethodGet, "/tasks/"+res.task.UUID, nil, &tk); err != nil || st != http.StatusOK {
			return res
		}
		res.taskStatus = tk.Status
	}
	return res
}

// coOp is one operation: prepare makes what it acts on and returns the
// call; check judges the restarted daemon and reports whether the
// operation happened.
type coOp struct {
	name    string
	prepare func(t *testing.T, d *daemon, s *coState) coCall
	check   func(t *testing.T, d *daemon, s *coState, c coCall, res coResult) (done bool)
}

var coOps = []coOp{
	{"snapshot", coPrepareOn("/snapshot"), coCheckNewVDI(true)},
	{"clone", coPrepareOn("/clone"), coCheckNewVDI(false)},
	{"clone-on-boot-reset", coPrepareCloneReset, coCheckCloneReset},
	{"destroy-snapshot", coPrepareDestroySnapshot, coCheckDestroyed},
	{"destroy-live", coPrepareDestroyLive, coCheckDestroyed},
	{"destroy-cloned", coPrepareDestroyCloned, coCheckDestroyedCloned},
	{"resize", coPrepareResize, coCheckResize},
	{"copy", coPrepareCopy, coCheckCopy},
}

// coPrepareOn calls POST /vdis/<keeper><rpc>.
func coPrepareOn(rpc string) func(*testing.T, *daemon, *coState) coCall {
	return func(t *testing.T, d *daemon, s *coState) coCall {
		return coCall{method: http.MethodPost, path: "/vdis/" + s.keeper + rpc, target: s.keeper,
			targetData: s.keeperData, before: d.coPoolVDIs(t, s)}
	}
}

// coCheckNewVDI judges snapshot and clone: at most one new VDI, of the
// right kind, linked to the keeper, with the keeper's content.
func coCheckNewVDI(snapshot bool) func(*testing.T, *daemon, *coState, coCall, coResult) bool {
	return func(t *testing.T, d *daemon, s *coState, c coCall, res coResult) bool {
		t.Helper()
		fresh := d.coNewVDIs(t, s, c)
		if res.answered && res.status != http.StatusOK {
			t.Errorf("%s answered HTTP %d", c.path, res.status)
		}
		if res.answered && res.status == http.StatusOK && (len(fresh) != 1 || fresh[0].UUID != res.vdi.UUID) {
			t.Errorf("%s answered %s, but after the restart the new VDIs are %v", c.path, res.vdi.UUID, coIDs(fresh))
		}
		if len(fresh) > 1 {
			t.Errorf("%s made %d VDIs: %v", c.path, len(fresh), coIDs(fresh))
		}
		if len(fresh) == 0 {
			return false
		}
		v := fresh[0]
		if v.IsASnapshot != snapshot || v.VirtualSize != int64(len(s.keeperData)) || (snapshot && v.SnapshotOf != s.keeper) {
			t.Errorf("%s made %s: is_a_snapshot %v, virtual_size %d, snapshot_of %s", c.path, v.UUID, v.IsASnapshot, v.VirtualSize, v.SnapshotOf)
		}
		if snapshot != slices.Contains(d.VDI(t, s.keeper).Snapshots, v.UUID) {
			t.Errorf("the keeper's snapshots %v and the new VDI %s (is_a_snapshot %v) disagree", d.VDI(t, s.keeper).Snapshots, v.UUID, v.IsASnapshot)
		}
		if got := d.readExport(t, v.UUID); !bytes.Equal(got, s.keeperData) {
			t.Errorf("%s made %s whose content differs from the keeper's at byte %d", c.path, v.UUID, firstDiff(got, s.keeperData))
		}
		return true
	}
}

// coPrepareCloneReset makes a VDI with 2 MiB of data and on_boot=reset
// and clones it: the clone is a second commit, its hidden on_boot base a
// snapshot and a third, so a kill can leave a clone without a base or a
// base without a clone (the next start repairs both).
func coPrepareCloneReset(t *testing.T, d *daemon, s *coState) coCall {
	t.Helper()
	id := d.coCreate(t, s, "reset", 8<<20)
	data := make([]byte, 8<<20)
	coPattern(data[1<<20:3<<20], 5)
	d.coWrite(t, id, 1<<20, data[1<<20:3<<20])
	d.MustCall(t, http.MethodPost, "/vdis/"+id+"/set_on_boot", map[string]any{"value": "reset"}, nil)
	return coCall{method: http.MethodPost, path: "/vdis/" + id + "/clone", target: id, targetData: data,
		before: d.coPoolVDIs(t, s)}
}

// coCheckCloneReset: at most one clone, with on_boot=reset and the
// source's content; the hidden bases are checked by the space accounting.
func coCheckCloneReset(t *testing.T, d *daemon, s *coState, c coCall, res coResult) bool {
	t.Helper()
	fresh := d.coNewVDIs(t, s, c)
	if res.answered && (res.status != http.StatusOK || len(fresh) != 1 || fresh[0].UUID != res.vdi.UUID) {
		t.Errorf("clone answered HTTP %d (%s), but after the restart the new VDIs are %v", res.status, res.vdi.UUID, coIDs(fresh))
	}
	if len(fresh) > 1 {
		t.Errorf("one clone made %d VDIs: %v", len(fresh), coIDs(fresh))
	}
	if len(fresh) == 0 {
		return false
	}
	v := fresh[0]
	if v.IsASnapshot || v.OnBoot != "reset" || v.VirtualSize != 8<<20 {
		t.Errorf("the clone %s after the restart: is_a_snapshot %v, on_boot %s, virtual_size %d", v.UUID, v.IsASnapshot, v.OnBoot, v.VirtualSize)
	}
	if got := d.readExport(t, v.UUID); !bytes.Equal(got, c.targetData) {
		t.Errorf("the clone %s reads other content than its source: first difference at byte %d", v.UUID, firstDiff(got, c.targetData))
	}
	return true
}

// coPrepareDestroySnapshot snapshots the keeper, overwrites its first
// 8 MiB and snapshots it again; the call destroys the first snapshot. The
// 2048 versions only it saw are then dead: a collection job, persisted
// with the destroy, must remove them even across a crash (a snapshot with
// no newer one would need no job: a restart finds versions above the
// newest snapshot by itself).
func coPrepareDestroySnapshot(t *testing.T, d *daemon, s *coState) coCall {
	t.Helper()
	var snap api.VDI
	d.MustCall(t, http.MethodPost, "/vdis/"+s.keeper+"/snapshot", nil, &snap)
	old := slices.Clone(s.keeperData)
	s.generation++
	coPattern(s.keeperData[:8<<20], 100+s.generation)
	d.coWrite(t, s.keeper, 0, s.keeperData[:8<<20])
	d.MustCall(t, http.MethodPost, "/vdis/"+s.keeper+"/snapshot", nil, nil)
	return coCall{method: http.MethodDelete, path: "/vdis/" + snap.UUID, target: snap.UUID, targetData: old,
		before: d.coPoolVDIs(t, s)}
}

// coPrepareDestroyLive makes a VDI with 3 MiB of data to destroy.
func coPrepareDestroyLive(t *testing.T, d *daemon, s *coState) coCall {
	t.Helper()
	id := d.coCreate(t, s, "victim", 8<<20)
	data := make([]byte, 8<<20)
	coPattern(data[2<<20:5<<20], 3)
	d.coWrite(t, id, 2<<20, data[2<<20:5<<20])
	return coCall{method: http.MethodDelete, path: "/vdis/" + id, target: id, targetData: data, before: d.coPoolVDIs(t, s)}
}

// coPrepareDestroyCloned makes a VDI with 3 MiB of data and a clone of it,
// then destroys the VDI: its data stays for the clone.
func coPrepareDestroyCloned(t *testing.T, d *daemon, s *coState) coCall {
	t.Helper()
	c := coPrepareDestroyLive(t, d, s)
	var clone api.VDI
	d.MustCall(t, http.MethodPost, "/vdis/"+c.target+"/clone", nil, &clone)
	c.before = d.coPoolVDIs(t, s)
	c.clone = clone.UUID
	return c
}

// coCheckDestroyedCloned is coCheckDestroyed, and the clone still reads
// the data, which the vPool's stored_data keeps counting whether or not
// its source VDI is gone.
func coCheckDestroyedCloned(t *testing.T, d *daemon, s *coState, c coCall, res coResult) bool {
	t.Helper()
	done := coCheckDestroyed(t, d, s, c, res)
	if got := d.readExport(t, c.clone); !bytes.Equal(got, c.targetData) {
		t.Errorf("the clone of a destroyed VDI reads other content: first difference at byte %d", firstDiff(got, c.targetData))
	}
	d.coSettle(t, s, s.keeperBytes+3<<20)
	return done
}

// coCheckDestroyed: the target is gone, or present with its content.
func coCheckDestroyed(t *testing.T, d *daemon, s *coState, c coCall, res coResult) bool {
	t.Helper()
	if fresh := d.coNewVDIs(t, s, c); len(fresh) > 0 {
		t.Errorf("destroy made VDIs %v", coIDs(fresh))
	}
	if res.answered && res.status != http.StatusNoContent {
		t.Errorf("DELETE %s answered HTTP %d", c.target, res.status)
	}
	st, _, err := d.TryCall(http.MethodGet, "/vdis/"+c.target, nil, nil)
	switch {
	case err != nil:
		t.Fatal(err)
	case st == http.StatusNotFound:
		if slices.Contains(d.VDI(t, s.keeper).Snapshots, c.target) {
			t.Errorf("destroyed snapshot %s is still among the keeper's snapshots", c.target)
		}
		return true
	case st != http.StatusOK:
		t.Errorf("GET %s after the restart: HTTP %d", c.target, st)
	case res.answered:
		t.Errorf("%s is still there after its destroy answered", c.target)
	default:
		if got := d.readExport(t, c.target); !bytes.Equal(got, c.targetData) {
			t.Errorf("%s survived its destroy with other content: first difference at byte %d", c.target, firstDiff(got, c.targetData))
		}
	}
	return false
}

// coPrepareResize makes an 8 MiB VDI with 1 MiB of data to grow to 24 MiB.
func coPrepareResize(t *testing.T, d *daemon, s *coState) coCall {
	t.Helper()
	id := d.coCreate(t, s, "grow", 8<<20)
	data := make([]byte, 24<<20)
	coPattern(data[7<<20:8<<20], 4)
	d.coWrite(t, id, 7<<20, data[7<<20:8<<20])
	return coCall{method: http.MethodPost, path: "/vdis/" + id + "/resize", body: map[string]any{"size": 24 << 20},
		target: id, targetData: data, before: d.coPoolVDIs(t, s)}
}

// coCheckResize: the old size or the new one, the data in place and zeros
// past the old end.
func coCheckResize(t *testing.T, d *daemon, s *coState, c coCall, res coResult) bool {
	t.Helper()
	if fresh := d.coNewVDIs(t, s, c); len(fresh) > 0 {
		t.Errorf("resize made VDIs %v", coIDs(fresh))
	}
	v := d.VDI(t, c.target)
	grown := v.VirtualSize == 24<<20
	switch {
	case res.answered && (res.status != http.StatusOK || res.vdi.VirtualSize != 24<<20):
		t.Errorf("resize answered HTTP %d with virtual_size %d", res.status, res.vdi.VirtualSize)
	case res.answered && !grown:
		t.Errorf("resize answered, but the size after the restart is %d", v.VirtualSize)
	case !grown && v.VirtualSize != 8<<20:
		t.Errorf("virtual_size after a resize from 8 MiB to 24 MiB: %d", v.VirtualSize)
	}
	got := d.readExport(t, c.target)
	if want := c.targetData[:v.VirtualSize]; !bytes.Equal(got, want) {
		t.Errorf("after the resize (to %d) the content differs at byte %d", v.VirtualSize, firstDiff(got, want))
	}
	return grown
}

// coPrepareCopy copies the keeper into a fresh VDI of the same vPool.
func coPrepareCopy(t *testing.T, d *daemon, s *coState) coCall {
	return coCall{method: http.MethodPost, path: "/vdis/" + s.keeper + "/copy", body: map[string]any{}, task: true,
		target: s.keeper, targetData: s.keeperData, before: d.coPoolVDIs(t, s)}
}

// coCheckCopy: the copy exists complete and idle, or not at all; its task
// is unknown after the restart or failed.
func coCheckCopy(t *testing.T, d *daemon, s *coState, c coCall, res coResult) bool {
	t.Helper()
	fresh := d.coNewVDIs(t, s, c)
	if res.answered && res.status != http.StatusAccepted {
		t.Errorf("copy answered HTTP %d", res.status)
	}
	if res.taskStatus == api.TaskSuccess && len(fresh) != 1 {
		t.Errorf("the copy task succeeded before the kill, but the new VDIs are %v", coIDs(fresh))
	}
	if res.killed && res.task.UUID != "" {
		var tk api.Task
		st, _, err := d.TryCall(http.MethodGet, "/tasks/"+res.task.UUID, nil, &tk)
		if err != nil || (st != http.StatusNotFound && !(st == http.StatusOK && tk.Status == api.TaskFailure)) {
			t.Errorf("the copy task after the restart: HTTP %d %+v %v; want unknown or failed", st, tk, err)
		}
	}
	if len(fresh) > 1 {
		t.Errorf("one copy made %d VDIs: %v", len(fresh), coIDs(fresh))
	}
	if len(fresh) == 0 {
		return false
	}
	v := fresh[0]
	if v.IsASnapshot || v.VirtualSize != int64(len(s.keeperData)) || len(v.CurrentOperations) > 0 || v.CBTEnabled {
		t.Errorf("the copy %s after the restart: is_a_snapshot %v, virtual_size %d, current_operations %v, cbt_enabled %v",
			v.UUID, v.IsASnapshot, v.VirtualSize, v.CurrentOperations, v.CBTEnabled)
	}
	if got := d.readExport(t, v.UUID); !bytes.Equal(got, s.keeperData) {
		t.Errorf("a half-made copy %s is listed: its content differs from the source's at byte %d", v.UUID, firstDiff(got, s.keeperData))
	}
	return true
}

// ---------------------------------------------------------------------------

// coPattern fills b with bytes that differ per 4 KiB block and per seed.
func coPattern(b []byte, seed uint64) {
	for i := 0; i < len(b); i += 8 {
		x := seed*0x9e3779b97f4a7c15 + uint64(i/4096)*0xbf58476d1ce4e5b9 + uint64(i)
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(x >> (8 * j))
		}
	}
}

// coCreate makes a VDI in the test's vPool.
func (d *daemon) coCreate(t *testing.T, s *coState, name string, size int64) string {
	t.Helper()
	var v api.VDI
	d.MustCall(t, http.MethodPost, "/vdis", map[string]any{"name_label": name, "virtual_size": size, "SR": s.pool}, &v)
	return v.UUID
}

// coWrite writes p at off with FUA and waits until the export is detached
// again (detaching follows the disconnect asynchronously, and destroy and
// resize refuse an attached VDI).
func (d *daemon) coWrite(t *testing.T, vdi string, off uint64, p []byte) {
	t.Helper()
	c := d.dialExport(t, vdi)
	c.WriteAt(nbdtest.CmdFlagFUA, p, off)
	c.Close()
	protoWaitVBDs(t, d, vdi, 0)
}

// coPoolVDIs are the VDIs of the test's vPool.
func (d *daemon) coPoolVDIs(t *testing.T, s *coState) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for id, v := range d.vdis(t) {
		if v.SR == s.pool {
			out[id] = true
		}
	}
	return out
}

// coNewVDIs are the vPool's VDIs that were not there before the call.
func (d *daemon) coNewVDIs(t *testing.T, s *coState, c coCall) []api.VDI {
	t.Helper()
	var out []api.VDI
	for id, v := range d.vdis(t) {
		if v.SR == s.pool && !c.before[id] {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UUID < out[j].UUID })
	return out
}

func coIDs(vs []api.VDI) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.UUID)
	}
	return out
}

// coConsistent checks the VDI list after a restart: every VDI reads back
// as listed, snapshot links go both ways, nothing is running, and the
// keeper holds its data.
func (d *daemon) coConsistent(t *testing.T, s *coState) {
	t.Helper()
	vdis := d.vdis(t)
	for id, v := range vdis {
		got := d.VDI(t, id)
		if got.UUID != id || got.VirtualSize != v.VirtualSize || got.IsASnapshot != v.IsASnapshot || got.SnapshotOf != v.SnapshotOf {
			t.Errorf("VDI %s reads back as %+v, listed as %+v", id, got, v)
		}
		if len(v.CurrentOperations) > 0 {
			t.Errorf("VDI %s has operations running after a restart: %v", id, v.CurrentOperations)
		}
		if v.IsASnapshot {
			if p, ok := vdis[v.SnapshotOf]; !ok || !slices.Contains(p.Snapshots, id) {
				t.Errorf("snapshot %s of %s: the source is missing or does not list it", id, v.SnapshotOf)
			}
		}
		for _, sn := range v.Snapshots {
			if x, ok := vdis[sn]; !ok || !x.IsASnapshot || x.SnapshotOf != id {
				t.Errorf("VDI %s lists snapshot %s, which is missing or not its snapshot", id, sn)
			}
		}
	}
	k, ok := vdis[s.keeper]
	if !ok {
		t.Fatalf("the keeper VDI %s is gone", s.keeper)
	}
	if k.SR != s.pool || k.VirtualSize != int64(len(s.keeperData)) {
		t.Errorf("the keeper after the restart: %+v", k)
	}
	if got := d.readExport(t, s.keeper); !bytes.Equal(got, s.keeperData) {
		t.Errorf("the keeper's content changed: first difference at byte %d", firstDiff(got, s.keeperData))
	}
}

// coCleanUp destroys every VDI of the vPool but the keeper, then waits
// until the space accounting is back at the keeper's bytes.
func (d *daemon) coCleanUp(t *testing.T, s *coState) {
	t.Helper()
	for id := range d.coPoolVDIs(t, s) {
		if id != s.keeper {
			d.destroy(t, id)
		}
	}
	d.coSettle(t, s, s.keeperBytes)
}

// coSettle polls until the keeper's physical_utilisation equals its bytes
// of data and the vPool's stored_data equals want (the keeper's bytes
// when nothing else is left): whatever the round made, the collector has
// freed it. The store caches a measurement for up to two seconds, and the
// collector runs in the background.
func (d *daemon) coSettle(t *testing.T, s *coState, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var phys, stored int64
	for {
		phys = d.VDI(t, s.keeper).PhysicalUtilisation
		var p api.VPool
		d.MustCall(t, http.MethodGet, "/vpools/"+s.pool, nil, &p)
		stored = p.StoredData
		if phys == s.keeperBytes && stored == want {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var leftovers []string
	for id := range d.coPoolVDIs(t, s) {
		leftovers = append(leftovers, id)
	}
	t.Errorf("space not settled after 30s: keeper physical_utilisation %d (want %d), vPool stored_data %d (want %d); VDIs %s",
		phys, s.keeperBytes, stored, want, strings.Join(leftovers, " "))
}
