package stats

import (
	"testing"
	"time"
)

// The sampler: one point per (counter, resource) at each interval, the
// values read then; an ALL predicate follows new resources; a spec whose
// resources are gone is DISABLED, one past its expiration EXPIRED and
// sampled no more; both are changes a cache sync reports; points past the
// retention go.
func TestSampler(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, f, _ := newTestService(t, &now, 100)
	one, err := s.Create(CreateSpec{Counters: CounterSpec{CidMid: &CidMid{Cid: "vdisk.read_operations"}},
		Resources: []RsrcID{{Type: ptr(TypeVDisk), IDValue: "d1"}}, Interval: ptr(int64(10)),
		Expiration: ptr(now.Add(time.Minute).Unix())}, "t")
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.Create(CreateSpec{Counters: CounterSpec{SetID: ptr("vdisk-io")},
		Resources: []RsrcID{{Type: ptr(TypeVDisk), Predicate: ptr(PredicateAll), IDValue: "*"}}, Interval: ptr(int64(5))}, "t")
	if err != nil {
		t.Fatal(err)
	}
	tick := func(d time.Duration) {
		t.Helper()
		now = now.Add(d)
		if err := s.Tick(); err != nil {
			t.Fatal(err)
		}
	}
	f.disks["d1"] = 7
	tick(0) // both due at once
	f.disks["d1"] = 9
	f.disks["d3"] = 1
	tick(5 * time.Second) // only the 5 s spec
	tick(5 * time.Second) // both
	pts, next, err := s.Points(Query{Cid: "vdisk.read_operations", Rsrcs: []string{"type.VDISK=d1"}})
	if err != nil || next != "" {
		t.Fatal(err, next)
	}
	if len(pts) != 3 || pts[0].Val != 7 || pts[1].Val != 9 || pts[2].Ts-pts[0].Ts != 10 {
		t.Fatalf("d1's read_operations: %+v", pts)
	}
	pts, _, _ = s.Points(Query{Rsrcs: []string{"type.VDISK.uuid=d3"}})
	// d3 came after the first tick: two ticks of the ALL spec, the two
	// counters of vdisk-io the fake answers.
	if len(pts) != 4 {
		t.Fatalf("d3's points: %+v", pts)
	}
	// d1 gone: the EQUAL spec has nothing left.
	delete(f.disks, "d1")
	tick(10 * time.Second)
	if sp, _ := s.Get(one); sp.Status != StatusDisabled || sp.StatusReason == "" {
		t.Fatalf("a spec whose one resource is gone: %+v", sp)
	}
	if sp, _ := s.Get(all); sp.Status != StatusEnabled {
		t.Fatalf("an ALL spec: %+v", sp)
	}
	r, err := s.Sync(now.Add(-11*time.Second).Unix(), nil, "")
	if err != nil || len(r.Updated) != 1 || r.Updated[0].ID != one {
		t.Fatalf("the status change as a sync sees it: %+v %v", r, err)
	}
	// Past its expiration (the default: 100 minutes), the ALL spec is
	// EXPIRED at once, stored so at the next tick, and sampled no more.
	now = now.Add(101 * time.Minute)
	if sp, _ := s.Get(all); sp.Status != StatusExpired {
		t.Fatalf("after its expiration: %+v", sp)
	}
	before, _, _ := s.Points(Query{Start: ptr(int64(0))})
	tick(time.Second)
	tick(10 * time.Second)
	after, _, _ := s.Points(Query{Start: ptr(int64(0))})
	if len(after) != len(before) {
		t.Fatalf("an expired spec was sampled: %d points, then %d", len(before), len(after))
	}
	// Past the retention (24 h), points go.
	tick(25 * time.Hour)
	if pts, _, _ := s.Points(Query{Start: ptr(int64(0))}); len(pts) != 0 {
		t.Fatalf("%d points outlived the retention", len(pts))
	}
}

