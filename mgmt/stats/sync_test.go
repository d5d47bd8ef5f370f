package stats

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/vdiskd/vdiskd/mgmt/kv"
)

// fakeDaemon is what the service reads: vDisks by id, with counters.
type fakeDaemon struct {
	disks map[string]float64 // id -> read_operations
	pools []string
}

func (f *fakeDaemon) resources(t string) []string {
	switch t {
	case TypeVDisk:
		var ids []string
		for id := range f.disks {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return ids
	case TypeVPool:
		return f.pools
	}
	return []string{"node-1"}
}

func (f *fakeDaemon) read(t, id string, _ bool) (map[string]float64, bool) {
	switch t {
	case TypeVDisk:
		v, ok := f.disks[id]
		return map[string]float64{"read_operations": v, "data_read": 4096 * v}, ok
	case TypeVPool:
		return map[string]float64{"read_operations": 1}, slices.Contains(f.pools, id)
	}
	return map[string]float64{"nbd_read_latency_p50": 0.001}, id == "node-1"
}

// newTestService opens a service on an in-memory database with a clock
// the test moves.
func newTestService(t *testing.T, now *time.Time, pageSize int) (*Service, *fakeDaemon, func() *Service) {
	t.Helper()
	db, err := kv.Open("db", vfs.NewMem())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fakeDaemon{disks: map[string]float64{"d1": 0, "d2": 0}, pools: []string{"p1"}}
	open := func() *Service {
		s, err := New(Options{DB: db, Now: func() time.Time { return *now }, Resources: f.resources, Read: f.read,
			PageSize: pageSize, TombstoneRetention: time.Hour, Metrics: testMetrics})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return open(), f, open
}

// testMetrics are two of the OVS counters.
var testMetrics = []Metric{{"read_operations", "NUMBER", "reads"}, {"write_operations", "NUMBER", "writes"},
	{"data_read", "BYTE", "bytes read"}, {"data_written", "BYTE", "bytes written"}}

func ptr[T any](v T) *T { return &v }

// A client keeping a cache by repeated cache/sync calls, each from the
// end of the previous one, through random creates, patches and deletes
// (several in one second, syncs between them, small pages, restarts),
// always holds exactly what GET acq-specs lists.
func TestCacheSyncModel(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			now := time.Unix(1_800_000_000, 0)
			s, _, reopen := newTestService(t, &now, 3)
			rng := rand.New(rand.NewPCG(seed, 19))
			cache := map[string]Spec{}
			var last int64 // the end of the client's last sync
			synced := false
			sync := func(toNow bool) {
				t.Helper()
				start := last
				if !synced {
					start = 0
				}
				end := now.Unix() - int64(rng.IntN(2)) // now, or a second back
				if toNow {
					end = now.Unix()
				}
				end = max(end, start)
				if !synced {
					clear(cache)
				}
				page := ""
				for pages := 0; ; pages++ {
					if pages > 1000 {
						t.Fatal("sync pages never end")
					}
					var r SyncResult
					var err error
					if page == "" {
						r, err = s.Sync(start, &end, "")
					} else {
						r, err = s.Sync(0, nil, page)
					}
					if err != nil {
						t.Fatal(err)
					}
					if len(r.Created)+len(r.Updated)+len(r.Deleted) > 3 {
						t.Fatalf("a page of %d", len(r.Created)+len(r.Updated)+len(r.Deleted))
					}
					if start == 0 && len(r.Updated)+len(r.Deleted) > 0 {
						t.Fatal("a full sync answered updates or deletions")
					}
					for _, sp := range r.Created {
						cache[sp.ID] = sp
					}
					for _, sp := range r.Updated {
						cache[sp.ID] = sp
					}
					for _, id := range r.Deleted {
						delete(cache, id)
					}
					if page = r.Next; page == "" {
						break
					}
				}
				last, synced = end, true
			}
			check := func(step int) {
				t.Helper()
				sync(true)
				var all []Spec
				for page := ""; ; {
					sp, next, err := s.List(page)
					if err != nil {
						t.Fatal(err)
					}
					all = append(all, sp...)
					if page = next; page == "" {
						break
					}
				}
				want := map[string]Spec{}
				for _, sp := range all {
					want[sp.ID] = sp
				}
				if !reflect.DeepEqual(want, cache) {
					var diff []string
					for id, w := range want {
						if c, ok := cache[id]; !ok || !reflect.DeepEqual(c, w) {
							diff = append(diff, fmt.Sprintf("%s: cache %v %q %d %s, server %q %d %s", id, ok, c.Memo, c.Interval, c.Status, w.Memo, w.Interval, w.Status))
						}
					}
					for id := range cache {
						if _, ok := want[id]; !ok {
							diff = append(diff, id+": only in the cache")
						}
					}
					t.Fatalf("step %d (now %d, last sync end %d): %d differences:\n%s", step, now.Unix(), last, len(diff), strings.Join(diff, "\n"))
				}
			}
			var ids []string
			for step := 0; step < 1500; step++ {
				switch op := rng.IntN(10); {
				case op < 3 || len(ids) == 0:
					id, err := s.Create(CreateSpec{Counters: CounterSpec{CidMid: &CidMid{Cid: "vdisk.read_operations"}},
						Resources: []RsrcID{{Type: ptr(TypeVDisk), IDValue: "d1"}}, Interval: ptr(int64(1 + rng.IntN(60)))}, "t")
					if err != nil {
						t.Fatal(err)
					}
					ids = append(ids, id)
				case op < 6:
					id := ids[rng.IntN(len(ids))]
					err := s.Update(id, UpdateSpec{Memo: ptr(fmt.Sprint("memo ", step)), Interval: ptr(int64(1 + rng.IntN(60)))}, "t")
					if err != nil && !isMissing(err) {
						t.Fatal(err)
					}
				case op < 8:
					i := rng.IntN(len(ids))
					if err := s.Delete(ids[i], "t"); err != nil && !isMissing(err) {
						t.Fatal(err)
					}
					ids = slices.Delete(ids, i, i+1)
				case op < 9:
					sync(false)
				default:
					s = reopen()
				}
				// The clock moves by 0 to 2 seconds: many changes share a second.
				now = now.Add(time.Duration(rng.IntN(2500)) * time.Millisecond)
				if step%50 == 49 {
					check(step)
				}
			}
			check(-1)
		})
	}
}

func isMissing(err error) bool { return strings.Contains(err.Error(), "no acq_spec") }

func indexOf(s, sub string) int { return strings.Index(s, sub) }
