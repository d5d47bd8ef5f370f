package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kv"
)

// Options configure a Service. Store and DB are required.
type Options struct {
	Store  *blockstore.Store
	DB     *kv.DB // where vPools are kept
	Logger *slog.Logger
	Now    func() time.Time
	// DetachGrace is how long a call that needs a VDI detached waits for
	// its attachments to go before answering VDI_IN_USE (default 2 s,
	// negative: not at all). An NBD client's hang-up is not acknowledged,
	// so the VBD of a client that has just exited outlives it by a moment,
	// and the next call of a script should not trip over it.
	DetachGrace time.Duration
	// Destroyed hears of every volume the service destroyed (the metrics
	// drop its counters).
	Destroyed func(id string)
}

// DefaultDetachGrace is Options.DetachGrace's default.
const DefaultDetachGrace = 2 * time.Second

// Service is the volume service: the one owner of every VDI invariant. It
// keeps an index of every volume of the store, built once at start and
// changed in step with each store commit, so no call but a list costs
// O(number of VDIs); each VDI has its own lock, so calls on different VDIs
// never wait on each other.
type Service struct {
	opts  Options
	store *blockstore.Store
	log   *slog.Logger

	// mu guards the index maps (not the entries' contents); it is never
	// held across I/O.
	mu       sync.RWMutex
	vdis     map[string]*entry   // every volume of the store, hidden ones too
	children map[string][]string // volume -> volumes frozen from it (snapshots, on_boot bases)
	attached map[string]string   // attachment (VBD) uuid -> its volume
	feed     changeFeed

	pools       pools
	groups      groups
	detachGrace atomic.Int64 // Options.DetachGrace, changeable by tests

	copyHook  atomic.Pointer[func(ctx context.Context)] // tests: runs before each chunk a copy moves
	poolGuard atomic.Pointer[func(guid string) *fault.Error]
}

// entry is one volume in the index.
type entry struct {
	id string
	// mu serialises changes to this volume (it is held across the store
	// commit that makes one) and guards the fields below.
	mu         sync.Mutex
	info       blockstore.VolumeInfo
	attrs      Attrs
	vbds       map[string]*VBD   // attachments, by VBD uuid
	ops        map[string]string // operations in progress: task -> operation
	copyTarget string            // the copy task writing into it
	gone       bool              // destroyed; whoever raced to it sees so
	// shown is !gone and attrs.Lifecycle.Visible(), kept in step under mu
	// and read without it, so a call holding one VDI's lock can ask
	// whether another is shown without taking the other's lock.
	shown atomic.Bool
	// changed is closed (and replaced) whenever vbds or ops shrink, so a
	// call waiting for a detach wakes at once.
	changed chan struct{}
	feed    *changeFeed // the service's, told of every change
}

// New loads the index from the store and the vPools from the database,
// creating the default vPool "local" on first start, then removes what
// tasks interrupted by a crash left behind.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.DB == nil {
		return nil, errors.New("volume: Store and DB are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DetachGrace == 0 {
		opts.DetachGrace = DefaultDetachGrace
	}
	if opts.Destroyed == nil {
		opts.Destroyed = func(string) {}
	}
	s := &Service{opts: opts, store: opts.Store, log: opts.Logger,
		vdis: map[string]*entry{}, children: map[string][]string{}, attached: map[string]string{}}
	s.groups.members = map[string]map[string]bool{}
	if err := s.pools.load(opts.DB, opts.Now); err != nil {
		return nil, err
	}
	for _, info := range s.store.Volumes() {
		a, err := decodeAttrs(info.Attrs)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", info.ID, err)
		}
		s.insert(info, a)
	}
	if err := s.loadGroups(); err != nil {
		return nil, err
	}
	s.detachGrace.Store(int64(opts.DetachGrace))
	s.cleanUpInterrupted()
	return s, nil
}

func newEntry(info blockstore.VolumeInfo, a Attrs) *entry {
	info.Attrs = nil // decoded once, kept as attrs
	e := &entry{id: info.ID, info: info, attrs: a, changed: make(chan struct{})}
	e.shown.Store(a.Lifecycle.Visible())
	return e
}

// insert adds a volume the store has just made to the index. prepare, if
// not nil, marks the entry before anyone else can see it.
func (s *Service) insert(info blockstore.VolumeInfo, a Attrs, prepare ...func(*entry)) *entry {
	e := newEntry(info, a)
	e.feed = &s.feed
	defer e.note()
	for _, p := range prepare {
		p(e)
	}
	s.groups.note(info.ID, Lifecycle{}, a.Lifecycle)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vdis[info.ID] = e
	if info.IsSnapshot() && info.SnapshotOf != "" {
		s.children[info.SnapshotOf] = append(s.children[info.SnapshotOf], info.ID)
	}
	return e
}

