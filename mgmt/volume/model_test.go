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
}

// TestServiceAgainstModel runs thousands of random calls on the service
// and checks every answer, and after each call the index, against a
// plain model; every few hundred calls it restarts the service, which
// must rebuild the same index from the store.
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
			if len(m.vbds) > 0 {
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
			if len(m.vbds) > 0 {
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
			_, err := h.s.ChangeXen(id, func(_ Volume, x *XenAttrs) *fault.Error { x.NameLabel = name; return nil })
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
		case slices.Contains(v.Allowed, "destroy") != (len(m.vbds) == 0):
			t.Fatalf("step %d: %s allowed %v with %d VBDs", step, id, v.Allowed, len(m.vbds))
		}
	}
}
