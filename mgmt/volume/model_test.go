package volume

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kv"
)

// harness is a Service on an in-memory store and database, restartable.
type harness struct {
	t     *testing.T
	fs    vfs.FS
	store *blockstore.Store
	db    *kv.DB
	s     *Service
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, fs: vfs.NewMem()}
	h.open()
	t.Cleanup(h.close)
	return h
}

func (h *harness) open() {
	h.t.Helper()
	st, err := blockstore.Open("store", blockstore.Options{FS: h.fs, GCInterval: -1, CacheSize: 4 << 20,
		MemTableSize: 2 << 20, Logf: func(string, ...any) {}})
	if err != nil {
		h.t.Fatal(err)
	}
	db, err := kv.Open("mgmt.db", h.fs)
	if err != nil {
		h.t.Fatal(err)
	}
	// No grace: a refusal for an attachment comes at once.
	s, err := New(Options{Store: st, DB: db, DetachGrace: -1})
	if err != nil {
		h.t.Fatal(err)
	}
	h.store, h.db, h.s = st, db, s
}

func (h *harness) close() {
	if h.s == nil {
		return
	}
	h.db.Close()
	if err := h.store.Close(); err != nil {
		h.t.Errorf("closing the store: %v", err)
	}
	h.s = nil
}

// mvdi is what the model knows of a volume.
type mvdi struct {
	snapshot   bool
	snapshotOf string
	forgotten  bool
	name       string
	cbt        bool
	vbds       []*VBD
	group      string // the consistency group it is in
	groupSnap  string // the group snapshot it was taken in
}

// mgroups is what the model knows of groups (id -> members) and group
// snapshots (id -> group).
type mgroups struct {
	groups map[string]bool
	snaps  map[string]string
}

// TestServiceAgainstModel runs thousands of random calls on the service
// and checks every answer, and after each call the index, against a
// plain model; every few hundred calls it restarts the service, which
// must rebuild the same index from the store. A quarter of the calls are
// group calls (groupStep), checked against the model's groups.
func TestServiceAgainstModel(t *testing.T) {
	steps := 3000
	if testing.Short() {
		steps = 600
	}
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			runModel(t, seed, steps)
		})
	}
}