// remove drops a volume the store has just destroyed. REQUIRES: e.mu held.
func (s *Service) remove(e *entry) {
	e.gone = true
	e.shown.Store(false)
	defer e.note()
	e.signal()
	s.groups.note(e.id, e.attrs.Lifecycle, Lifecycle{})
	s.mu.Lock()
	delete(s.vdis, e.id)
	if p := e.info.SnapshotOf; e.info.IsSnapshot() && p != "" {
		s.children[p] = slices.DeleteFunc(s.children[p], func(c string) bool { return c == e.id })
		if len(s.children[p]) == 0 {
			delete(s.children, p)
		}
	}
	s.mu.Unlock()
	// Outside the index lock: the listener takes locks of its own.
	s.opts.Destroyed(e.id)
}

// entries lists every volume's entry, hidden ones too, in no order.
func (s *Service) entries() []*entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	es := make([]*entry, 0, len(s.vdis))
	for _, e := range s.vdis {
		es = append(es, e)
	}
	return es
}

// entry finds a volume, hidden or not.
func (s *Service) entry(id string) *entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.vdis[id]
}

// lock finds a visible VDI and locks it. The caller unlocks e.mu.
func (s *Service) lock(id string) (*entry, *fault.Error) {
	e := s.entry(id)
	if e == nil {
		return nil, fault.Missing("VDI", id)
	}
	e.mu.Lock()
	if !e.shown.Load() {
		e.mu.Unlock()
		return nil, fault.Missing("VDI", id)
	}
	return e, nil
}

// lockFor finds a visible VDI, locks it and checks that op may run on it
// now. An op refused only because the VDI is attached waits up to
// Options.DetachGrace for the attachments to go, with the lock released
// meanwhile. The caller unlocks e.mu.
func (s *Service) lockFor(id, op string) (*entry, *fault.Error) {
	e, err := s.lock(id)
	if err != nil {
		return nil, err
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		err := checkOperation(e.opState(), op)
		if err == nil {
			return e, nil
		}
		grace := s.DetachGrace()
		if err.Code != fault.CodeVDIInUse || grace < 0 {
			e.mu.Unlock()
			return nil, err
		}
		if timer == nil {
			timer = time.NewTimer(grace)
		}
		if !e.waitChangeLocked(timer.C) {
			e.mu.Unlock()
			return nil, err
		}
		if !e.shown.Load() { // destroyed or forgotten meanwhile
			e.mu.Unlock()
			return nil, fault.Missing("VDI", id)
		}
	}
}

// DetachGrace is how long calls wait for attachments to go.
func (s *Service) DetachGrace() time.Duration { return time.Duration(s.detachGrace.Load()) }

// SetDetachGrace changes it (tests).
func (s *Service) SetDetachGrace(d time.Duration) { s.detachGrace.Store(int64(d)) }

// waitChangeLocked waits, with e.mu released, until the VDI's attachments
// or operations change or expired fires; false if it fired. REQUIRES:
// e.mu held; it is held again on return.
func (e *entry) waitChangeLocked(expired <-chan time.Time) bool {
	ch := e.changed
	e.mu.Unlock()
	defer e.mu.Lock()
	select {
	case <-ch:
		return true
	case <-expired:
		return false
	}
}

// signal wakes whoever waits for this VDI to change. REQUIRES: e.mu held.
func (e *entry) signal() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// refresh rereads the volume from the store after a commit changed it.
// REQUIRES: e.mu held.
func (s *Service) refresh(e *entry) error {
	info, err := s.store.Volume(e.id)
	if err != nil {
		return err
	}
	info.Attrs = nil
	e.info = info
	e.note()
	return nil
}

// setAttrs stores a VDI's new attributes. REQUIRES: e.mu held.
func (s *Service) setAttrs(e *entry, a Attrs) error {
	info, err := s.store.SetAttrs(e.id, a.encode())
	if err != nil {
		return err
	}
	s.setIndexed(e, info, a)
	return nil
}

// snapshotsOf lists the visible snapshots of a volume, sorted.
func (s *Service) snapshotsOf(id string) []string {
	s.mu.RLock()
	kids := slices.Clone(s.children[id])
	s.mu.RUnlock()
	out := kids[:0]
	for _, k := range kids {
		if e := s.entry(k); e != nil && e.visible() {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// visible reads whether a volume is shown, without its lock.
func (e *entry) visible() bool { return e.shown.Load() }

// family is a volume and every volume frozen from it, transitively.
func (s *Service) family(id string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []string{id}
	for i := 0; i < len(out); i++ {
		out = append(out, s.children[out[i]]...)
	}
	return out
}
