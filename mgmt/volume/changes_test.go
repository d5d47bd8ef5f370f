package volume

import (
	"slices"
	"testing"
)

// The change feed names what changed since a generation, each id once,
// the parent of a new snapshot too, and says when a reader fell behind
// what it keeps.
func TestChangeFeed(t *testing.T) {
	h := newHarness(t)
	s := h.s
	_, start, complete := s.ChangesSince(0)
	if !complete {
		t.Fatalf("a fresh feed from 0 is not complete")
	}
	v, err := s.Create(CreateRequest{Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	id := v.Info.ID
	notice := s.ChangeNotice()
	if _, err := s.EditXen(id, SetNameLabel("a")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-notice:
	default:
		t.Fatal("ChangeNotice was not closed by a change")
	}
	if _, err := s.EditXen(id, AddTag("t")); err != nil {
		t.Fatal(err)
	}
	ids, gen, complete := s.ChangesSince(start)
	if !complete || !slices.Equal(ids, []string{id}) {
		t.Fatalf("after a create and two edits: %v (complete %v), want [%s] once", ids, complete, id)
	}
	snap, err := s.Snapshot(id, nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	ids, gen2, _ := s.ChangesSince(gen)
	if !slices.Contains(ids, snap.Info.ID) || !slices.Contains(ids, id) {
		t.Fatalf("after a snapshot: %v, want the snapshot and its parent", ids)
	}
	if ids, _, complete := s.ChangesSince(gen2); !complete || len(ids) != 0 {
		t.Fatalf("nothing changed: %v %v", ids, complete)
	}
	// A refused edit is no change.
	if _, err := s.EditXen(id, AddToMap(OtherConfig, "k", "v")); err != nil {
		t.Fatal(err)
	}
	_, gen3, _ := s.ChangesSince(gen2)
	if _, err := s.EditXen(id, AddToMap(OtherConfig, "k", "w")); err == nil {
		t.Fatal("a duplicate key was taken")
	}
	if ids, _, _ := s.ChangesSince(gen3); len(ids) != 0 {
		t.Fatalf("a refused edit noted %v", ids)
	}
	// A reader from the future, or further behind than the feed keeps,
	// must reread everything.
	if _, _, complete := s.ChangesSince(gen3 + 100); complete {
		t.Fatal("a generation the feed never had is complete")
	}
	for range maxChanges + 1 {
		s.feed.note(id)
	}
	if _, _, complete := s.ChangesSince(gen3); complete {
		t.Fatal("a reader behind the feed's window is complete")
	}
}