// Bad specs and queries are refused, naming the field, and change nothing.
func TestSpecRefusals(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, _, _ := newTestService(t, &now, 100)
	ok := CreateSpec{Counters: CounterSpec{CidMid: &CidMid{Cid: "vdisk.data_read"}},
		Resources: []RsrcID{{Type: ptr(TypeVDisk), IDValue: "d1"}}}
	for _, c := range []struct {
		field string
		edit  func(*CreateSpec)
	}{
		{"counters.cid_mid.cid", func(c *CreateSpec) { c.Counters.CidMid.Cid = "vdisk.nope" }},
		{"counters.cid_mid.mid", func(c *CreateSpec) { c.Counters.CidMid.Mid = ptr("2") }},
		{"counters.set_id", func(c *CreateSpec) { c.Counters = CounterSpec{SetID: ptr("nope")} }},
		{"counters", func(c *CreateSpec) { c.Counters = CounterSpec{} }},
		{"counters", func(c *CreateSpec) { c.Counters.CidMid.Cid = "vpool.data_read" }}, // no VPOOL named
		{"resources", func(c *CreateSpec) { c.Resources = nil }},
		{"resources[0].type", func(c *CreateSpec) { c.Resources[0].Type = ptr("VM") }},
		{"resources[0].predicate", func(c *CreateSpec) { c.Resources[0].Predicate = ptr("SOME") }},
		{"resources[0].id_value", func(c *CreateSpec) { c.Resources[0].IDValue = "d9" }},
		{"resources[0].key", func(c *CreateSpec) { c.Resources[0].Key = ptr("VPOOL") }},
		{"interval", func(c *CreateSpec) { c.Interval = ptr(int64(-1)) }},
		{"interval", func(c *CreateSpec) { c.Interval = ptr(int64(3601)) }},
		{"expiration", func(c *CreateSpec) { c.Expiration = ptr(now.Unix() - 1) }},
		{"endpoints", func(c *CreateSpec) { c.Endpoints = []string{"obj-1"} }},
	} {
		cs := ok
		cid := *ok.Counters.CidMid
		cs.Counters = CounterSpec{CidMid: &cid}
		cs.Resources = append([]RsrcID{}, ok.Resources...)
		c.edit(&cs)
		_, err := s.Create(cs, "t")
		if err == nil || !containsField(err.Error(), c.field) {
			t.Errorf("%s: %v", c.field, err)
		}
	}
	if specs, _, _ := s.List(""); len(specs) != 0 {
		t.Fatalf("refusals stored %d specs", len(specs))
	}
	for _, q := range []Query{{Cid: "x"}, {Metric: "x"}, {Types: []string{"VM"}}, {Rsrcs: []string{"VDISK=d1"}},
		{Start: ptr(int64(10)), End: ptr(int64(5))}, {Order: "NEWEST"}, {Page: "!!"}} {
		if _, _, err := s.Points(q); err == nil {
			t.Errorf("query %+v answered", q)
		}
	}
	for _, c := range []struct {
		start int64
		end   *int64
		page  string
	}{{-1, nil, ""}, {10, ptr(int64(5)), ""}, {0, ptr(now.Unix() + 3600), ""}, {0, nil, "bm90IGEgdG9rZW4"}} {
		if _, err := s.Sync(c.start, c.end, c.page); err == nil {
			t.Errorf("sync %+v answered", c)
		}
	}
}

func containsField(msg, field string) bool { return indexOf(msg, field+":") >= 0 }

