package volume

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kv"
)

// --- helpers -----------------------------------------------------------------

// wantFault checks that err is a fault of kind and code.
func wantFault(t *testing.T, what string, err error, kind fault.Kind, code string) *fault.Error {
	t.Helper()
	f, ok := fault.As(err)
	if !ok {
		t.Fatalf("%s: got %v, want a %v fault %s", what, err, kind, code)
	}
	if f.Kind != kind || f.Code != code {
		t.Fatalf("%s: got a %v fault %s %q (%s), want a %v fault %s", what, f.Kind, f.Code, f.Params, f.Message, kind, code)
	}
	return f
}

func mustGroup(t *testing.T, s *Service, id string) Group {
	t.Helper()
	g, err := s.Group(id)
	if err != nil {
		t.Fatalf("group %s: %v", id, err)
	}
	return g
}

func mustGroupSnapshot(t *testing.T, s *Service, id string) GroupSnapshot {
	t.Helper()
	c, err := s.GroupSnapshot(id)
	if err != nil {
		t.Fatalf("group snapshot %s: %v", id, err)
	}
	return c
}

func mustGet(t *testing.T, s *Service, id string) VDI {
	t.Helper()
	v, err := s.Get(id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return v
}

// wantGone checks that VDI id is gone from the service and the store.
func wantGone(t *testing.T, s *Service, st *blockstore.Store, id string) {
	t.Helper()
	if _, err := s.Get(id); err == nil {
		t.Fatalf("VDI %s still exists", id)
	}
	if _, err := st.Volume(id); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("the store still has volume %s (%v)", id, err)
	}
}

func newVDI(t *testing.T, s *Service, req CreateRequest) string {
	t.Helper()
	if req.Size == 0 {
		req.Size = 4 << 20
	}
	v, err := s.Create(req)
	if err != nil {
		t.Fatalf("create %+v: %v", req, err)
	}
	return v.Info.ID
}

func newGroup(t *testing.T, s *Service, name string, pools ...string) Group {
	t.Helper()
	g, err := s.CreateGroup(NewGroup{Name: name, Pools: pools})
	if err != nil {
		t.Fatalf("create group %s: %v", name, err)
	}
	return g
}

