package replication

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kv"
)

// Ends are a relation's two sides: its vPool here and its vPool in the
// backup zone.
type Ends func(rel Relation) (Source, Target, error)

// ReplicatorOptions configure a Replicator.
type ReplicatorOptions struct {
	Registry *Registry
	DB       *kv.DB
	// Members lists the live VDIs of a vPool (guid) with their names.
	Members func(pool string) map[string]string
	Ends    Ends
	Zone    string // this daemon's zone, the origin of what it ships
	// PoolName names a vPool (guid) in the replica snapshots' origin tags.
	PoolName func(guid string) string
	Logger   *slog.Logger
	Now      func() time.Time
	Conns    int // NBD connections per VDI shipped (default 4)
}

// Replicator runs every relation's rounds: a cycle of each VDI of its
// vPool, each interval.
type Replicator struct {
	opts ReplicatorOptions
	log  *slog.Logger

	rounds sync.WaitGroup // the rounds Run started

	mu       sync.Mutex // guards progress and running
	progress map[int]*Progress
	lastTry  map[int]time.Time
	running  map[int]bool
}

// NewReplicator makes a replicator; Run starts its rounds.
func NewReplicator(opts ReplicatorOptions) *Replicator {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Conns <= 0 {
		opts.Conns = 4
	}
	return &Replicator{opts: opts, log: opts.Logger, progress: map[int]*Progress{}, lastTry: map[int]time.Time{},
		running: map[int]bool{}}
}

const stateKeyPrefix = "replica/"

func stateKey(seq int, vdi string) string { return fmt.Sprintf("%s%010d/%s", stateKeyPrefix, seq, vdi) }

// states reads a relation's stored replica states, by VDI.
func (r *Replicator) states(seq int) (map[string]ReplicaState, error) {
	out := map[string]ReplicaState{}
	err := kv.ScanJSON(r.opts.DB, fmt.Sprintf("%s%010d/", stateKeyPrefix, seq), func(_ string, st *ReplicaState) error {
		out[st.VDI] = *st
		return nil
	})
	return out, err
}

// Progress is what the last rounds of relation seq did. Before this
// process ran a round of it, it is read from the stored states: synced if
// every VDI has a replica, the last cycle the oldest of their last ones.
func (r *Replicator) Progress(seq int) Progress {
	r.mu.Lock()
	if p := r.progress[seq]; p != nil {
		defer r.mu.Unlock()
		return *p
	}
	r.mu.Unlock()
	rel, ferr := r.opts.Registry.Get(seq)
	if ferr != nil {
		return Progress{}
	}
	states, err := r.states(seq)
	if err != nil {
		return Progress{LastError: err.Error()}
	}
	return progressOf(r.opts.Members(rel.VPool), states)
}

// progressOf is what stored states say of a relation whose vPool holds
// members.
func progressOf(members map[string]string, states map[string]ReplicaState) Progress {
	var p Progress
	for id := range members {
		if st := states[id]; len(st.Snapshots) > 0 {
			if at := st.Snapshots[len(st.Snapshots)-1].At; p.LastCycle.IsZero() || at.Before(p.LastCycle) {
				p.LastCycle = at
			}
		}
	}
	for _, st := range states {
		p.Bytes += st.Shipped
	}
	// Nothing stored says a round completed (an empty vPool, or none yet).
	p.Synced = allReplicated(members, states) && !p.LastCycle.IsZero()
	return p
}

// allReplicated reports whether every member has a replica holding a
// shipped snapshot.
func allReplicated(members map[string]string, states map[string]ReplicaState) bool {
	for id := range members {
		if st := states[id]; st.Base == "" || len(st.Snapshots) == 0 {
			return false
		}
	}
	return true
}

// Replicas are relation seq's stored replica states, by VDI.
func (r *Replicator) Replicas(seq int) (map[string]ReplicaState, error) { return r.states(seq) }

// Round runs one cycle of every VDI of relation seq's vPool, one VDI after
// another, storing each VDI's state as its cycle completes. A VDI whose
// cycle fails keeps its stored state; the round goes on with the others
// and reports the first failure.
func (r *Replicator) Round(ctx context.Context, seq int) error {
	rel, ferr := r.opts.Registry.Get(seq)
	if ferr != nil {
		return ferr
	}
	r.mu.Lock()
	if r.running[seq] {
		r.mu.Unlock()
		return fmt.Errorf("replication %d: a round is running", seq)
	}
	r.running[seq] = true
	r.lastTry[seq] = r.opts.Now()
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.running, seq)
		r.mu.Unlock()
	}()

	firstErr := r.round(ctx, rel)
	states, err := r.states(seq)
	if err != nil && firstErr == nil {
		firstErr = err
	}
	members := r.opts.Members(rel.VPool)
	p := progressOf(members, states)
	if firstErr == nil {
		// This round itself completed, for an empty vPool too.
		p.Synced = allReplicated(members, states)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p.LastCycle = time.Time{} // this process's own rounds say when
	if old := r.progress[seq]; old != nil {
		p.LastCycle = old.LastCycle
	}
	if firstErr != nil {
		p.LastError = firstErr.Error()
	} else {
		p.LastCycle = r.opts.Now()
	}
	r.progress[seq] = &p
	return firstErr
}

