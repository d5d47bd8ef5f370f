// Package replication keeps vPools replicated to backup zones (issue 18):
// the relations (this zone's vPool -> a peer zone's vPool, with an RPO
// interval) and, per VDI, the state of its replica.
//
// This file is the relation registry. The replicator that ships each
// VDI's changed blocks to its replica is to come (docs/architecture.md,
// "Replication"); until it runs, a relation reports initializing.
package replication

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kv"
)

// Relation replicates every VDI of a vPool of this zone to a vPool of a
// backup zone.
type Relation struct {
	Seq       int       `json:"seq"`
	VPool     string    `json:"vpool"`     // this zone's vPool guid
	DstZone   string    `json:"dst_zone"`  // a registered peer zone
	DstVPool  string    `json:"dst_vpool"` // the vPool there (name or guid, as the peer takes it)
	Interval  int       `json:"interval_s"`
	Retention int       `json:"retention"` // replica snapshots kept beyond the newest
	Paused    bool      `json:"paused"`
	Created   time.Time `json:"created"`
}

// Limits of a relation's settings.
const (
	MinInterval      = 10
	MaxInterval      = 7 * 24 * 3600
	DefaultInterval  = 300
	DefaultRetention = 7
	MaxRetention     = 1000
)

// Progress is what the replicator reports of a relation.
type Progress struct {
	Synced    bool      // every VDI has had its first full sync
	LastCycle time.Time // the end of the last completed cycle
	LastError string    // the last cycle's failure, if it failed
	Bytes     uint64    // bytes shipped so far
}

// Status is a relation's state: initializing, active, lagging, paused or
// broken (with a reason).
type Status struct {
	State  string
	Reason string
	Lag    time.Duration // since the last completed cycle (0 before the first)
}

// The states.
const (
	StateInitializing = "initializing"
	StateActive       = "active"
	StateLagging      = "lagging"
	StatePaused       = "paused"
	StateBroken       = "broken"
)

// StatusOf is a relation's status from its settings, what the replicator
// reports, whether its peer answered, at now. Pure, so every surface and
// the metrics agree, and tested on its own (testdata/status).
func StatusOf(r Relation, p Progress, peerReachable bool, peerError string, now time.Time) Status {
	var lag time.Duration
	if !p.LastCycle.IsZero() {
		lag = now.Sub(p.LastCycle)
	}
	switch {
	case r.Paused:
		return Status{State: StatePaused, Lag: lag}
	case !peerReachable:
		reason := "zone " + r.DstZone + " does not answer"
		if peerError != "" {
			reason += ": " + peerError
		}
		return Status{State: StateBroken, Reason: reason, Lag: lag}
	case p.LastError != "":
		return Status{State: StateBroken, Reason: p.LastError, Lag: lag}
	case !p.Synced:
		return Status{State: StateInitializing, Lag: lag}
	case lag > 2*time.Duration(r.Interval)*time.Second:
		return Status{State: StateLagging, Reason: fmt.Sprintf("the last cycle ended %s ago; the RPO is %ds", lag.Round(time.Second), r.Interval), Lag: lag}
	}
	return Status{State: StateActive, Lag: lag}
}

// Options configure the registry. DB is required; the checks are how it
// asks the rest of the daemon about names it is given.
type Options struct {
	DB     *kv.DB
	Logger *slog.Logger
	Now    func() time.Time
	// Pool resolves a local vPool (guid or name) to its guid.
	Pool func(ref string) (string, error)
	// Zone says whether a peer zone is registered.
	Zone func(name string) error
}

// Registry is the set of relations.
type Registry struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex // guards rels and next; held across their one-key commits
	rels map[int]Relation
	next int
}

const (
	keyPrefix = "replication/"
	keyNext   = "replication-next-seq"
)

func key(seq int) string { return fmt.Sprintf("%s%010d", keyPrefix, seq) }

