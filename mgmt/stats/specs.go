package stats

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kv"
)

// Limits and defaults of a spec.
const (
	DefaultInterval   = 10
	MinInterval       = 1
	MaxInterval       = 3600
	DefaultExpiration = 100 * time.Minute
	MaxExpiration     = 366 * 24 * time.Hour
	MaxResources      = 1000 // resource entries in one spec (an ALL entry is one)
	MaxMemo           = 4096
)

// Options configure the service. DB is required.
type Options struct {
	DB     *kv.DB
	Logger *slog.Logger
	Now    func() time.Time
	// Resources lists the ids of every resource of a type now.
	Resources func(rtype string) []string
	// Read answers a resource's counters by metric (the OVS statistics
	// object, with its *_ps rates if rates is set, or the node's
	// latencies); ok is false when the resource is gone.
	Read func(rtype, id string, rates bool) (values map[string]float64, ok bool)
	// Retention is how long data points are kept (default 24 h);
	// TombstoneRetention how long a deleted spec's id is kept for cache
	// syncs (default 7 days; older start_epochs are refused).
	Retention, TombstoneRetention time.Duration
	// PageSize bounds every page (default 100 specs, 1000 data points).
	PageSize int
	// Metrics are the OVS statistics object's counters offered on vDisks
	// and vPools (metrics.Keys).
	Metrics []Metric
}

// Service holds the specs and their data points.
type Service struct {
	opts Options
	log  *slog.Logger

	mu    sync.Mutex // guards specs, next, horizon, purged and their commits
	specs map[string]*stored
	next  int
	// horizon is the greatest end_epoch a sync answered: a change after it
	// is stamped later, so no sync misses it.
	horizon int64
	// purged: tombstones of deletions up to here are gone.
	purged int64

	sampler   sampler
	catalogue []Counter
}

// stored is a spec with its change stamps (Unix seconds).
type stored struct {
	Spec    Spec  `json:"spec"`
	Created int64 `json:"created"`
	Updated int64 `json:"updated"`
}

// tombstone remembers a deleted spec for cache syncs.
type tombstone struct {
	ID      string `json:"id"`
	Deleted int64  `json:"deleted"`
}

const (
	specPrefix   = "stats/spec/"
	tombPrefix   = "stats/tomb/"
	keyNextSpec  = "stats-next-spec"
	keyHorizon   = "stats-sync-horizon"
	keyPurged    = "stats-tombstones-purged"
	pointsPrefix = "stats/dp/"
)