func runModel(t *testing.T, seed uint64, steps int) {
	h := newHarness(t)
	rng := rand.New(rand.NewPCG(seed, 99))
	model := map[string]*mvdi{}
	mg := mgroups{groups: map[string]bool{}, snaps: map[string]string{}}
	pickKey := func(m map[string]bool) string {
		ks := slices.Sorted(maps.Keys(m))
		if len(ks) == 0 {
			return ""
		}
		return ks[rng.IntN(len(ks))]
	}
	membersOf := func(match func(v *mvdi) bool) []string {
		var ids []string
		for id, v := range model {
			if match(v) {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		return ids
	}
	t.Cleanup(func() { // before the harness closes the store
		for _, m := range model {
			for _, b := range m.vbds {
				b.Close()
			}
		}
	})
	pick := func(ok func(*mvdi) bool) string {
		var ids []string
		for id, v := range model {
			if ok(v) {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return ""
		}
		slices.Sort(ids)
		return ids[rng.IntN(len(ids))]
	}
	visible := func(v *mvdi) bool { return !v.forgotten }
	live := func(v *mvdi) bool { return visible(v) && !v.snapshot }
	// want checks that err is nil, or has the code the model expects.
	want := func(step int, what string, err error, code string) {
		t.Helper()
		got := ""
		if err != nil {
			f, ok := fault.As(err)
			if !ok {
				t.Fatalf("step %d %s: %v is not a fault", step, what, err)
			}
			got = f.Code
		}
		if got != code {
			t.Fatalf("step %d %s: error %v, model expects %q", step, what, err, code)
		}
	}
	for step := 0; step < steps; step++ {
		if rng.IntN(4) == 0 {
			groupStep(t, h.s, rng, step, model, &mg, pickKey, membersOf, pick, want)
			checkModel(t, step, h.s, model)
			checkGroupModel(t, step, h.s, model, mg)
			continue
		}
		switch op := rng.IntN(100); {
		case op < 15 || len(model) == 0:
			name := fmt.Sprint("v", step)
			v, err := h.s.Create(CreateRequest{Size: 4 << 20, Xen: XenAttrs{NameLabel: name}})
			want(step, "create", err, "")
			model[v.Info.ID] = &mvdi{name: name}
		case op < 30:
			id := pick(live)
			if id == "" {
				continue
			}
			v, err := h.s.Snapshot(id, nil, "")
			want(step, "snapshot "+id, err, "")
			m := model[id]
			model[v.Info.ID] = &mvdi{snapshot: true, snapshotOf: id, name: m.name, cbt: m.cbt}
		case op < 38:
			id := pick(visible)
			if id == "" {
				continue
			}
			v, err := h.s.Clone(id, nil, "")
			want(step, "clone "+id, err, "")
			model[v.Info.ID] = &mvdi{name: model[id].name}
		case op < 50:
			id := pick(visible)
			if id == "" {
				continue
			}
			m := model[id]
			code := ""
			switch {
			case m.group != "" || m.groupSnap != "":
				code = fault.CodeOperationNotAllowed
			case len(m.vbds) > 0:
				code = fault.CodeVDIInUse
			}
			err := h.s.Destroy(id, "")
			want(step, "destroy "+id, err, code)
			if code == "" {
				delete(model, id)
			}
		case op < 56:
			id := pick(visible)
			if id == "" {
				continue
			}
			m := model[id]
			code := ""
			switch {
			case m.group != "" || m.groupSnap != "":
				code = fault.CodeOperationNotAllowed
			case len(m.vbds) > 0:
				code = fault.CodeVDIInUse
			}
			want(step, "forget "+id, h.s.Forget(id, ""), code)
			m.forgotten = code == ""
		case op < 60:
			id := pick(func(v *mvdi) bool { return v.forgotten })
			if id == "" {
				continue
			}
			_, err := h.s.Introduce(IntroduceRequest{UUID: id})
			want(step, "introduce "+id, err, "")
			model[id].forgotten = false
		case op < 72:
			id := pick(visible)
			if id == "" {
				continue
			}
			m := model[id]
			b, err := h.s.Attach(id, "u", !m.snapshot)
			want(step, "attach "+id, err, "")
			m.vbds = append(m.vbds, b)
		case op < 82:
			id := pick(func(v *mvdi) bool { return len(v.vbds) > 0 })
			if id == "" {
				continue
			}
			m := model[id]
			if err := m.vbds[0].Close(); err != nil {
				t.Fatalf("step %d: detach %s: %v", step, id, err)
			}
			m.vbds = m.vbds[1:]
		case op < 90:
			id := pick(visible)
			if id == "" {
				continue
			}
			name := fmt.Sprint("n", step)
			_, err := h.s.EditXen(id, SetNameLabel(name))
			want(step, "set_name_label "+id, err, "")
			model[id].name = name
		case op < 95:
			id := pick(visible)
			if id == "" {
				continue
			}
			m := model[id]
			code := ""
			if m.snapshot {
				code = fault.CodeOperationNotAllowed
			}
			_, err := h.s.SetCBT(id, true, "")
			want(step, "enable_cbt "+id, err, code)
			if code == "" {
				m.cbt = true
			}
		default:
			// A restart: attachments end with the process.
			if rng.IntN(4) != 0 {
				continue
			}
			for _, m := range model {
				for _, b := range m.vbds {
					b.Close()
				}
				m.vbds = nil
			}
			h.close()
			h.open()
		}
		checkModel(t, step, h.s, model)
		checkGroupModel(t, step, h.s, model, mg)
	}
}

// groupStep makes one random group call and checks its answer against the
// model: create, update (adds and removes, some refused), group snapshot,
// its delete, delete (with or without force), create from a source.
func groupStep(t *testing.T, s *Service, rng *rand.Rand, step int, model map[string]*mvdi, mg *mgroups,
	pickKey func(map[string]bool) string, membersOf func(func(*mvdi) bool) []string,
	pick func(func(*mvdi) bool) string, want func(int, string, error, string)) {
	t.Helper()
	hasSnapshots := func(id string) bool {
		for _, v := range model {
			if v.snapshot && v.snapshotOf == id && !v.forgotten {
				return true
			}
		}
		return false
	}
	snapsOf := func(g string) map[string]bool {
		out := map[string]bool{}
		for c, of := range mg.snaps {
			if of == g {
				out[c] = true
			}
		}
		return out
	}
	switch op := rng.IntN(6); {
	case op == 0 || len(mg.groups) == 0:
		g, err := s.CreateGroup(NewGroup{Name: fmt.Sprint("g", step), Pools: []string{"local"}})
		want(step, "create group", err, "")
		mg.groups[g.ID] = true
	case op == 1:
		g := pickKey(mg.groups)
		var add, remove []string
		code := ""
		for i := rng.IntN(3); i >= 0; i-- {
			id := pick(func(v *mvdi) bool { return !v.forgotten })
			if id == "" || slices.Contains(add, id) {
				continue
			}
			if m := model[id]; m.group == g && rng.IntN(2) == 0 {
				remove = append(remove, id)
			} else {
				add = append(add, id)
			}
		}
		for _, id := range slices.Sorted(slices.Values(append(slices.Clone(add), remove...))) {
			m := model[id]
			adding := slices.Contains(add, id)
			switch {
			case code != "":
			case adding && m.group == g:
			case adding && (m.snapshot || m.group != ""):
				code = fault.CodeInvalidVolume
			}
		}
		_, err := s.UpdateGroup(g, GroupUpdate{Add: add, Remove: remove})
		if len(add)+len(remove) == 0 {
			code = fault.CodeInvalidGroup // nothing to change
		}
		want(step, fmt.Sprintf("update %s +%v -%v", g, add, remove), err, code)
		if code == "" {
			for _, id := range add {
				model[id].group = g
			}
			for _, id := range remove {
				model[id].group = ""
			}
		}
	case op == 2:
		g := pickKey(mg.groups)
		c, err := s.SnapshotGroup(NewGroupSnapshot{Group: g})
		want(step, "snapshot group "+g, err, "")
		mg.snaps[c.ID] = g
		for _, id := range c.Members {
			src := s.mustSource(t, id)
			m := model[src]
			if m == nil || m.group != g {
				t.Fatalf("step %d: group snapshot of %s has a snapshot of %s, no member", step, g, src)
			}
			model[id] = &mvdi{snapshot: true, snapshotOf: src, name: m.name, cbt: m.cbt, groupSnap: c.ID}
		}
		if n := len(membersOf(func(v *mvdi) bool { return v.group == g })); n != len(c.Members) {
			t.Fatalf("step %d: group snapshot of %s has %d snapshots, the group %d members", step, g, len(c.Members), n)
		}
	case op == 3:
		var c string
		for _, k := range slices.Sorted(maps.Keys(mg.snaps)) {
			if c == "" || rng.IntN(2) == 0 {
				c = k
			}
		}
		if c == "" {
			return
		}
		code := ""
		members := membersOf(func(v *mvdi) bool { return v.groupSnap == c })
		for _, id := range members {
			if len(model[id].vbds) > 0 {
				code = fault.CodeInvalidGroupSnapshot
			}
		}
		want(step, "delete group snapshot "+c, s.DeleteGroupSnapshot(c, ""), code)
		if code == "" {
			delete(mg.snaps, c)
			for _, id := range members {
				delete(model, id)
			}
		}
	case op == 4:
		g := pickKey(mg.groups)
		force := rng.IntN(2) == 0
		members := membersOf(func(v *mvdi) bool { return v.group == g })
		code := ""
		switch {
		case len(snapsOf(g)) > 0 || (!force && len(members) > 0):
			code = fault.CodeInvalidGroup
		default:
			for _, id := range members {
				if len(model[id].vbds) > 0 {
					code = fault.CodeVDIInUse
				} else if hasSnapshots(id) {
					code = fault.CodeInvalidVolume
				}
				if code != "" {
					break
				}
			}
		}
		want(step, fmt.Sprintf("delete group %s force=%v", g, force), s.DeleteGroup(g, force, ""), code)
		if code == "" {
			delete(mg.groups, g)
			for _, id := range members {
				delete(model, id)
			}
		}
	default:
		req := GroupFromSource{Name: fmt.Sprint("from", step)}
		var sources []string
		if c := pickKey(keysOf(mg.snaps)); c != "" && rng.IntN(2) == 0 {
			req.FromSnapshot = c
			sources = membersOf(func(v *mvdi) bool { return v.groupSnap == c })
		} else {
			req.FromGroup = pickKey(mg.groups)
			sources = membersOf(func(v *mvdi) bool { return v.group == req.FromGroup })
		}
		code := ""
		if len(sources) == 0 {
			code = fault.CodeInvalidGroup
		}
		g, err := s.CreateGroupFromSource(req)
		want(step, fmt.Sprintf("create from %+v", req), err, code)
		if code != "" {
			return
		}
		mg.groups[g.ID] = true
		if len(g.Members) != len(sources) {
			t.Fatalf("step %d: %d new volumes from %d sources", step, len(g.Members), len(sources))
		}
		for _, id := range g.Members {
			v, err := s.Get(id)
			if err != nil || !slices.Contains(sources, v.Info.CloneOf) {
				t.Fatalf("step %d: new member %s: %v (a clone of %q)", step, id, err, v.Info.CloneOf)
			}
			model[id] = &mvdi{name: model[v.Info.CloneOf].name, group: g.ID}
		}
	}
}

func keysOf(m map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// mustSource is the VDI a snapshot was taken of.
func (s *Service) mustSource(t *testing.T, id string) string {
	t.Helper()
	v, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return v.Info.SnapshotOf
}

// checkGroupModel compares the service's groups, group snapshots and every
// VDI's membership with the model.
func checkGroupModel(t *testing.T, step int, s *Service, model map[string]*mvdi, mg mgroups) {
	t.Helper()
	groups := s.Groups()
	if len(groups) != len(mg.groups) {
		t.Fatalf("step %d: %d groups, the model %d", step, len(groups), len(mg.groups))
	}
	members := map[string][]string{}
	for id, m := range model {
		if m.group != "" {
			members[m.group] = append(members[m.group], id)
		}
		if m.groupSnap != "" {
			members[m.groupSnap] = append(members[m.groupSnap], id)
		}
		if m.forgotten {
			continue
		}
		v, err := s.Lookup(id)
		if err != nil {
			t.Fatalf("step %d: %s: %v", step, id, err)
		}
		if l := v.Attrs.Lifecycle; l.Group != m.group || l.GroupSnapshot != m.groupSnap {
			t.Fatalf("step %d: %s in group %q / group snapshot %q, the model %q / %q", step, id, l.Group, l.GroupSnapshot, m.group, m.groupSnap)
		}
	}
	for _, g := range groups {
		want := members[g.ID]
		slices.Sort(want)
		if !mg.groups[g.ID] || !slices.Equal(g.Members, want) || g.Status != StatusAvailable {
			t.Fatalf("step %d: group %s (%s) members %v, the model %v", step, g.ID, g.Status, g.Members, want)
		}
	}
	snaps := s.GroupSnapshots()
	if len(snaps) != len(mg.snaps) {
		t.Fatalf("step %d: %d group snapshots, the model %d", step, len(snaps), len(mg.snaps))
	}
	for _, c := range snaps {
		want := members[c.ID]
		slices.Sort(want)
		if mg.snaps[c.ID] != c.Group || !slices.Equal(c.Members, want) {
			t.Fatalf("step %d: group snapshot %s of %s members %v, the model %v", step, c.ID, c.Group, c.Members, want)
		}
	}
}

// checkModel compares the service's whole view with the model.
func checkModel(t *testing.T, step int, s *Service, model map[string]*mvdi) {
	t.Helper()
	var wantIDs []string
	children := map[string][]string{}
	for id, m := range model {
		if !m.forgotten {
			wantIDs = append(wantIDs, id)
			if m.snapshot {
				children[m.snapshotOf] = append(children[m.snapshotOf], id)
			}
		}
	}
	slices.Sort(wantIDs)
	if got := s.Find(nil); !slices.Equal(got, wantIDs) {
		t.Fatalf("step %d: Find lists %d VDIs, the model %d", step, len(got), len(wantIDs))
	}
	if got, n := s.Count(), len(model); got != n {
		t.Fatalf("step %d: %d volumes indexed, the model has %d", step, got, n)
	}
	for _, id := range slices.Sorted(maps.Keys(model)) {
		m := model[id]
		v, err := s.Get(id)
		if m.forgotten {
			if f, ok := fault.As(err); !ok || f.Kind != fault.NotFound {
				t.Fatalf("step %d: Get of forgotten %s: %v", step, id, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d: Get %s: %v", step, id, err)
		}
		kids := children[id]
		slices.Sort(kids)
		switch {
		case v.Attrs.Xen.NameLabel != m.name:
			t.Fatalf("step %d: %s name %q, model %q", step, id, v.Attrs.Xen.NameLabel, m.name)
		case v.Info.IsSnapshot() != m.snapshot:
			t.Fatalf("step %d: %s snapshot %v, model %v", step, id, v.Info.IsSnapshot(), m.snapshot)
		case m.snapshot && v.Info.SnapshotOf != m.snapshotOf:
			t.Fatalf("step %d: %s snapshot of %s, model %s", step, id, v.Info.SnapshotOf, m.snapshotOf)
		case len(v.VBDs) != len(m.vbds):
			t.Fatalf("step %d: %s has %d VBDs, model %d", step, id, len(v.VBDs), len(m.vbds))
		case !slices.Equal(v.Snapshots, kids):
			t.Fatalf("step %d: %s snapshots %v, model %v", step, id, v.Snapshots, kids)
		case v.Info.CBTEnabled != m.cbt:
			t.Fatalf("step %d: %s cbt %v, model %v", step, id, v.Info.CBTEnabled, m.cbt)
		case slices.Contains(v.Allowed, "destroy") != (len(m.vbds) == 0 && m.group == "" && m.groupSnap == ""):
			t.Fatalf("step %d: %s allowed %v with %d VBDs", step, id, v.Allowed, len(m.vbds))
		}
	}
}
