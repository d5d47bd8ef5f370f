package blockstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vdiskd/vdiskd/internal/testwait"
)

// records lists every record of the store.
func (e *env) records() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	if err := e.s.Records("", func(k string, v []byte) error {
		out[k] = string(v)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// volumeIDs lists every volume of the store.
func (e *env) volumeIDs() string {
	var ids []string
	for _, v := range e.s.Volumes() {
		ids = append(ids, v.ID+"="+string(v.Attrs))
	}
	return fmt.Sprint(ids)
}

// A change that fails any check changes nothing: no volume, no record, no
// attribute.
func TestChangeIsAllOrNothing(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(2))
		e.create("b", mib(2))
		e.write("a", 0, fill(1, 4096))
		if _, err := e.s.Apply(Change{Records: []Record{{Key: "group/g1", Value: []byte("one")}}}); err != nil {
			t.Fatal(err)
		}
		d := e.attach("b")
		before, beforeRecs := e.volumeIDs(), fmt.Sprint(e.records())
		rec := []Record{{Key: "group/g2", Value: []byte("two")}}
		for _, tc := range []struct {
			name string
			c    Change
			want error
		}{
			{"missing source", Change{Snapshots: []SnapshotRequest{{Source: "a", ID: "sa"}, {Source: "zz", ID: "sz"}}, Records: rec}, ErrNotFound},
			{"existing id", Change{Clones: []CloneRequest{{Source: "a", ID: "ca"}, {Source: "b", ID: "a"}}, Records: rec}, ErrExists},
			{"same new id twice", Change{Snapshots: []SnapshotRequest{{Source: "a", ID: "x"}}, Clones: []CloneRequest{{Source: "b", ID: "x"}}}, ErrExists},
			{"attached destroy", Change{Destroys: []string{"a", "b"}, Records: rec}, ErrInUse},
			{"destroyed source", Change{Attrs: []AttrsRequest{{ID: "a", Attrs: []byte("z")}}, Destroys: []string{"a"}}, ErrInvalid},
			{"destroy with snapshot", Change{Snapshots: []SnapshotRequest{{Source: "a", ID: "sa"}}, Destroys: []string{"zz"}}, ErrInvalid},
			{"missing attrs target", Change{Attrs: []AttrsRequest{{ID: "a", Attrs: []byte("z")}, {ID: "zz"}}, Records: rec}, ErrNotFound},
			{"empty record key", Change{Attrs: []AttrsRequest{{ID: "a", Attrs: []byte("z")}}, Records: []Record{{Key: ""}}}, ErrInvalid},
			{"record twice", Change{Records: []Record{{Key: "k", Value: []byte{}}, {Key: "k"}}}, ErrInvalid},
			{"nothing", Change{}, ErrInvalid},
		} {
			if _, err := e.s.Apply(tc.c); !errors.Is(err, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
			if got := e.volumeIDs(); got != before {
				t.Fatalf("%s changed the volumes:\n%s\n%s", tc.name, before, got)
			}
			if got := fmt.Sprint(e.records()); got != beforeRecs {
				t.Fatalf("%s changed the records: %s", tc.name, got)
			}
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		e.reopen()
		if got := e.volumeIDs(); got != before {
			t.Fatalf("after reopen: %s", got)
		}
	})
}

// Every kind of change, several volumes at once, survives a reopen exactly
// as made, records with it.
func TestChangeCommitsEverythingTogether(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(2))
		e.create("b", mib(2))
		e.write("a", 0, fill(1, 4096))
		e.write("b", 0, fill(2, 4096))
		out, err := e.s.Apply(Change{
			Snapshots: []SnapshotRequest{{Source: "a", ID: "sa", Attrs: []byte("snap a")}, {Source: "b", ID: "sb"}},
			Clones:    []CloneRequest{{Source: "a", ID: "ca"}, {Source: "b", ID: "cb", Attrs: []byte("clone b")}},
			Records:   []Record{{Key: "cg/1", Value: []byte("group")}, {Key: "cgsnap/1", Value: []byte("snap")}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Snapshots) != 2 || len(out.Clones) != 2 || out.Clones[1].CloneOf != "b" || out.Snapshots[0].SnapshotOf != "a" {
			t.Fatalf("changed %+v", out)
		}
		e.write("a", 0, fill(3, 4096))
		e.write("b", 0, fill(4, 4096))
		if _, err := e.s.Apply(Change{Attrs: []AttrsRequest{{ID: "a", Attrs: []byte("in cg 1")}, {ID: "b", Attrs: []byte("in cg 1")}},
			Records: []Record{{Key: "cgsnap/1"}}}); err != nil {
			t.Fatal(err)
		}
		e.reopen()
		for id, want := range map[string][]byte{"sa": fill(1, 4096), "ca": fill(1, 4096), "sb": fill(2, 4096), "cb": fill(2, 4096),
			"a": fill(3, 4096), "b": fill(4, 4096)} {
			if got := e.read(id, 0, 4096); !bytes.Equal(got, want) {
				t.Errorf("%s reads %d..., want %d...", id, got[0], want[0])
			}
		}
		if got, want := fmt.Sprint(e.records()), "map[cg/1:group]"; got != want {
			t.Errorf("records %s, want %s", got, want)
		}
		for id, want := range map[string]string{"a": "in cg 1", "b": "in cg 1", "sa": "snap a", "cb": "clone b"} {
			if v, _ := e.s.Volume(id); string(v.Attrs) != want {
				t.Errorf("%s attrs %q, want %q", id, v.Attrs, want)
			}
		}
		// Destroying a group's snapshots together, and the clones.
		if _, err := e.s.Apply(Change{Destroys: []string{"sa", "sb", "ca", "cb"}, Records: []Record{{Key: "cg/1"}}}); err != nil {
			t.Fatal(err)
		}
		if err := e.s.CollectGarbage(); err != nil {
			t.Fatal(err)
		}
		e.reopen()
		if got := e.volumeIDs(); got != "[a=in cg 1 b=in cg 1]" {
			t.Fatalf("volumes %s", got)
		}
		if len(e.records()) != 0 {
			t.Fatalf("records %v", e.records())
		}
		if got := e.read("a", 0, 4096); !bytes.Equal(got, fill(3, 4096)) {
			t.Fatal("a lost its data with its snapshot")
		}
	})
}