// A start_epoch older than the deletions kept is refused, telling the
// client to sync in full.
func TestSyncBeyondTombstones(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, _, _ := newTestService(t, &now, 100)
	id, err := s.Create(CreateSpec{Counters: CounterSpec{CidMid: &CidMid{Cid: "node.nbd_read_latency_p99"}},
		Resources: []RsrcID{{Type: ptr(TypeNode), IDValue: "node-1"}}}, "t")
	if err != nil {
		t.Fatal(err)
	}
	start := now.Unix()
	now = now.Add(time.Minute)
	if err := s.Delete(id, "t"); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Sync(start, nil, ""); err != nil || len(r.Deleted) != 1 {
		t.Fatalf("%+v %v", r, err)
	}
	now = now.Add(2 * time.Hour) // the tombstones are kept 1 h here
	if err := s.Tick(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(start, nil, ""); err == nil || indexOf(err.Error(), "full sync") < 0 {
		t.Fatalf("a sync from before the kept deletions: %v", err)
	}
	if r, err := s.Sync(0, nil, ""); err != nil || len(r.Created) != 0 {
		t.Fatalf("a full sync: %+v %v", r, err)
	}
}

// Data points page by the token: every point once, in order, whatever the
// page size.
func TestPointsPaging(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, f, _ := newTestService(t, &now, 1) // pages of 10 points
	f.disks["d3"] = 3
	if _, err := s.Create(CreateSpec{Counters: CounterSpec{SetID: ptr("vdisk-io")},
		Resources: []RsrcID{{Type: ptr(TypeVDisk), Predicate: ptr(PredicateAll), IDValue: "*"}}, Interval: ptr(int64(1))}, "t"); err != nil {
		t.Fatal(err)
	}
	for range 9 {
		if err := s.Tick(); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Second)
	}
	var got []DataPoint
	pages := 0
	for page := ""; ; pages++ {
		pts, next, err := s.Points(Query{Start: ptr(int64(0)), Page: page})
		if err != nil || len(pts) > 10 {
			t.Fatal(err, len(pts))
		}
		got = append(got, pts...)
		if page = next; page == "" {
			break
		}
	}
	// 9 ticks x 3 vDisks x the 2 counters the fake answers.
	if len(got) != 54 || pages != 5 {
		t.Fatalf("%d points in %d pages", len(got), pages+1)
	}
	for i := 1; i < len(got); i++ {
		a, b := got[i-1], got[i]
		if pointKey(a.Ts, a.Cid, a.Rid) >= pointKey(b.Ts, b.Cid, b.Rid) {
			t.Fatalf("points out of order or twice at %d: %+v %+v", i, a, b)
		}
	}
}

// A patch of an expired spec that gives no new expiration changes what it
// gives and leaves it EXPIRED; one with a new expiration enables it.
func TestPatchExpired(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, _, _ := newTestService(t, &now, 100)
	id, err := s.Create(CreateSpec{Counters: CounterSpec{CidMid: &CidMid{Cid: "vdisk.read_operations"}},
		Resources: []RsrcID{{Type: ptr(TypeVDisk), IDValue: "d1"}}, Expiration: ptr(now.Add(time.Minute).Unix())}, "t")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if err := s.Update(id, UpdateSpec{Memo: ptr("later")}, "t"); err != nil {
		t.Fatal(err)
	}
	if sp, _ := s.Get(id); sp.Status != StatusExpired || sp.Memo != "later" {
		t.Fatalf("%+v", sp)
	}
	if err := s.Update(id, UpdateSpec{Expiration: ptr(int64(0))}, "t"); err != nil {
		t.Fatal(err)
	}
	if sp, _ := s.Get(id); sp.Status != StatusEnabled || sp.Expiration != now.Add(DefaultExpiration).Unix() {
		t.Fatalf("%+v", sp)
	}
}

// Ticks and spec changes at once neither deadlock nor race: a call that
// blocks for 5 s fails the test.
func TestTickBesideChanges(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, _, _ := newTestService(t, &now, 100)
	within := func(what string, f func()) {
		t.Helper()
		ended := make(chan struct{})
		go func() { defer close(ended); f() }()
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s blocked 5 s: a deadlock", what)
		}
	}
	changes := make(chan struct{})
	go func() {
		defer close(changes)
		for range 200 {
			id, err := s.Create(CreateSpec{Counters: CounterSpec{SetID: ptr("vdisk-io")},
				Resources: []RsrcID{{Type: ptr(TypeVDisk), Predicate: ptr(PredicateAll), IDValue: "*"}}, Interval: ptr(int64(1))}, "t")
			if err != nil {
				t.Error(err)
				return
			}
			_ = s.Update(id, UpdateSpec{Memo: ptr("m")}, "t")
			_ = s.Delete(id, "t")
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		within("a tick", func() {
			if err := s.Tick(); err != nil {
				t.Error(err)
			}
		})
		select {
		case <-changes:
			return
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the changes did not end in 30 s beside the ticks: a deadlock")
		}
	}
}