// New loads the registry.
func New(opts Options) (*Registry, error) {
	if opts.DB == nil || opts.Pool == nil || opts.Zone == nil {
		return nil, errors.New("replication: DB, Pool and Zone are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Registry{opts: opts, log: opts.Logger, rels: map[int]Relation{}, next: 1}
	if _, err := opts.DB.Get(keyNext, &r.next); err != nil {
		return nil, fmt.Errorf("replication: %w", err)
	}
	err := kv.ScanJSON(opts.DB, keyPrefix, func(_ string, rel *Relation) error {
		r.rels[rel.Seq] = *rel
		r.next = max(r.next, rel.Seq+1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replication: loading relations: %w", err)
	}
	return r, nil
}

// NewRelation asks for a relation.
type NewRelation struct {
	VPool, DstZone, DstVPool string
	Interval, Retention      int // 0: the defaults
	By                       string
}

// Create adds a relation, with the next seq. Each (vPool, zone) pair has
// at most one.
func (r *Registry) Create(n NewRelation) (Relation, error) {
	if n.Interval == 0 {
		n.Interval = DefaultInterval
	}
	if n.Retention == 0 {
		n.Retention = DefaultRetention
	}
	switch {
	case n.Interval < MinInterval || n.Interval > MaxInterval:
		return Relation{}, fault.InvalidValue("interval_s", fmt.Sprint(n.Interval), "must be %d to %d seconds", MinInterval, MaxInterval)
	case n.Retention < 0 || n.Retention > MaxRetention:
		return Relation{}, fault.InvalidValue("retention", fmt.Sprint(n.Retention), "must be 0 to %d snapshots", MaxRetention)
	case n.DstVPool == "":
		return Relation{}, fault.InvalidValue("dst_vpool", "", "the vPool in the backup zone is required")
	}
	pool, err := r.opts.Pool(n.VPool)
	if err != nil {
		return Relation{}, err
	}
	if err := r.opts.Zone(n.DstZone); err != nil {
		return Relation{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, old := range r.rels {
		if old.VPool == pool && old.DstZone == n.DstZone {
			return Relation{}, fault.Conflicts(fault.CodeNameTaken, []string{"replication", fmt.Sprint(old.Seq)},
				"vPool %s already replicates to zone %s (seq %d)", n.VPool, n.DstZone, old.Seq)
		}
	}
	rel := Relation{Seq: r.next, VPool: pool, DstZone: n.DstZone, DstVPool: n.DstVPool, Interval: n.Interval,
		Retention: n.Retention, Created: r.opts.Now().UTC()}
	// The seq is never handed out twice, even after the relation goes.
	b := r.opts.DB.NewBatch()
	b.Put(key(rel.Seq), rel)
	b.Put(keyNext, rel.Seq+1)
	if err := b.Commit(); err != nil {
		return Relation{}, fault.Internalf(nil, "replication %d: %v", rel.Seq, err)
	}
	r.rels[rel.Seq] = rel
	r.next = rel.Seq + 1
	r.log.Info("replication created", "seq", rel.Seq, "vpool", pool, "dst_zone", rel.DstZone, "dst_vpool", rel.DstVPool,
		"interval_s", rel.Interval, "by", n.By)
	return rel, nil
}

// Get reads one relation.
func (r *Registry) Get(seq int) (Relation, *fault.Error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rel, ok := r.rels[seq]
	if !ok {
		return Relation{}, fault.Missing("replication", fmt.Sprint(seq))
	}
	return rel, nil
}

// List reads every relation, by seq.
func (r *Registry) List() []Relation {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Relation, 0, len(r.rels))
	for _, rel := range r.rels {
		out = append(out, rel)
	}
	slices.SortFunc(out, func(a, b Relation) int { return a.Seq - b.Seq })
	return out
}

// UsingZone is a relation replicating to zone, if any (a zone in use is
// not deleted).
func (r *Registry) UsingZone(zone string) (int, bool) {
	for _, rel := range r.List() {
		if rel.DstZone == zone {
			return rel.Seq, true
		}
	}
	return 0, false
}

// UsingPool is a relation replicating vPool guid, if any.
func (r *Registry) UsingPool(guid string) (int, bool) {
	for _, rel := range r.List() {
		if rel.VPool == guid {
			return rel.Seq, true
		}
	}
	return 0, false
}

// SetPaused pauses or resumes a relation.
func (r *Registry) SetPaused(seq int, paused bool, by string) (Relation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rel, ok := r.rels[seq]
	if !ok {
		return Relation{}, fault.Missing("replication", fmt.Sprint(seq))
	}
	if rel.Paused == paused {
		return rel, nil
	}
	rel.Paused = paused
	if err := r.opts.DB.Put(key(seq), rel); err != nil {
		return Relation{}, fault.Internalf(nil, "replication %d: %v", seq, err)
	}
	r.rels[seq] = rel
	r.log.Info("replication paused", "seq", seq, "paused", paused, "by", by)
	return rel, nil
}

// Delete removes a relation and its replicas' states, in one commit. Its
// replicas stay in the backup zone.
func (r *Registry) Delete(seq int, by string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.rels[seq]; !ok {
		return fault.Missing("replication", fmt.Sprint(seq))
	}
	keys := []string{key(seq)}
	err := r.opts.DB.Scan(fmt.Sprintf("%s%010d/", stateKeyPrefix, seq), func(k string, _ []byte) error {
		keys = append(keys, k)
		return nil
	})
	if err == nil {
		b := r.opts.DB.NewBatch()
		for _, k := range keys {
			b.Delete(k)
		}
		err = b.Commit()
	}
	if err != nil {
		return fault.Internalf(nil, "replication %d: %v", seq, err)
	}
	delete(r.rels, seq)
	r.log.Info("replication deleted", "seq", seq, "by", by)
	return nil
}