func (r *Replicator) round(ctx context.Context, rel Relation) error {
	src, dst, err := r.opts.Ends(rel)
	if err != nil {
		return fmt.Errorf("replication %d: %w", rel.Seq, err)
	}
	states, err := r.states(rel.Seq)
	if err != nil {
		return err
	}
	members := r.opts.Members(rel.VPool)
	ids := make([]string, 0, len(members))
	for id := range members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var errs []string
	for _, id := range ids {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		stored, ok := states[id]
		if !ok {
			stored = ReplicaState{Seq: rel.Seq, VDI: id}
		}
		from := Origin{Zone: r.opts.Zone, VPool: rel.VPool, Seq: rel.Seq}
		if r.opts.PoolName != nil {
			from.VPoolName = r.opts.PoolName(rel.VPool)
		}
		next, stats, err := Cycle(ctx, stored, from, members[id], src, dst, r.opts.Conns)
		if err != nil {
			r.log.Warn("replication cycle failed", "seq", rel.Seq, "vdi", id, "err", err)
			errs = append(errs, fmt.Sprintf("%s: %v", id, err))
		}
		// Replica snapshots past the retention go (the newest frozen one
		// and the retention before it stay).
		if err == nil {
			var perr error
			if next, perr = Prune(ctx, next, rel.Retention+1, dst); perr != nil {
				r.log.Warn("pruning replica snapshots failed; the next round retries", "seq", rel.Seq, "vdi", id, "err", perr)
			}
		}
		// What the cycle completed stands even if it then failed.
		if next.Base != stored.Base || next.Replica != stored.Replica || len(next.Snapshots) != len(stored.Snapshots) {
			if err := r.opts.DB.Put(stateKey(rel.Seq, id), next); err != nil {
				return fmt.Errorf("replication %d: storing %s's state: %w", rel.Seq, id, err)
			}
		}
		// Only once the state naming the new base is stored do the older
		// bases (and any a cut cycle left) go.
		if err := src.Sweep(rel.Seq, id, next.Base); err != nil {
			r.log.Warn("dropping old replication bases failed", "seq", rel.Seq, "vdi", id, "err", err)
		}
		if err != nil {
			continue
		}
		r.log.Debug("replication cycle", "seq", rel.Seq, "vdi", id, "blocks", stats.Blocks, "bytes", stats.Bytes, "full", stats.Full)
	}
	// VDIs destroyed (or moved out of the vPool) since: their replicas go
	// too; the replica snapshots stay in the backup zone, to recover from.
	for id, st := range states {
		if _, ok := members[id]; ok {
			continue
		}
		if st.Replica != "" {
			if err := dst.Destroy(ctx, st.Replica); err != nil {
				errs = append(errs, fmt.Sprintf("the replica of %s: %v", id, err))
				continue
			}
		}
		if err := r.opts.DB.Delete(stateKey(rel.Seq, id)); err != nil {
			return fmt.Errorf("replication %d: %w", rel.Seq, err)
		}
		if st.Base != "" {
			if err := src.Forget(rel.Seq, st.Base); err != nil {
				r.log.Warn("dropping the base of a VDI gone from the vPool failed", "seq", rel.Seq, "base", st.Base, "err", err)
			}
		}
		r.log.Info("replica of a VDI gone from the vPool destroyed", "seq", rel.Seq, "vdi", id, "replica", st.Replica)
	}
	if len(errs) > 0 {
		return fmt.Errorf("replication %d: %d of %d VDIs failed: %s", rel.Seq, len(errs), len(ids), strings.Join(errs, "; "))
	}
	return nil
}

// Run starts each relation's rounds when they are due (its interval after
// the last try), checking every tick, until ctx ends; then it waits for
// the rounds it started (a cancelled cycle stores nothing). Paused
// relations wait.
func (r *Replicator) Run(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	defer r.rounds.Wait()
	for {
		for _, rel := range r.opts.Registry.List() {
			r.mu.Lock()
			due := !r.running[rel.Seq] && r.opts.Now().Sub(r.lastTry[rel.Seq]) >= time.Duration(rel.Interval)*time.Second
			r.mu.Unlock()
			if due && !rel.Paused {
				r.rounds.Add(1)
				go func(seq int) {
					defer r.rounds.Done()
					_ = r.Round(ctx, seq)
				}(rel.Seq)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SyncSoon makes relation rel due now: Run starts its round at its next
// tick (unless one is running, or it is paused).
func (r *Replicator) SyncSoon(rel Relation) error {
	if rel.Paused {
		return fault.Conflicts(fault.CodeOperationNotAllowed, []string{"replication", fmt.Sprint(rel.Seq)},
			"replication %d is paused: resume it first", rel.Seq)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.lastTry, rel.Seq)
	return nil
}

// PeerState says whether a zone answered its last probe, and if not why.
type PeerState func(zone string) (reachable bool, why string)

// Status is relation rel's status now, and its progress: what every
// surface and the metrics show.
func (r *Replicator) Status(rel Relation, peer PeerState) (Status, Progress) {
	p := r.Progress(rel.Seq)
	reachable, why := peer(rel.DstZone)
	return StatusOf(rel, p, reachable, why, r.opts.Now()), p
}