func newPool(t *testing.T, s *Service, name string) Pool {
	t.Helper()
	p, err := s.CreatePool(NewPool{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// writeData writes text into the first block of VDI id through a VBD.
func writeData(t *testing.T, s *Service, id, text string) {
	t.Helper()
	b, err := s.Attach(id, "test", true)
	if err != nil {
		t.Fatalf("attach %s: %v", id, err)
	}
	defer b.Close()
	blk := make([]byte, blockstore.BlockSize)
	copy(blk, text)
	if err := b.Disk.Write(0, blk, 0); err != nil {
		t.Fatalf("write %s: %v", id, err)
	}
}

// readData reads the text of the first block of VDI id through a VBD.
func readData(t *testing.T, s *Service, id string) string {
	t.Helper()
	b, err := s.Attach(id, "test", false)
	if err != nil {
		t.Fatalf("attach %s: %v", id, err)
	}
	defer b.Close()
	blk := make([]byte, blockstore.BlockSize)
	if _, err := b.Disk.ReadAt(blk, 0); err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return string(bytes.TrimRight(blk, "\x00"))
}

// markBusy registers a running task's operation on VDI id, as a running
// resize would, until the function returned is called.
func markBusy(s *Service, id, op string) func() {
	e := s.entry(id)
	e.mu.Lock()
	e.addOp("test-task", op)
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		e.releaseOp("test-task")
		e.mu.Unlock()
	}
}

// groupState is, as text, everything a call on groups may change: the
// groups and group snapshots as the service shows them, every volume of its
// index (hidden ones too) with its lifecycle, and what the store holds (its
// volumes with their lifecycle, and the groups' records). Two equal states
// are the same state.
func groupState(t *testing.T, s *Service, st *blockstore.Store) string {
	t.Helper()
	var b strings.Builder
	groups := s.Groups()
	slices.SortFunc(groups, func(x, y Group) int { return strings.Compare(x.ID, y.ID) })
	for _, g := range groups {
		j, err := json.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "group %s members=%v snapshots=%v\n", j, g.Members, g.Snapshots)
	}
	snaps := s.GroupSnapshots()
	slices.SortFunc(snaps, func(x, y GroupSnapshot) int { return strings.Compare(x.ID, y.ID) })
	for _, c := range snaps {
		j, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "cgsnapshot %s members=%v\n", j, c.Members)
	}
	es := s.entries()
	slices.SortFunc(es, func(x, y *entry) int { return strings.Compare(x.id, y.id) })
	for _, e := range es {
		e.mu.Lock()
		if !e.gone {
			fmt.Fprintf(&b, "vdi %s kind=%s pool=%s of=%s clone=%s shown=%v name=%q lifecycle=%+v\n", e.id, e.info.Kind,
				e.info.Pool, e.info.SnapshotOf, e.info.CloneOf, e.shown.Load(), e.attrs.Xen.NameLabel, e.attrs.Lifecycle)
		}
		e.mu.Unlock()
	}
	vols := st.Volumes()
	slices.SortFunc(vols, func(x, y blockstore.VolumeInfo) int { return strings.Compare(x.ID, y.ID) })
	for _, v := range vols {
		a, err := decodeAttrs(v.Attrs)
		if err != nil {
			t.Fatalf("volume %s: %v", v.ID, err)
		}
		fmt.Fprintf(&b, "stored %s kind=%s pool=%s of=%s clone=%s size=%d name=%q lifecycle=%+v\n", v.ID, v.Kind,
			v.Pool, v.SnapshotOf, v.CloneOf, v.Size, a.Xen.NameLabel, a.Lifecycle)
	}
	err := st.Records("group", func(k string, v []byte) error {
		fmt.Fprintf(&b, "record %s %s\n", k, v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// checkGroupInvariants checks that groups, group snapshots and the VDIs'
// lifecycle agree: every Lifecycle.Group names an existing group that lists
// the VDI, every Lifecycle.GroupSnapshot an existing group snapshot that
// lists it, and every member a group or group snapshot lists exists and
// names it back.
func checkGroupInvariants(t *testing.T, s *Service) {
	t.Helper()
	inGroup, inSnap := map[string][]string{}, map[string][]string{}
	for _, e := range s.entries() {
		e.mu.Lock()
		gone, id, kind, lc := e.gone, e.id, e.info.Kind, e.attrs.Lifecycle
		e.mu.Unlock()
		if gone {
			continue
		}
		if lc.Group != "" {
			if kind != blockstore.KindLive {
				t.Errorf("%s VDI %s is in group %s", kind, id, lc.Group)
			}
			if _, err := s.Group(lc.Group); err != nil {
				t.Errorf("VDI %s names group %s: %v", id, lc.Group, err)
			}
			inGroup[lc.Group] = append(inGroup[lc.Group], id)
		}
		if lc.GroupSnapshot != "" {
			if kind != blockstore.KindSnapshot {
				t.Errorf("%s VDI %s is in group snapshot %s", kind, id, lc.GroupSnapshot)
			}
			if _, err := s.GroupSnapshot(lc.GroupSnapshot); err != nil {
				t.Errorf("VDI %s names group snapshot %s: %v", id, lc.GroupSnapshot, err)
			}
			inSnap[lc.GroupSnapshot] = append(inSnap[lc.GroupSnapshot], id)
		}
	}
	cgsnapsOf := map[string][]string{}
	for _, c := range s.GroupSnapshots() {
		if _, err := s.Group(c.Group); err != nil {
			t.Errorf("group snapshot %s of group %s: %v", c.ID, c.Group, err)
		}
		cgsnapsOf[c.Group] = append(cgsnapsOf[c.Group], c.ID)
		slices.Sort(inSnap[c.ID])
		if !slices.Equal(c.Members, inSnap[c.ID]) && len(c.Members)+len(inSnap[c.ID]) > 0 {
			t.Errorf("group snapshot %s lists %v; the VDIs naming it are %v", c.ID, c.Members, inSnap[c.ID])
		}
		for _, m := range c.Members {
			if _, err := s.Get(m); err != nil {
				t.Errorf("group snapshot %s: member %s: %v", c.ID, m, err)
			}
		}
	}
	for _, g := range s.Groups() {
		slices.Sort(inGroup[g.ID])
		if !slices.Equal(g.Members, inGroup[g.ID]) && len(g.Members)+len(inGroup[g.ID]) > 0 {
			t.Errorf("group %s lists %v; the VDIs naming it are %v", g.ID, g.Members, inGroup[g.ID])
		}
		slices.Sort(cgsnapsOf[g.ID])
		if !slices.Equal(g.Snapshots, cgsnapsOf[g.ID]) && len(g.Snapshots)+len(cgsnapsOf[g.ID]) > 0 {
			t.Errorf("group %s lists group snapshots %v; those naming it are %v", g.ID, g.Snapshots, cgsnapsOf[g.ID])
		}
		if g.Status != StatusAvailable {
			t.Errorf("group %s is %s at rest", g.ID, g.Status)
		}
	}
}

// diskHarness is a Service on a store and database in a real directory,
// reopened from it as a restarted daemon would.
type diskHarness struct {
	t     *testing.T
	dir   string
	store *blockstore.Store
	db    *kv.DB
	s     *Service
}

func newDiskHarness(t *testing.T) *diskHarness {
	h := &diskHarness{t: t, dir: t.TempDir()}
	h.open()
	t.Cleanup(h.close)
	return h
}

func (h *diskHarness) open() {
	h.t.Helper()
	st, err := blockstore.Open(filepath.Join(h.dir, "store"), blockstore.Options{GCInterval: -1, CacheSize: 4 << 20,
		MemTableSize: 2 << 20, NewestCacheBlocks: -1, Logf: func(string, ...any) {},
		FreeSpace: func() (uint64, error) { return 1 << 40, nil }})
	if err != nil {
		h.t.Fatal(err)
	}
	db, err := kv.Open(filepath.Join(h.dir, "mgmt.db"), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := New(Options{Store: st, DB: db, DetachGrace: -1})
	if err != nil {
		h.t.Fatal(err)
	}
	h.store, h.db, h.s = st, db, s
}

func (h *diskHarness) close() {
	if h.s == nil {
		return
	}
	h.db.Close()
	if err := h.store.Close(); err != nil {
		h.t.Errorf("closing the store: %v", err)
	}
	h.s = nil
}

// --- lifecycle ---------------------------------------------------------------

// TestGroupLifecycle walks a group through Cinder's calls: create (vPools
// by name and guid), VDIs made in it, members added and removed, group
// snapshots holding the members' data at the time, groups made from a
// group snapshot and from a group (clones holding the right data), and the
// deletes.
func TestGroupLifecycle(t *testing.T) {
	h := newHarness(t)
	s := h.s
	local, perr := s.Pool("", "SR")
	if perr != nil {
		t.Fatal(perr)
	}
	fast := newPool(t, s, "fast")
	newPool(t, s, "slow")

	// vPools by name or guid, each once, in order.
	g, err := s.CreateGroup(NewGroup{Name: "g", Description: "d", Pools: []string{"fast", local.GUID, fast.GUID}, Owner: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{fast.GUID, local.GUID}; !slices.Equal(g.Pools, want) {
		t.Fatalf("pools %v, want %v", g.Pools, want)
	}
	if g.Status != StatusAvailable || len(g.Members) != 0 || len(g.Snapshots) != 0 || g.Name != "g" || g.Owner != "p" {
		t.Fatalf("new group %+v", g)
	}
	_, err = s.CreateGroup(NewGroup{Name: "x", Pools: []string{"local", "nope"}})
	wantFault(t, "a group with an unknown vPool", err, fault.NotFound, fault.CodeUUIDInvalid)
	_, err = s.CreateGroup(NewGroup{Name: "x"})
	wantFault(t, "a group without vPools", err, fault.Invalid, fault.CodeInvalidVolumeType)
	if n := len(s.Groups()); n != 1 {
		t.Fatalf("%d groups after the refusals, want 1", n)
	}

	// VDIs made in the group.
	a := newVDI(t, s, CreateRequest{Pool: "fast", Group: g.ID, Xen: XenAttrs{NameLabel: "a"}})
	b := newVDI(t, s, CreateRequest{Group: g.ID, Xen: XenAttrs{NameLabel: "b"}}) // the default vPool, local
	_, err = s.Create(CreateRequest{Size: 4 << 20, Pool: "slow", Group: g.ID})
	wantFault(t, "a VDI of a vPool not in the group", err, fault.Invalid, fault.CodeInvalidVolume)
	_, err = s.Create(CreateRequest{Size: 4 << 20, Group: "nope"})
	wantFault(t, "a VDI in an unknown group", err, fault.NotFound, fault.CodeUUIDInvalid)
	c := newVDI(t, s, CreateRequest{Xen: XenAttrs{NameLabel: "c"}})
	for id, want := range map[string]string{a: g.ID, b: g.ID, c: ""} {
		if got := mustGet(t, s, id).Attrs.Lifecycle.Group; got != want {
			t.Fatalf("VDI %s in group %q, want %q", id, got, want)
		}
	}
	if got, want := mustGroup(t, s, g.ID).Members, slices.Sorted(slices.Values([]string{a, b})); !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	if n := s.Count(); n != 3 {
		t.Fatalf("%d volumes after the refused creates, want 3", n)
	}

	// Add c (and a again: ignored), remove b, rename: one call.
	name := "g2"
	u, err := s.UpdateGroup(g.ID, GroupUpdate{Name: &name, Add: []string{c, a}, Remove: []string{b}})
	if err != nil {
		t.Fatal(err)
	}
	wantMembers := slices.Sorted(slices.Values([]string{a, c}))
	if !slices.Equal(u.Members, wantMembers) || u.Name != "g2" || u.Status != StatusAvailable || u.Description != "d" {
		t.Fatalf("updated group %+v, want members %v, name g2", u, wantMembers)
	}
	if got := mustGroup(t, s, g.ID); !slices.Equal(got.Members, wantMembers) || got.Name != "g2" || got.Status != StatusAvailable {
		t.Fatalf("group after the update %+v", got)
	}
	for id, want := range map[string]string{a: g.ID, b: "", c: g.ID} {
		if got := mustGet(t, s, id).Attrs.Lifecycle.Group; got != want {
			t.Fatalf("VDI %s in group %q after the update, want %q", id, got, want)
		}
	}
	if v := mustGet(t, s, a); slices.Contains(v.Allowed, "destroy") || slices.Contains(v.Allowed, "forget") {
		t.Fatalf("member %s allows %v", a, v.Allowed)
	}
	if v := mustGet(t, s, b); !slices.Contains(v.Allowed, "destroy") {
		t.Fatalf("removed member %s allows %v", b, v.Allowed)
	}

	// A group snapshot: one snapshot per member, holding its data then.
	writeData(t, s, a, "a-1")
	writeData(t, s, c, "c-1")
	cs, err := s.SnapshotGroup(NewGroupSnapshot{Group: g.ID, Name: "cs", Owner: "p"})
	if err != nil {
		t.Fatal(err)
	}
	writeData(t, s, a, "a-2")
	writeData(t, s, c, "c-2")
	if len(cs.Members) != 2 || cs.Group != g.ID || cs.Status != StatusAvailable || cs.Name != "cs" {
		t.Fatalf("group snapshot %+v", cs)
	}
	if got := mustGroupSnapshot(t, s, cs.ID); !slices.Equal(got.Members, cs.Members) {
		t.Fatalf("group snapshot members %v, then %v", cs.Members, got.Members)
	}
	snapOf := map[string]string{} // member -> its snapshot in cs
	for _, sid := range cs.Members {
		v := mustGet(t, s, sid)
		if v.Info.Kind != blockstore.KindSnapshot || v.Attrs.Lifecycle.GroupSnapshot != cs.ID || v.Attrs.Lifecycle.Group != "" {
			t.Fatalf("member snapshot %s: kind %s, lifecycle %+v", sid, v.Info.Kind, v.Attrs.Lifecycle)
		}
		snapOf[v.Info.SnapshotOf] = sid
	}
	if len(snapOf) != 2 || snapOf[a] == "" || snapOf[c] == "" {
		t.Fatalf("group snapshot of %v, want one of %s and one of %s", snapOf, a, c)
	}
	for src, want := range map[string]string{a: "a-1", c: "c-1"} {
		if got := readData(t, s, snapOf[src]); got != want {
			t.Fatalf("the snapshot of %s holds %q, want %q", src, got, want)
		}
	}
	if got := mustGroup(t, s, g.ID).Snapshots; !slices.Equal(got, []string{cs.ID}) {
		t.Fatalf("group snapshots %v, want [%s]", got, cs.ID)
	}

	// A group from the group snapshot: clones of its snapshots.
	fromSnap, err := s.CreateGroupFromSource(GroupFromSource{Name: "from-snap", FromSnapshot: cs.ID})
	if err != nil {
		t.Fatal(err)
	}
	if fromSnap.SourceSnapshot != cs.ID || fromSnap.SourceGroup != "" || !slices.Equal(fromSnap.Pools, g.Pools) ||
		len(fromSnap.Members) != 2 || fromSnap.Status != StatusAvailable {
		t.Fatalf("group from a group snapshot %+v", fromSnap)
	}
	snapData := map[string]string{snapOf[a]: "a-1", snapOf[c]: "c-1"}
	for _, id := range fromSnap.Members {
		v := mustGet(t, s, id)
		if v.Info.Kind != blockstore.KindLive || v.Attrs.Lifecycle.Group != fromSnap.ID || snapData[v.Info.CloneOf] == "" {
			t.Fatalf("new member %s: kind %s, clone of %s, lifecycle %+v", id, v.Info.Kind, v.Info.CloneOf, v.Attrs.Lifecycle)
		}
		if got, want := readData(t, s, id), snapData[v.Info.CloneOf]; got != want {
			t.Fatalf("clone %s of %s holds %q, want %q", id, v.Info.CloneOf, got, want)
		}
	}

	// A group from the group: clones of its members as they are now.
	fromGroup, err := s.CreateGroupFromSource(GroupFromSource{Name: "from-group", FromGroup: g.ID})
	if err != nil {
		t.Fatal(err)
	}
	if fromGroup.SourceGroup != g.ID || fromGroup.SourceSnapshot != "" || len(fromGroup.Members) != 2 {
		t.Fatalf("group from a group %+v", fromGroup)
	}
	liveData := map[string]string{a: "a-2", c: "c-2"}
	for _, id := range fromGroup.Members {
		v := mustGet(t, s, id)
		if v.Info.Kind != blockstore.KindLive || v.Attrs.Lifecycle.Group != fromGroup.ID || liveData[v.Info.CloneOf] == "" {
			t.Fatalf("new member %s: kind %s, clone of %s, lifecycle %+v", id, v.Info.Kind, v.Info.CloneOf, v.Attrs.Lifecycle)
		}
		if got, want := readData(t, s, id), liveData[v.Info.CloneOf]; got != want {
			t.Fatalf("clone %s of %s holds %q, want %q", id, v.Info.CloneOf, got, want)
		}
		writeData(t, s, id, "clone") // a clone writes apart from its source
	}
	if got := readData(t, s, a); got != "a-2" {
		t.Fatalf("a holds %q after its clone was written", got)
	}
	if got := mustGroup(t, s, g.ID).Members; !slices.Equal(got, wantMembers) {
		t.Fatalf("the source group's members changed: %v", got)
	}

	// No delete while a group snapshot is left, with force or not.
	wantFault(t, "delete with a group snapshot", s.DeleteGroup(g.ID, false, ""), fault.Invalid, fault.CodeInvalidGroup)
	wantFault(t, "forced delete with a group snapshot", s.DeleteGroup(g.ID, true, ""), fault.Invalid, fault.CodeInvalidGroup)

	// The group snapshot goes with its snapshots; the clones made from
	// them keep their data.
	if err := s.DeleteGroupSnapshot(cs.ID, ""); err != nil {
		t.Fatal(err)
	}
	_, ferr := s.GroupSnapshot(cs.ID)
	if ferr == nil || ferr.Kind != fault.NotFound {
		t.Fatalf("deleted group snapshot: %v", ferr)
	}
	for _, sid := range cs.Members {
		wantGone(t, s, h.store, sid)
	}
	if got := mustGroup(t, s, g.ID).Snapshots; len(got) != 0 {
		t.Fatalf("group snapshots %v after the delete", got)
	}
	for _, id := range fromSnap.Members {
		v := mustGet(t, s, id)
		if got, want := readData(t, s, id), snapData[v.Info.CloneOf]; got != want {
			t.Fatalf("clone %s holds %q after its source snapshot went, want %q", id, got, want)
		}
	}
	wantFault(t, "deleting it again", s.DeleteGroupSnapshot(cs.ID, ""), fault.NotFound, fault.CodeUUIDInvalid)

	// Without force a group with members stays; with force they go too.
	wantFault(t, "delete with members", s.DeleteGroup(g.ID, false, ""), fault.Invalid, fault.CodeInvalidGroup)
	if err := s.DeleteGroup(g.ID, true, ""); err != nil {
		t.Fatal(err)
	}
	_, ferr = s.Group(g.ID)
	if ferr == nil || ferr.Kind != fault.NotFound {
		t.Fatalf("deleted group: %v", ferr)
	}
	wantGone(t, s, h.store, a)
	wantGone(t, s, h.store, c)
	if v := mustGet(t, s, b); v.Attrs.Lifecycle.Group != "" {
		t.Fatalf("the removed member %s: %+v", b, v.Attrs.Lifecycle)
	}
	for _, id := range append(slices.Clone(fromSnap.Members), fromGroup.Members...) {
		mustGet(t, s, id) // other groups' members stay
	}

	// An empty group goes without force.
	empty := newGroup(t, s, "empty", "local")
	if err := s.DeleteGroup(empty.ID, false, ""); err != nil {
		t.Fatal(err)
	}
	for _, gg := range []Group{fromSnap, fromGroup} {
		if err := s.DeleteGroup(gg.ID, true, ""); err != nil {
			t.Fatal(err)
		}
		for _, id := range gg.Members {
			wantGone(t, s, h.store, id)
		}
	}
	if gs, cs := s.Groups(), s.GroupSnapshots(); len(gs)+len(cs) != 0 {
		t.Fatalf("left: groups %v, group snapshots %v", gs, cs)
	}
	if got := s.Find(nil); !slices.Equal(got, []string{b}) {
		t.Fatalf("VDIs left %v, want [%s]", got, b)
	}
	checkGroupInvariants(t, s)
}

// --- refusals ----------------------------------------------------------------

// TestGroupRefusalsChangeNothing makes every call on groups that must be
// refused, each with something in it that alone would succeed, and checks
// that the refusal is the expected fault and that nothing changed: not the
// groups, the group snapshots, any VDI or its lifecycle, nor the store.
func TestGroupRefusalsChangeNothing(t *testing.T) {
	h := newHarness(t)
	s := h.s
	fast := newPool(t, s, "fast")
	newPool(t, s, "slow")
	g1 := newGroup(t, s, "g1", "local", "fast")
	g2 := newGroup(t, s, "g2", "local")
	g3 := newGroup(t, s, "g3", "local") // empty
	m1 := newVDI(t, s, CreateRequest{Group: g1.ID, Xen: XenAttrs{NameLabel: "m1"}})
	m2 := newVDI(t, s, CreateRequest{Pool: fast.Name, Group: g1.ID, Xen: XenAttrs{NameLabel: "m2"}})
	n1 := newVDI(t, s, CreateRequest{Group: g2.ID, Xen: XenAttrs{NameLabel: "n1"}})
	n2 := newVDI(t, s, CreateRequest{Group: g2.ID, Xen: XenAttrs{NameLabel: "n2"}})
	v := newVDI(t, s, CreateRequest{Xen: XenAttrs{NameLabel: "v"}})
	w := newVDI(t, s, CreateRequest{Xen: XenAttrs{NameLabel: "w"}})
	vs := newVDI(t, s, CreateRequest{Pool: "slow", Xen: XenAttrs{NameLabel: "vs"}})
	sp, err := s.Snapshot(v, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	c1, err := s.SnapshotGroup(NewGroupSnapshot{Group: g1.ID, Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c1.Members) != 2 {
		t.Fatalf("group snapshot of %v, want 2 members", c1.Members)
	}
	c1m := c1.Members[0]
	long := strings.Repeat("x", MaxNameLength+1)
	ptr := func(x string) *string { return &x }

	busy := func(id string) func() func() {
		return func() func() { return markBusy(s, id, "resize") }
	}
	attached := func(id string) func() func() {
		return func() func() {
			b, err := s.Attach(id, "test", false)
			if err != nil {
				t.Fatal(err)
			}
			return func() { b.Close() }
		}
	}
	withSnapshot := func(id string) func() func() {
		return func() func() {
			snap, err := s.Snapshot(id, nil, "")
			if err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := s.Destroy(snap.Info.ID, ""); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	for _, tc := range []struct {
		name  string
		setup func() (undo func())
		call  func() error
		kind  fault.Kind
		code  string
	}{
		{name: "create group with an unknown vPool", kind: fault.NotFound, code: fault.CodeUUIDInvalid,
			call: func() error {
				_, err := s.CreateGroup(NewGroup{Name: "x", Pools: []string{"local", "nope"}})
				return err
			}},
		{name: "create group without vPools", kind: fault.Invalid, code: fault.CodeInvalidVolumeType,
			call: func() error { _, err := s.CreateGroup(NewGroup{Name: "x"}); return err }},
		{name: "create group with a long name", kind: fault.Invalid, code: fault.CodeInvalidValue,
			call: func() error { _, err := s.CreateGroup(NewGroup{Name: long, Pools: []string{"local"}}); return err }},
		{name: "create group with a long description", kind: fault.Invalid, code: fault.CodeInvalidValue,
			call: func() error {
				_, err := s.CreateGroup(NewGroup{Name: "x", Description: long, Pools: []string{"local"}})
				return err
			}},
		{name: "create a VDI in a group, of a vPool not the group's", kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error { _, err := s.Create(CreateRequest{Size: 4 << 20, Pool: "slow", Group: g1.ID}); return err }},
		{name: "create a VDI in an unknown group", kind: fault.NotFound, code: fault.CodeUUIDInvalid,
			call: func() error { _, err := s.Create(CreateRequest{Size: 4 << 20, Group: "nope"}); return err }},
		{name: "update: add a volume of another vPool", kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error {
				_, err := s.UpdateGroup(g1.ID, GroupUpdate{Name: ptr("r"), Add: []string{v, vs}})
				return err
			}},
		{name: "update: add a volume in another group", kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error { _, err := s.UpdateGroup(g1.ID, GroupUpdate{Add: []string{v, n1}}); return err }},
		{name: "update: add a snapshot", kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error { _, err := s.UpdateGroup(g1.ID, GroupUpdate{Add: []string{v, sp.Info.ID}}); return err }},
		{name: "update: add a group snapshot's snapshot", kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error { _, err := s.UpdateGroup(g1.ID, GroupUpdate{Add: []string{w, c1m}}); return err }},
		{name: "update: add an unknown volume", kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error { _, err := s.UpdateGroup(g1.ID, GroupUpdate{Add: []string{v, "nope"}}); return err }},
		{name: "update: add a busy volume", setup: busy(w), kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error { _, err := s.UpdateGroup(g1.ID, GroupUpdate{Add: []string{v, w}}); return err }},
		{name: "update: remove a non-member", kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error { _, err := s.UpdateGroup(g1.ID, GroupUpdate{Remove: []string{m1, n1}}); return err }},
		{name: "update: remove a busy member", setup: busy(m2), kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error {
				_, err := s.UpdateGroup(g1.ID, GroupUpdate{Name: ptr("r"), Add: []string{v}, Remove: []string{m1, m2}})
				return err
			}},
		{name: "update: nothing to change", kind: fault.Invalid, code: fault.CodeInvalidGroup,
			call: func() error { _, err := s.UpdateGroup(g1.ID, GroupUpdate{}); return err }},
		{name: "update: add and remove one volume", kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error {
				_, err := s.UpdateGroup(g1.ID, GroupUpdate{Add: []string{v, m1}, Remove: []string{m1}})
				return err
			}},
		{name: "update: a long name", kind: fault.Invalid, code: fault.CodeInvalidValue,
			call: func() error { _, err := s.UpdateGroup(g1.ID, GroupUpdate{Name: &long, Add: []string{v}}); return err }},
		{name: "update: a long description", kind: fault.Invalid, code: fault.CodeInvalidValue,
			call: func() error { _, err := s.UpdateGroup(g1.ID, GroupUpdate{Description: &long}); return err }},
		{name: "update an unknown group", kind: fault.NotFound, code: fault.CodeUUIDInvalid,
			call: func() error { _, err := s.UpdateGroup("nope", GroupUpdate{Add: []string{v}}); return err }},
		{name: "snapshot a group with a busy member", setup: busy(m2), kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error { _, err := s.SnapshotGroup(NewGroupSnapshot{Group: g1.ID}); return err }},
		{name: "snapshot a group, with a long name", kind: fault.Invalid, code: fault.CodeInvalidValue,
			call: func() error { _, err := s.SnapshotGroup(NewGroupSnapshot{Group: g1.ID, Name: long}); return err }},
		{name: "snapshot an unknown group", kind: fault.NotFound, code: fault.CodeUUIDInvalid,
			call: func() error { _, err := s.SnapshotGroup(NewGroupSnapshot{Group: "nope"}); return err }},
		{name: "delete a group with a group snapshot", kind: fault.Invalid, code: fault.CodeInvalidGroup,
			call: func() error { return s.DeleteGroup(g1.ID, false, "") }},
		{name: "force-delete a group with a group snapshot", kind: fault.Invalid, code: fault.CodeInvalidGroup,
			call: func() error { return s.DeleteGroup(g1.ID, true, "") }},
		{name: "delete a group with members", kind: fault.Invalid, code: fault.CodeInvalidGroup,
			call: func() error { return s.DeleteGroup(g2.ID, false, "") }},
		{name: "force-delete a group with an attached member", setup: attached(n2), kind: fault.Conflict, code: fault.CodeVDIInUse,
			call: func() error { return s.DeleteGroup(g2.ID, true, "") }},
		{name: "force-delete a group with a member with a snapshot", setup: withSnapshot(n2),
			kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error { return s.DeleteGroup(g2.ID, true, "") }},
		{name: "force-delete a group with a busy member", setup: busy(n1), kind: fault.Conflict, code: fault.CodeOtherOperation,
			call: func() error { return s.DeleteGroup(g2.ID, true, "") }},
		{name: "delete an unknown group", kind: fault.NotFound, code: fault.CodeUUIDInvalid,
			call: func() error { return s.DeleteGroup("nope", true, "") }},
		{name: "delete a group snapshot with an attached snapshot", setup: attached(c1m),
			kind: fault.Invalid, code: fault.CodeInvalidGroupSnapshot,
			call: func() error { return s.DeleteGroupSnapshot(c1.ID, "") }},
		{name: "delete an unknown group snapshot", kind: fault.NotFound, code: fault.CodeUUIDInvalid,
			call: func() error { return s.DeleteGroupSnapshot("nope", "") }},
		{name: "a group from no source", kind: fault.Invalid, code: fault.CodeInvalidGroup,
			call: func() error { _, err := s.CreateGroupFromSource(GroupFromSource{Name: "x"}); return err }},
		{name: "a group from two sources", kind: fault.Invalid, code: fault.CodeInvalidGroup,
			call: func() error {
				_, err := s.CreateGroupFromSource(GroupFromSource{FromSnapshot: c1.ID, FromGroup: g1.ID})
				return err
			}},
		{name: "a group from an unknown group snapshot", kind: fault.NotFound, code: fault.CodeUUIDInvalid,
			call: func() error { _, err := s.CreateGroupFromSource(GroupFromSource{FromSnapshot: "nope"}); return err }},
		{name: "a group from an unknown group", kind: fault.NotFound, code: fault.CodeUUIDInvalid,
			call: func() error { _, err := s.CreateGroupFromSource(GroupFromSource{FromGroup: "nope"}); return err }},
		{name: "a group from an empty group", kind: fault.Invalid, code: fault.CodeInvalidGroup,
			call: func() error { _, err := s.CreateGroupFromSource(GroupFromSource{FromGroup: g3.ID}); return err }},
		{name: "a group from a group with a busy member", setup: busy(m2), kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error { _, err := s.CreateGroupFromSource(GroupFromSource{FromGroup: g1.ID}); return err }},
		{name: "a group from a group snapshot with a busy snapshot", setup: busy(c1m), kind: fault.Invalid, code: fault.CodeInvalidVolume,
			call: func() error { _, err := s.CreateGroupFromSource(GroupFromSource{FromSnapshot: c1.ID}); return err }},
		{name: "destroy a member", kind: fault.Conflict, code: fault.CodeOperationNotAllowed,
			call: func() error { return s.Destroy(m1, "") }},
		{name: "forget a member", kind: fault.Conflict, code: fault.CodeOperationNotAllowed,
			call: func() error { return s.Forget(m1, "") }},
		{name: "migrate a member", kind: fault.Conflict, code: fault.CodeOperationNotAllowed,
			call: func() error { _, err := s.StartMigration(m1, "slow", "task", ""); return err }},
		{name: "destroy a member snapshot", kind: fault.Conflict, code: fault.CodeOperationNotAllowed,
			call: func() error { return s.Destroy(c1m, "") }},
		{name: "forget a member snapshot", kind: fault.Conflict, code: fault.CodeOperationNotAllowed,
			call: func() error { return s.Forget(c1m, "") }},
		{name: "data_destroy a member snapshot", kind: fault.Conflict, code: fault.CodeOperationNotAllowed,
			call: func() error { _, err := s.DataDestroy(c1m, ""); return err }},
		{name: "delete a vPool a group uses", kind: fault.Conflict, code: fault.CodeOperationNotAllowed,
			call: func() error { return s.DeletePool("fast") }},
	} {
		undo := func() {}
		if tc.setup != nil {
			undo = tc.setup()
		}
		before := groupState(t, s, h.store)
		count := s.Count()
		err := tc.call()
		after, countAfter := groupState(t, s, h.store), s.Count()
		undo()
		wantFault(t, tc.name, err, tc.kind, tc.code)
		if before != after {
			t.Errorf("%s: refused (%v), but the state changed:\nbefore:\n%s\nafter:\n%s", tc.name, err, before, after)
		}
		if countAfter != count {
			t.Errorf("%s: %d volumes before, %d after", tc.name, count, countAfter)
		}
	}
	checkGroupInvariants(t, s)
}

// --- members go with their group -----------------------------------------------

// TestGroupMembersCannotGoAlone: a member and a group snapshot's snapshot
// are refused destroy and forget (OPERATION_NOT_ALLOWED); once the volume
// is out of the group, it can be destroyed.
func TestGroupMembersCannotGoAlone(t *testing.T) {
	h := newHarness(t)
	s := h.s
	g := newGroup(t, s, "g", "local")
	m := newVDI(t, s, CreateRequest{Group: g.ID})
	other := newVDI(t, s, CreateRequest{Group: g.ID})
	c, err := s.SnapshotGroup(NewGroupSnapshot{Group: g.ID})
	if err != nil {
		t.Fatal(err)
	}
	var msnap string
	for _, id := range c.Members {
		if mustGet(t, s, id).Info.SnapshotOf == m {
			msnap = id
		}
	}
	if msnap == "" {
		t.Fatalf("group snapshot %+v has no snapshot of %s", c, m)
	}
	for _, id := range []string{m, msnap} {
		wantFault(t, "destroy "+id, s.Destroy(id, ""), fault.Conflict, fault.CodeOperationNotAllowed)
		wantFault(t, "forget "+id, s.Forget(id, ""), fault.Conflict, fault.CodeOperationNotAllowed)
		mustGet(t, s, id)
		if _, err := h.store.Volume(id); err != nil {
			t.Fatalf("volume %s after the refusals: %v", id, err)
		}
	}

	if _, err := s.UpdateGroup(g.ID, GroupUpdate{Remove: []string{m}}); err != nil {
		t.Fatal(err)
	}
	// Out of the group, m may move, but not while its snapshot of the
	// group snapshot would move with it.
	newPool(t, s, "elsewhere")
	mig, err := s.StartMigration(m, "elsewhere", "task", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = mig.Run()
	wantFault(t, "migrate "+m, err, fault.Conflict, fault.CodeOperationNotAllowed)
	if got := mustGet(t, s, msnap).Info.Pool; got != g.Pools[0] {
		t.Fatalf("the group snapshot's member moved to %s", got)
	}
	if err := s.Destroy(m, ""); err != nil {
		t.Fatalf("destroy after leaving the group: %v", err)
	}
	wantGone(t, s, h.store, m)
	wantFault(t, "destroy "+other, s.Destroy(other, ""), fault.Conflict, fault.CodeOperationNotAllowed)
	// The group snapshot's snapshot still goes with its group snapshot.
	wantFault(t, "destroy "+msnap, s.Destroy(msnap, ""), fault.Conflict, fault.CodeOperationNotAllowed)
	if err := s.DeleteGroupSnapshot(c.ID, ""); err != nil {
		t.Fatal(err)
	}
	wantGone(t, s, h.store, msnap)
	checkGroupInvariants(t, s)
}

// TestGroupShowsTheCallInFlight: while a call on a group waits for a
// member (whose lock a call holds across its commit), the group shows
// updating; a second call waits for the first rather than failing, then
// sees what it did.
func TestGroupShowsTheCallInFlight(t *testing.T) {
	h := newHarness(t)
	s := h.s
	g := newGroup(t, s, "g", "local")
	m := newVDI(t, s, CreateRequest{Group: g.ID})
	e := s.entry(m)
	e.mu.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			e.mu.Unlock()
		}
	}
	t.Cleanup(unlock)
	snapped, deleted := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := s.SnapshotGroup(NewGroupSnapshot{Group: g.ID})
		snapped <- err
	}()
	testwait.Until(t, "the group to show updating", func() bool {
		gg, err := s.Group(g.ID)
		return err == nil && gg.Status == StatusUpdating
	})
	go func() { deleted <- s.DeleteGroup(g.ID, true, "") }()
	select {
	case err := <-deleted:
		t.Fatalf("a delete answered (%v) while a group snapshot was being taken", err)
	case <-time.After(50 * time.Millisecond):
	}
	if got := mustGroup(t, s, g.ID).Status; got != StatusUpdating {
		t.Fatalf("status %s while the group snapshot waits", got)
	}
	unlock()
	if err := testwait.Recv(t, snapped, "the group snapshot"); err != nil {
		t.Fatal(err)
	}
	// The delete ran after it, and found the group snapshot.
	wantFault(t, "the delete", testwait.Recv(t, deleted, "the delete"), fault.Invalid, fault.CodeInvalidGroup)
	if got := mustGroup(t, s, g.ID); got.Status != StatusAvailable || len(got.Snapshots) != 1 || !slices.Equal(got.Members, []string{m}) {
		t.Fatalf("group afterwards: %+v", got)
	}
	checkGroupInvariants(t, s)
}

// --- restart -----------------------------------------------------------------

// TestGroupsSurviveRestart closes the service and the store and reopens
// both from the same directory: groups, group snapshots, memberships and
// statuses are exactly as before, and they still rule.
func TestGroupsSurviveRestart(t *testing.T) {
	h := newDiskHarness(t)
	s := h.s
	fast := newPool(t, s, "fast")
	g1, err := s.CreateGroup(NewGroup{Name: "g1", Description: "first", Pools: []string{"local", fast.GUID}, Owner: "p",
		Surfaces: map[string][]byte{"openstack": []byte(`{"az":"nova"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	empty := newGroup(t, s, "empty", "fast")
	m1 := newVDI(t, s, CreateRequest{Group: g1.ID, Xen: XenAttrs{NameLabel: "m1"}})
	m2 := newVDI(t, s, CreateRequest{Pool: "fast", Group: g1.ID, Xen: XenAttrs{NameLabel: "m2"}})
	left := newVDI(t, s, CreateRequest{Group: g1.ID, Xen: XenAttrs{NameLabel: "left"}})
	writeData(t, s, m1, "m1-1")
	writeData(t, s, m2, "m2-1")
	c1, err := s.SnapshotGroup(NewGroupSnapshot{Group: g1.ID, Name: "c1", Description: "one"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateGroup(g1.ID, GroupUpdate{Remove: []string{left}}); err != nil {
		t.Fatal(err)
	}
	writeData(t, s, m1, "m1-2")
	c2, err := s.SnapshotGroup(NewGroupSnapshot{Group: g1.ID, Name: "c2"})
	if err != nil {
		t.Fatal(err)
	}
	g2, err := s.CreateGroupFromSource(GroupFromSource{Name: "g2", FromSnapshot: c1.ID})
	if err != nil {
		t.Fatal(err)
	}
	c3, err := s.SnapshotGroup(NewGroupSnapshot{Group: g2.ID, Name: "c3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c1.Members) != 3 || len(c2.Members) != 2 || len(g2.Members) != 3 || len(c3.Members) != 3 {
		t.Fatalf("c1 %v, c2 %v, g2 %v, c3 %v: want 3, 2, 3 and 3 members", c1.Members, c2.Members, g2.Members, c3.Members)
	}
	gone, err := s.SnapshotGroup(NewGroupSnapshot{Group: g1.ID, Name: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteGroupSnapshot(gone.ID, ""); err != nil {
		t.Fatal(err)
	}
	deleted := newGroup(t, s, "deleted", "local")
	newVDI(t, s, CreateRequest{Group: deleted.ID})
	if err := s.DeleteGroup(deleted.ID, true, ""); err != nil {
		t.Fatal(err)
	}
	checkGroupInvariants(t, s)
	before := groupState(t, s, h.store)
	groupsBefore, snapsBefore := s.Groups(), s.GroupSnapshots()
	data := map[string]string{}
	for _, id := range s.Find(nil) {
		data[id] = readData(t, s, id)
	}

	h.close()
	h.open()
	s = h.s

	if after := groupState(t, s, h.store); after != before {
		t.Fatalf("after a restart the state differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	byID := func(gs []Group) map[string]Group {
		m := map[string]Group{}
		for _, g := range gs {
			m[g.ID] = g
		}
		return m
	}
	gb, ga := byID(groupsBefore), byID(s.Groups())
	if len(ga) != 3 || len(gb) != 3 {
		t.Fatalf("groups before %d, after %d, want 3", len(gb), len(ga))
	}
	for id, b := range gb {
		a := ga[id]
		jb, _ := json.Marshal(b)
		ja, _ := json.Marshal(a)
		if !bytes.Equal(ja, jb) || !slices.Equal(a.Members, b.Members) || !slices.Equal(a.Snapshots, b.Snapshots) ||
			a.Status != StatusAvailable {
			t.Fatalf("group %s before %s %v %v, after %s %v %v", id, jb, b.Members, b.Snapshots, ja, a.Members, a.Snapshots)
		}
	}
	if len(s.GroupSnapshots()) != len(snapsBefore) || len(snapsBefore) != 3 {
		t.Fatalf("group snapshots before %d, after %d, want 3", len(snapsBefore), len(s.GroupSnapshots()))
	}
	for _, cb := range snapsBefore {
		ca := mustGroupSnapshot(t, s, cb.ID)
		if !slices.Equal(ca.Members, cb.Members) || ca.Status != StatusAvailable || ca.Group != cb.Group || ca.Name != cb.Name {
			t.Fatalf("group snapshot before %+v, after %+v", cb, ca)
		}
	}
	if got := mustGroup(t, s, g1.ID); !slices.Equal(got.Members, slices.Sorted(slices.Values([]string{m1, m2}))) ||
		!slices.Equal(got.Snapshots, slices.Sorted(slices.Values([]string{c1.ID, c2.ID}))) || string(got.Surfaces["openstack"]) != `{"az":"nova"}` {
		t.Fatalf("g1 after a restart: %+v", got)
	}
	if got := mustGroup(t, s, empty.ID); len(got.Members) != 0 || len(got.Snapshots) != 0 {
		t.Fatalf("the empty group after a restart: %+v", got)
	}
	if _, ferr := s.Group(deleted.ID); ferr == nil {
		t.Fatal("a deleted group came back")
	}
	if _, ferr := s.GroupSnapshot(gone.ID); ferr == nil {
		t.Fatal("a deleted group snapshot came back")
	}
	for id, want := range data {
		if got := readData(t, s, id); got != want {
			t.Fatalf("VDI %s holds %q after a restart, %q before", id, got, want)
		}
	}
	checkGroupInvariants(t, s)

	// The rules hold as before.
	wantFault(t, "destroy a member", s.Destroy(m1, ""), fault.Conflict, fault.CodeOperationNotAllowed)
	wantFault(t, "destroy a member snapshot", s.Destroy(c3.Members[0], ""), fault.Conflict, fault.CodeOperationNotAllowed)
	wantFault(t, "delete g1", s.DeleteGroup(g1.ID, true, ""), fault.Invalid, fault.CodeInvalidGroup)
	if err := s.Destroy(left, ""); err != nil {
		t.Fatalf("destroy the volume that left the group: %v", err)
	}
	for _, c := range []GroupSnapshot{c1, c2, c3} {
		if err := s.DeleteGroupSnapshot(c.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []Group{g1, g2, empty} {
		if err := s.DeleteGroup(g.ID, true, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Count(); n != 0 {
		t.Fatalf("%d volumes left after deleting everything", n)
	}
	final := groupState(t, s, h.store)
	h.close()
	h.open()
	if gs, cs, n := h.s.Groups(), h.s.GroupSnapshots(), h.s.Count(); len(gs)+len(cs)+n != 0 {
		t.Fatalf("after deleting everything and a restart: groups %v, group snapshots %v, %d volumes\nbefore the restart:\n%s\nafter:\n%s",
			gs, cs, n, final, groupState(t, h.s, h.store))
	}
}

// --- point in time -------------------------------------------------------------

// TestGroupSnapshotsArePointInTime writes sequence numbers to three members,
// n to disk 0, then 1, then 2, each write acknowledged before the next,
// while the group is snapshotted again and again: every group snapshot is
// one instant, so disk k never holds a newer number than disk k-1, and disk
// 0 is at most one ahead of disk 2.
func TestGroupSnapshotsArePointInTime(t *testing.T) {
	h := newHarness(t)
	s := h.s
	g := newGroup(t, s, "pit", "local")
	ids := make([]string, 3)
	vbds := make([]*VBD, 3)
	for k := range ids {
		ids[k] = newVDI(t, s, CreateRequest{Group: g.ID, Xen: XenAttrs{NameLabel: fmt.Sprint("disk", k)}})
	}
	for k, id := range ids {
		b, err := s.Attach(id, "writer", true)
		if err != nil {
			t.Fatal(err)
		}
		vbds[k] = b
	}

	stop := make(chan struct{})
	done := make(chan error, 1)
	var written atomic.Uint64 // the last number on all three disks
	go func() {
		blk := make([]byte, blockstore.BlockSize)
		for n := uint64(1); ; n++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			binary.BigEndian.PutUint64(blk, n)
			for k, b := range vbds {
				if err := b.Disk.Write(0, blk, 0); err != nil {
					done <- fmt.Errorf("write %d to disk %d: %w", n, k, err)
					return
				}
			}
			written.Store(n)
		}
	}()
	var writerErr error
	stopWriter := sync.OnceFunc(func() {
		close(stop)
		writerErr = testwait.Recv(t, done, "the writer to stop")
	})
	t.Cleanup(func() { // before the harness closes the store
		stopWriter()
		for _, b := range vbds {
			b.Close()
		}
	})
	testwait.Until(t, "the writer to start", func() bool { return written.Load() > 0 })

	readSeq := func(id string) uint64 {
		b, err := s.Attach(id, "reader", false)
		if err != nil {
			t.Fatalf("attach %s: %v", id, err)
		}
		defer b.Close()
		blk := make([]byte, blockstore.BlockSize)
		if _, err := b.Disk.ReadAt(blk, 0); err != nil {
			t.Fatalf("read %s: %v", id, err)
		}
		return binary.BigEndian.Uint64(blk)
	}
	rounds, torn, changed := 0, 0, 0
	var last uint64
	deadline := time.Now().Add(3 * time.Second)
	for rounds < 80 || (rounds < 400 && time.Now().Before(deadline)) {
		rounds++
		c, err := s.SnapshotGroup(NewGroupSnapshot{Group: g.ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Members) != 3 {
			t.Fatalf("group snapshot of %d members, want 3", len(c.Members))
		}
		seq := make([]uint64, 3)
		seen := 0
		for _, sid := range c.Members {
			v := mustGet(t, s, sid)
			k := slices.Index(ids, v.Info.SnapshotOf)
			if k < 0 {
				t.Fatalf("member snapshot %s of %s, not of a member", sid, v.Info.SnapshotOf)
			}
			seq[k] = readSeq(sid)
			seen |= 1 << k
		}
		if seen != 7 {
			t.Fatalf("group snapshot %v does not hold one snapshot of each disk", c.Members)
		}
		if seq[1] > seq[0] || seq[2] > seq[1] || seq[0] > seq[2]+1 {
			t.Fatalf("round %d: group snapshot %s holds %v (disk 0, 1, 2): not one point in time", rounds, c.ID, seq)
		}
		if seq[0] < last {
			t.Fatalf("round %d: disk 0 holds %d, an earlier group snapshot %d", rounds, seq[0], last)
		}
		if seq[0] != seq[2] {
			torn++
		}
		if seq[0] != last {
			changed++
		}
		last = seq[0]
		if err := s.DeleteGroupSnapshot(c.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	stopWriter()
	if writerErr != nil {
		t.Fatal(writerErr)
	}
	t.Logf("%d group snapshots, %d taken between two writes of one round, up to number %d", rounds, torn, written.Load())
	if changed < rounds/5 {
		t.Fatalf("the writer moved on between only %d of %d group snapshots: the test saw no concurrency", changed, rounds)
	}
}

// --- concurrency -----------------------------------------------------------------

// TestGroupCallsConcurrently runs updates, group snapshots and their
// deletes, groups made from sources and deleted, and creates and destroys
// of other VDIs, from several goroutines at once: nothing deadlocks (the
// wait is bounded), every refusal is a fault of the expected kinds, and the
// final state is consistent, in memory and as the store has it.
func TestGroupCallsConcurrently(t *testing.T) {
	h := newHarness(t)
	s := h.s
	g1 := newGroup(t, s, "g1", "local")
	g2 := newGroup(t, s, "g2", "local")
	groupIDs := []string{g1.ID, g2.ID}

	var mu sync.Mutex // guards pool
	var pool []string // live VDIs the goroutines add, remove and destroy
	for i := range 10 {
		req := CreateRequest{}
		switch {
		case i < 3:
			req.Group = g1.ID
		case i < 5:
			req.Group = g2.ID
		}
		pool = append(pool, newVDI(t, s, req))
	}
	pick := func(rng *rand.Rand, n int) []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for range n {
			if len(pool) > 0 {
				out = append(out, pool[rng.IntN(len(pool))])
			}
		}
		return out
	}

	dur := 1500 * time.Millisecond
	if testing.Short() {
		dur = 300 * time.Millisecond
	}
	deadline := time.Now().Add(dur)
	errs := make(chan error, 64)
	report := func(what string, err error, allowed ...string) {
		if err == nil {
			return
		}
		if f, ok := fault.As(err); ok && f.Kind != fault.Internal && slices.Contains(allowed, f.Code) {
			return
		}
		select {
		case errs <- fmt.Errorf("%s: %w", what, err):
		default:
		}
	}
	var wg sync.WaitGroup
	var calls atomic.Int64
	worker := func(seed uint64, fn func(rng *rand.Rand)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 7))
			for time.Now().Before(deadline) {
				fn(rng)
				calls.Add(1)
			}
		}()
	}
	// Updates adding and removing several VDIs at once, in no order.
	for seed := range uint64(4) {
		worker(seed, func(rng *rand.Rand) {
			u := GroupUpdate{Add: pick(rng, 1+rng.IntN(3)), Remove: pick(rng, rng.IntN(3))}
			u.Remove = slices.DeleteFunc(u.Remove, func(id string) bool { return slices.Contains(u.Add, id) })
			if len(u.Add)+len(u.Remove) == 0 {
				return
			}
			_, err := s.UpdateGroup(groupIDs[rng.IntN(2)], u)
			report("update", err, fault.CodeInvalidVolume)
		})
	}
	for seed := range uint64(2) {
		worker(10+seed, func(rng *rand.Rand) {
			_, err := s.SnapshotGroup(NewGroupSnapshot{Group: groupIDs[rng.IntN(2)]})
			report("snapshot group", err)
		})
	}
	worker(20, func(rng *rand.Rand) {
		cs := s.GroupSnapshots()
		if len(cs) == 0 {
			time.Sleep(time.Millisecond)
			return
		}
		c := cs[rng.IntN(len(cs))]
		report("delete group snapshot", s.DeleteGroupSnapshot(c.ID, ""), fault.CodeUUIDInvalid)
		if len(c.Members) > 0 { // a member snapshot goes only with its group snapshot
			err := s.Destroy(c.Members[0], "")
			if err == nil {
				err = errors.New("destroyed")
			}
			report("destroy a member snapshot", err, fault.CodeOperationNotAllowed, fault.CodeUUIDInvalid)
		}
	})
	// Creates and destroys: the destroys of VDIs that are not members
	// succeed, members are refused.
	worker(30, func(rng *rand.Rand) {
		mu.Lock()
		n := len(pool)
		mu.Unlock()
		if n < 8 && rng.IntN(2) == 0 { // a few VDIs, so that the calls meet on them
			id, err := s.Create(CreateRequest{Size: 4 << 20})
			report("create", err)
			if err == nil {
				mu.Lock()
				pool = append(pool, id.Info.ID)
				mu.Unlock()
			}
			return
		}
		ids := pick(rng, 1)
		if len(ids) == 0 {
			return
		}
		err := s.Destroy(ids[0], "")
		report("destroy", err, fault.CodeOperationNotAllowed)
		if err == nil {
			mu.Lock()
			pool = slices.DeleteFunc(pool, func(id string) bool { return id == ids[0] })
			mu.Unlock()
		}
	})
	worker(31, func(rng *rand.Rand) { // a VDI nobody else sees: never refused
		v, err := s.Create(CreateRequest{Size: 4 << 20})
		report("create", err)
		if err != nil {
			return
		}
		snap, err := s.Snapshot(v.Info.ID, nil, "")
		report("snapshot", err)
		if err == nil {
			report("destroy a snapshot", s.Destroy(snap.Info.ID, ""))
		}
		report("destroy", s.Destroy(v.Info.ID, ""))
	})
	// Groups made from a group, then deleted with their members.
	worker(40, func(rng *rand.Rand) {
		ng, err := s.CreateGroupFromSource(GroupFromSource{FromGroup: groupIDs[rng.IntN(2)]})
		report("group from a group", err, fault.CodeInvalidGroup)
		if err == nil {
			report("delete the group made", s.DeleteGroup(ng.ID, true, ""))
		}
	})

	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	testwait.RecvWithin(t, finished, dur+testwait.Limit, "the concurrent calls to finish (a deadlock?)")
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d calls", calls.Load())
	checkGroupInvariants(t, s)
	for _, g := range s.Groups() {
		if g.ID != g1.ID && g.ID != g2.ID {
			t.Errorf("group %s left over", g.ID)
		}
	}

	// The index is what the store holds: a restart rebuilds the same.
	before := groupState(t, s, h.store)
	h.close()
	h.open()
	if after := groupState(t, h.s, h.store); after != before {
		t.Fatalf("after a restart the state differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	checkGroupInvariants(t, h.s)
}
