package volume

import (
	"cmp"
	"slices"
	"sync"
)

// The change feed: every change to what a volume's record shows (its
// attributes, the store's description, attachments, running operations,
// its snapshots, existence) and to the vPools notes the id changed under
// the next generation. A surface that mirrors records (XenAPI's events)
// then rereads what changed since it last looked instead of every VDI.
// Writes through an attachment are not changes: physical utilisation moves
// with them, and a mirror rereads everything now and then for it.

// maxChanges bounds the feed; a reader further behind rereads everything.
const maxChanges = 65536

type changeFeed struct {
	mu   sync.Mutex
	gen  uint64
	log  []changed // oldest first: gens log[0].gen .. gen
	wake chan struct{}
}

type changed struct {
	gen uint64
	id  string
}

// note records that ids changed.
func (f *changeFeed) note(ids ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		if id == "" {
			continue
		}
		f.gen++
		f.log = append(f.log, changed{f.gen, id})
	}
	if n := len(f.log) - maxChanges; n > 0 {
		f.log = slices.Delete(f.log, 0, n)
	}
	if f.wake != nil {
		close(f.wake)
		f.wake = nil
	}
}

// ChangesSince answers the ids (VDIs and vPools) that changed after
// generation since, each once, and the generation now. complete is false
// when since is older than the feed remembers (or newer than it has
// been): the caller must reread everything.
func (s *Service) ChangesSince(since uint64) (ids []string, now uint64, complete bool) {
	f := &s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	if since > f.gen || (since < f.gen && (len(f.log) == 0 || f.log[0].gen > since+1)) {
		return nil, f.gen, false
	}
	i, _ := slices.BinarySearchFunc(f.log, since+1, func(c changed, g uint64) int { return cmp.Compare(c.gen, g) })
	seen := map[string]bool{}
	for _, c := range f.log[i:] {
		if !seen[c.id] {
			seen[c.id] = true
			ids = append(ids, c.id)
		}
	}
	return ids, f.gen, true
}

// ChangeNotice is closed at the next change, for a reader that waits.
func (s *Service) ChangeNotice() <-chan struct{} {
	f := &s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.wake == nil {
		f.wake = make(chan struct{})
	}
	return f.wake
}

// note tells the feed this volume changed (and its parent, whose
// snapshots list shows it).
func (e *entry) note() {
	if e.feed != nil {
		e.feed.note(e.id, e.info.SnapshotOf)
	}
}