// New loads the specs.
func New(opts Options) (*Service, error) {
	if opts.DB == nil || opts.Resources == nil || opts.Read == nil || len(opts.Metrics) == 0 {
		return nil, errors.New("stats: DB, Resources, Read and Metrics are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Retention <= 0 {
		opts.Retention = 24 * time.Hour
	}
	if opts.TombstoneRetention <= 0 {
		opts.TombstoneRetention = 7 * 24 * time.Hour
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 100
	}
	s := &Service{opts: opts, log: opts.Logger, specs: map[string]*stored{}, next: 1, catalogue: buildCatalogue(opts.Metrics)}
	s.sampler = newSampler()
	for k, v := range map[string]any{keyNextSpec: &s.next, keyHorizon: &s.horizon, keyPurged: &s.purged} {
		if _, err := opts.DB.Get(k, v); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
	}
	err := kv.ScanJSON(opts.DB, specPrefix, func(_ string, st *stored) error {
		s.specs[st.Spec.ID] = st
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stats: loading the specs: %w", err)
	}
	return s, nil
}

// stamp is the second a change made now is recorded at: never at or
// before a second a sync already answered for.
func (s *Service) stamp() int64 { return max(s.opts.Now().Unix(), s.horizon+1) }

func specKey(id string) string { return specPrefix + id }
func tombKey(id string) string { return tombPrefix + id }

// Get reads one spec.
func (s *Service) Get(id string) (Spec, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.specs[id]
	if !ok {
		return Spec{}, fault.Missing("acq_spec", id)
	}
	return s.view(st), nil
}

// view is a spec as answered: EXPIRED as soon as its expiration passed,
// even before the sampler stored it so.
func (s *Service) view(st *stored) Spec {
	sp := st.Spec
	sp.Resources = slices.Clone(sp.Resources)
	sp.Endpoints = append([]string{}, sp.Endpoints...)
	if sp.Status != StatusExpired && s.opts.Now().Unix() >= sp.Expiration {
		sp.Status, sp.StatusReason = StatusExpired, "its expiration passed"
	}
	return sp
}

// List answers a page of the specs in id order: those after the id the
// page token names, and the token of the next page ("" at the end).
func (s *Service) List(page string) ([]Spec, string, error) {
	after := ""
	if page != "" {
		t, err := decodeToken(page, "list")
		if err != nil {
			return nil, "", err
		}
		after = t.After
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.sortedIDs()
	var out []Spec
	for _, id := range ids {
		if id <= after {
			continue
		}
		if len(out) == s.opts.PageSize {
			return out, encodeToken(token{Kind: "list", After: out[len(out)-1].ID}), nil
		}
		out = append(out, s.view(s.specs[id]))
	}
	return orEmpty(out), "", nil
}

func (s *Service) sortedIDs() []string {
	ids := make([]string, 0, len(s.specs))
	for id := range s.specs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Create adds a spec and answers its id.
func (s *Service) Create(c CreateSpec, by string) (string, error) {
	now := s.opts.Now()
	sp := Spec{Counters: c.Counters, Resources: c.Resources, Interval: DefaultInterval, Endpoints: c.Endpoints,
		Status: StatusEnabled}
	if c.Interval != nil && *c.Interval != 0 {
		sp.Interval = *c.Interval
	}
	sp.Expiration = now.Add(DefaultExpiration).Unix()
	if c.Expiration != nil && *c.Expiration != 0 {
		sp.Expiration = *c.Expiration
	}
	if c.Memo != nil {
		sp.Memo = *c.Memo
	}
	if err := s.check(sp, now); err != nil {
		return "", err
	}
	if sp.Endpoints == nil {
		sp.Endpoints = []string{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sp.ID = fmt.Sprintf("acq-%08d", s.next)
	at := s.stamp()
	st := &stored{Spec: sp, Created: at, Updated: at}
	b := s.opts.DB.NewBatch()
	b.Put(specKey(sp.ID), st)
	b.Put(keyNextSpec, s.next+1)
	if err := b.Commit(); err != nil {
		return "", fault.Internalf(nil, "stats: storing a spec: %v", err)
	}
	s.next++
	s.specs[sp.ID] = st
	s.log.Info("acq_spec created", "id", sp.ID, "interval", sp.Interval, "by", by)
	return sp.ID, nil
}

// Update changes a spec; fields u leaves unset stay. A spec that expired
// or was disabled is enabled again if what it now names is sampleable.
func (s *Service) Update(id string, u UpdateSpec, by string) error {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.specs[id]
	if !ok {
		return fault.Missing("acq_spec", id)
	}
	sp := st.Spec
	if u.Counters != nil {
		sp.Counters = *u.Counters
	}
	if u.Resources != nil {
		sp.Resources = u.Resources
	}
	if u.Interval != nil {
		sp.Interval = *u.Interval
		if sp.Interval == 0 {
			sp.Interval = DefaultInterval
		}
	}
	if u.Expiration != nil {
		sp.Expiration = *u.Expiration
		if sp.Expiration == 0 {
			sp.Expiration = now.Add(DefaultExpiration).Unix()
		}
	}
	if u.Memo != nil {
		sp.Memo = *u.Memo
	}
	if u.Endpoints != nil {
		sp.Endpoints = u.Endpoints
	}
	// A spec past its expiration that a patch leaves so stays EXPIRED
	// (its memo may still change); any other is enabled again.
	stillExpired := u.Expiration == nil && sp.Expiration <= now.Unix()
	if stillExpired {
		sp.Expiration = now.Unix() + 1 // for the other checks only
	}
	if err := s.check(sp, now); err != nil {
		return err
	}
	sp.Status, sp.StatusReason = StatusEnabled, ""
	if stillExpired {
		sp.Expiration = st.Spec.Expiration
		sp.Status, sp.StatusReason = StatusExpired, "its expiration passed"
	}
	next := &stored{Spec: sp, Created: st.Created, Updated: s.stamp()}
	if err := s.opts.DB.Put(specKey(id), next); err != nil {
		return fault.Internalf(nil, "stats: storing spec %s: %v", id, err)
	}
	s.specs[id] = next
	s.log.Info("acq_spec updated", "id", id, "by", by)
	return nil
}

// Delete removes a spec, leaving a tombstone for cache syncs, and its
// place in the sampler.
func (s *Service) Delete(id, by string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.specs[id]; !ok {
		return fault.Missing("acq_spec", id)
	}
	b := s.opts.DB.NewBatch()
	b.Delete(specKey(id))
	b.Put(tombKey(id), tombstone{ID: id, Deleted: s.stamp()})
	if err := b.Commit(); err != nil {
		return fault.Internalf(nil, "stats: deleting spec %s: %v", id, err)
	}
	delete(s.specs, id)
	s.log.Info("acq_spec deleted", "id", id, "by", by)
	return nil
}

// check validates a spec as it would be stored, at now: every name it
// uses exists, every counter applies to some resource it names, the
// interval and expiration are in range.
func (s *Service) check(sp Spec, now time.Time) *fault.Error {
	cids, ferr := s.countersOf(sp.Counters)
	if ferr != nil {
		return ferr
	}
	switch {
	case sp.Interval < MinInterval || sp.Interval > MaxInterval:
		return fault.InvalidValue("interval", fmt.Sprint(sp.Interval), "must be %d to %d seconds", MinInterval, MaxInterval)
	case sp.Expiration <= now.Unix():
		return fault.InvalidValue("expiration", fmt.Sprint(sp.Expiration), "is not in the future (Unix seconds; 0: now + 100 minutes)")
	case sp.Expiration > now.Add(MaxExpiration).Unix():
		return fault.InvalidValue("expiration", fmt.Sprint(sp.Expiration), "is more than a year ahead")
	case len(sp.Memo) > MaxMemo:
		return fault.InvalidValue("memo_", "", "is longer than %d bytes", MaxMemo)
	case len(sp.Endpoints) > 0:
		return fault.InvalidValue("endpoints", strings.Join(sp.Endpoints, ","),
			"vdiskd pushes to no endpoints (it serves no /api/stats/endpoints): leave it empty and read /api/stats/data/dp")
	case len(sp.Resources) == 0:
		return fault.InvalidValue("resources", "", "name at least one resource")
	case len(sp.Resources) > MaxResources:
		return fault.InvalidValue("resources", fmt.Sprint(len(sp.Resources)), "at most %d entries (ALL names every resource of a type)", MaxResources)
	}
	types := map[string]bool{}
	for i, r := range sp.Resources {
		t, ferr := resourceType(r, i)
		if ferr != nil {
			return ferr
		}
		if (r.Predicate == nil || *r.Predicate == PredicateEqual) && !s.exists(t, r.IDValue) {
			return fault.InvalidValue(fmt.Sprintf("resources[%d].id_value", i), r.IDValue, "no %s has this id", t)
		}
		types[t] = true
	}
	for _, cid := range cids {
		c, _ := s.CounterByCid(cid)
		if !types[c.Type] {
			return fault.InvalidValue("counters", cid, "applies to %s resources, and the spec names none", c.Type)
		}
	}
	return nil
}

// exists reports whether a resource is there now.
func (s *Service) exists(rtype, id string) bool {
	_, ok := s.opts.Read(rtype, id, false)
	return ok
}

// countersOf resolves a counter spec to cids.
func (s *Service) countersOf(cs CounterSpec) ([]string, *fault.Error) {
	switch {
	case cs.CidMid != nil:
		c, ok := s.CounterByCid(cs.CidMid.Cid)
		if !ok {
			return nil, fault.InvalidValue("counters.cid_mid.cid", cs.CidMid.Cid, "no such counter (GET /api/stats/counters lists them)")
		}
		if m := cs.CidMid.Mid; m != nil && *m != Mid {
			return nil, fault.InvalidValue("counters.cid_mid.mid", *m, "counter %s has metadata %s only", c.Cid, Mid)
		}
		return []string{c.Cid}, nil
	case cs.SetID != nil:
		set, ok := s.CounterSetByID(*cs.SetID)
		if !ok {
			return nil, fault.InvalidValue("counters.set_id", *cs.SetID, "no such counter set (GET /api/stats/counter-sets lists them)")
		}
		return set.Counters, nil
	}
	return nil, fault.InvalidValue("counters", "", "give cid_mid or set_id")
}

// resourceType checks the i-th resource entry and answers its type.
func resourceType(r RsrcID, i int) (string, *fault.Error) {
	field := fmt.Sprintf("resources[%d]", i)
	t := ""
	if r.Type != nil {
		t = *r.Type
	} else if r.Key != nil {
		t = *r.Key
	}
	if !slices.Contains(ResourceTypes, t) {
		return "", fault.InvalidValue(field+".type", t, "must be one of %s", strings.Join(ResourceTypes, ", "))
	}
	if r.Key != nil && *r.Key != t {
		return "", fault.InvalidValue(field+".key", *r.Key, "the schema of %s has the one key %s", t, t)
	}
	pred := PredicateEqual
	if r.Predicate != nil {
		pred = *r.Predicate
	}
	switch {
	case pred != PredicateEqual && pred != PredicateAll:
		return "", fault.InvalidValue(field+".predicate", pred, "must be EQUAL or ALL")
	case pred == PredicateEqual && (r.IDValue == "" || len(r.IDValue) > 255):
		return "", fault.InvalidValue(field+".id_value", r.IDValue, "must name a %s (1 to 255 characters)", t)
	}
	return t, nil
}