func TestRecordsByPrefix(t *testing.T) {
	e := newEnv(t, modes[0])
	var recs []Record
	for _, k := range []string{"cg/1", "cg/2", "cg0", "cgsnap/1", "c", "cg/\xff"} {
		recs = append(recs, Record{Key: k, Value: []byte(k)})
	}
	if _, err := e.s.Apply(Change{Records: recs}); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := e.s.Records("cg/", func(k string, v []byte) error {
		if k != string(v) {
			t.Errorf("%q holds %q", k, v)
		}
		got = append(got, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint([]string{"cg/1", "cg/2", "cg/\xff"}) {
		t.Fatalf("prefix cg/: %q", got)
	}
}

// The point in time of a multi-volume change, under writes: a writer puts
// sequence number n on volume 0, then 1, then 2, each acknowledged before
// the next. In every image a change takes, volume k never holds a number
// newer than volume k-1, and volume 0 is at most one ahead of volume 2.
func TestChangeIsOnePointInTimeUnderWrites(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		const n = 3
		disks := make([]*Disk, n)
		for k := range disks {
			e.create(fmt.Sprint("v", k), mib(1))
			disks[k] = e.attach(fmt.Sprint("v", k))
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		t.Cleanup(func() { stop.Store(true); wg.Wait() }) // before the store closes
		wg.Add(1)
		var written atomic.Uint64
		go func() {
			defer wg.Done()
			buf := make([]byte, BlockSize)
			for seq := uint64(1); !stop.Load(); seq++ {
				binary.LittleEndian.PutUint64(buf, seq)
				for _, d := range disks {
					if err := d.Write(0, buf, 0); err != nil {
						t.Error(err)
						return
					}
				}
				written.Store(seq)
			}
		}()
		testwait.Until(t, "the writer's first round", func() bool { return written.Load() > 0 })
		for round := 0; round < 30; round++ {
			var c Change
			for k := 0; k < n; k++ {
				src := fmt.Sprint("v", k)
				id := fmt.Sprintf("r%d-%s", round, src)
				if round%2 == 0 {
					c.Snapshots = append(c.Snapshots, SnapshotRequest{Source: src, ID: id})
				} else {
					c.Clones = append(c.Clones, CloneRequest{Source: src, ID: id})
				}
			}
			floor := written.Load()
			if _, err := e.s.Apply(c); err != nil {
				t.Fatal(err)
			}
			var seq [n]uint64
			for k := 0; k < n; k++ {
				seq[k] = binary.LittleEndian.Uint64(e.read(fmt.Sprintf("r%d-v%d", round, k), 0, 8))
			}
			for k := 1; k < n; k++ {
				if seq[k] > seq[k-1] {
					t.Fatalf("round %d: volume %d holds %d, newer than volume %d's %d", round, k, seq[k], k-1, seq[k-1])
				}
			}
			if seq[0] > seq[n-1]+1 {
				t.Fatalf("round %d: volume 0 holds %d, more than one ahead of volume %d's %d", round, seq[0], n-1, seq[n-1])
			}
			if seq[n-1] < floor {
				t.Fatalf("round %d: volume %d holds %d, older than %d acknowledged before the change", round, n-1, seq[n-1], floor)
			}
		}
	})
}

// A clone can grow in the commit that makes it; it never shrinks.
func TestCloneGrowsInItsCommit(t *testing.T) {
	e := newEnv(t, modes[0])
	e.create("a", mib(4))
	e.write("a", 0, fill(1, 4096))
	if _, err := e.s.Clone(CloneRequest{Source: "a", ID: "small", Size: mib(2)}); !errors.Is(err, ErrShrink) {
		t.Fatalf("a smaller clone: %v", err)
	}
	if _, err := e.s.Clone(CloneRequest{Source: "a", ID: "huge", Size: MaxSize + 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a clone past MaxSize: %v", err)
	}
	if got := e.volumeIDs(); got != "[a=]" {
		t.Fatalf("refused clones left %s", got)
	}
	c, err := e.s.Clone(CloneRequest{Source: "a", ID: "big", Size: mib(5) + 1})
	if err != nil || c.Size != mib(6) {
		t.Fatalf("grown clone: %+v %v", c, err)
	}
	e.reopen()
	if v, _ := e.s.Volume("big"); v.Size != mib(6) {
		t.Fatalf("after reopen the clone is %d bytes", v.Size)
	}
	if got := e.read("big", 0, 4096); !bytes.Equal(got, fill(1, 4096)) {
		t.Fatal("the grown clone lost its source's data")
	}
	if got := e.read("big", mib(5), 4096); !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatal("the grown part is not zero")
	}
}
