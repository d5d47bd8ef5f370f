package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// sampler remembers when each spec was last sampled (in memory: after a
// restart every spec is due at once). Lock order: sampler.mu, then the
// service's mu.
type sampler struct {
	mu          sync.Mutex // held across a whole Tick
	last        map[string]int64
	lastPurge   time.Time
	purgeEvery  time.Duration
	maxResource int // resources one spec samples per tick, at most
}

func newSampler() sampler {
	return sampler{last: map[string]int64{}, purgeEvery: time.Minute, maxResource: 100000}
}

// RID is a resource's address in data points, queries and vStats'
// rsrc-addrs: type.VDISK=<uuid>.
func RID(rtype, id string) string { return "type." + rtype + "=" + id }

// ParseRID reads a resource address, type.VDISK=<id> or
// type.VDISK.<scheme>=<id>, as its type and id.
func ParseRID(r string) (rtype, id string, ok bool) {
	left, id, ok := strings.Cut(r, "=")
	rest, typed := strings.CutPrefix(left, "type.")
	t, _, _ := strings.Cut(rest, ".")
	if !ok || !typed || id == "" || !slices.Contains(ResourceTypes, t) {
		return "", "", false
	}
	return t, id, true
}

// CheckTypes refuses any resource type but ResourceTypes, naming field.
func CheckTypes(field string, types []string) *fault.Error {
	for _, t := range types {
		if !slices.Contains(ResourceTypes, t) {
			return invalid(field, t, "must be one of %s", strings.Join(ResourceTypes, ", "))
		}
	}
	return nil
}

func pointKey(ts int64, cid, r string) string {
	return fmt.Sprintf("%s%012d/%s/%s", pointsPrefix, ts, cid, r)
}

// due is one spec to sample now: its counters and the resources they
// apply to.
type due struct {
	id    string
	cids  []string
	names []RsrcID
}

// Run samples every tick until ctx ends.
func (s *Service) Run(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if err := s.Tick(); err != nil {
			s.log.Warn("stats: sampling failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Tick does what is due now: every enabled spec whose interval has passed
// since its last sample gets one data point per (counter, resource) it
// names, all stored in one batch; a spec past its expiration becomes
// EXPIRED, one whose every resource is gone DISABLED; data points and
// tombstones past their retention go. Each resource is read once per
// tick, however many specs name it.
func (s *Service) Tick() error {
	s.sampler.mu.Lock()
	defer s.sampler.mu.Unlock()
	now := s.opts.Now()
	ts := now.Unix()

	var todo []due
	var expired []string
	s.mu.Lock()
	for id := range s.sampler.last {
		if _, ok := s.specs[id]; !ok {
			delete(s.sampler.last, id) // deleted since
		}
	}
	for _, id := range s.sortedIDs() {
		st := s.specs[id]
		switch {
		case st.Spec.Status != StatusEnabled:
		case ts >= st.Spec.Expiration:
			expired = append(expired, id)
		case ts-s.sampler.last[id] >= st.Spec.Interval:
			cids, _ := s.countersOf(st.Spec.Counters) // checked when stored
			todo = append(todo, due{id: id, cids: cids, names: slices.Clone(st.Spec.Resources)})
		}
	}
	s.mu.Unlock()

	// Rates are computed only for the types some due spec wants one of.
	rates := map[string]bool{}
	for _, d := range todo {
		for _, cid := range d.cids {
			if c, _ := s.CounterByCid(cid); c.Sample == "RATE" {
				rates[c.Type] = true
			}
		}
	}
	// Read outside the specs' lock: reading takes the volumes' locks.
	read := map[string]map[string]float64{}
	value := func(rtype, id string) (map[string]float64, bool) {
		k := RID(rtype, id)
		if v, ok := read[k]; ok {
			return v, v != nil
		}
		v, ok := s.opts.Read(rtype, id, rates[rtype])
		if !ok {
			v = nil
		}
		read[k] = v
		return v, ok
	}
	b := s.opts.DB.NewBatch()
	points := 0
	var gone []string
	for _, d := range todo {
		found := false
		for _, rt := range s.resolve(d.names) {
			vals, ok := value(rt.rtype, rt.id)
			if !ok {
				continue
			}
			found = true
			for _, cid := range d.cids {
				c, _ := s.CounterByCid(cid)
				if c.Type != rt.rtype {
					continue
				}
				v, ok := vals[c.Metric]
				if !ok {
					continue
				}
				b.Put(pointKey(ts, cid, RID(rt.rtype, rt.id)), v)
				points++
			}
		}
		s.sampler.last[d.id] = ts
		if !found && !namesAll(d.names) {
			gone = append(gone, d.id)
		}
	}
	if points > 0 {
		if err := b.Commit(); err != nil {
			return fmt.Errorf("stats: storing %d data points: %w", points, err)
		}
	}
	for _, id := range expired {
		s.setStatus(id, StatusExpired, "its expiration passed")
	}
	for _, id := range gone {
		s.setStatus(id, StatusDisabled, "every resource it names is gone")
	}
	if now.Sub(s.sampler.lastPurge) >= s.sampler.purgeEvery {
		s.sampler.lastPurge = now
		return s.purge(now)
	}
	return nil
}

// target is one resource to read.
type target struct{ rtype, id string }

// resolve lists the resources entries name now: an ALL entry every
// resource of its type, an EQUAL one its id; each once, at most
// maxResource.
func (s *Service) resolve(names []RsrcID) []target {
	seen := map[target]bool{}
	var out []target
	add := func(t target) {
		if !seen[t] && len(out) < s.sampler.maxResource {
			seen[t] = true
			out = append(out, t)
		}
	}
	for i, r := range names {
		t, _ := resourceType(r, i)
		if r.Predicate != nil && *r.Predicate == PredicateAll {
			for _, id := range s.opts.Resources(t) {
				add(target{t, id})
			}
			continue
		}
		add(target{t, r.IDValue})
	}
	return out
}

func namesAll(names []RsrcID) bool {
	for _, r := range names {
		if r.Predicate != nil && *r.Predicate == PredicateAll {
			return true
		}
	}
	return false
}

// setStatus stores a status the sampler decided, as a change clients'
// caches see.
func (s *Service) setStatus(id, status, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.specs[id]
	if !ok || st.Spec.Status == status {
		return
	}
	next := &stored{Spec: st.Spec, Created: st.Created, Updated: s.stamp()}
	next.Spec.Status, next.Spec.StatusReason = status, reason
	if err := s.opts.DB.Put(specKey(id), next); err != nil {
		s.log.Warn("stats: storing a spec's status", "id", id, "err", err)
		return
	}
	s.specs[id] = next
	s.log.Info("acq_spec status", "id", id, "status", status, "reason", reason)
}

// purge drops data points older than the retention and tombstones older
// than theirs, remembering up to when deletions are forgotten.
func (s *Service) purge(now time.Time) error {
	b := s.opts.DB.NewBatch()
	b.DeleteRange(pointsPrefix, pointKey(now.Add(-s.opts.Retention).Unix(), "", ""))
	horizon := now.Add(-s.opts.TombstoneRetention).Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	purged := s.purged
	err := s.opts.DB.Scan(tombPrefix, func(k string, val []byte) error {
		var tb tombstone
		if err := json.Unmarshal(val, &tb); err != nil {
			return err
		}
		if tb.Deleted < horizon {
			b.Delete(k)
			purged = max(purged, tb.Deleted)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("stats: reading tombstones: %w", err)
	}
	if purged != s.purged {
		b.Put(keyPurged, purged)
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("stats: purging: %w", err)
	}
	s.purged = purged
	return nil
}

// Query selects data points (vStats' data/dp filter).
type Query struct {
	Start, End *int64   // [Start, End) in Unix seconds; default the retention, and now
	Cid        string   // one counter
	Metric     string   // or every counter of a metric
	Types      []string // resource types
	Rsrcs      []string // resources: type.VDISK=<uuid> (or type.VDISK.<scheme>=<uuid>)
	Order      string   // DEFAULT (time, then counter, then resource)
	Page       string
}

// Points answers one page of the data points q selects, and the next
// page's token ("" at the end).
func (s *Service) Points(q Query) ([]DataPoint, string, error) {
	now := s.opts.Now().Unix()
	start, end := now-int64(s.opts.Retention/time.Second), now+1
	if q.Start != nil {
		start = *q.Start
	}
	if q.End != nil {
		end = *q.End
	}
	switch {
	case start < 0:
		return nil, "", invalid("start", fmt.Sprint(start), "must be a Unix time in seconds")
	case end < start:
		return nil, "", invalid("end", fmt.Sprint(end), "is before start %d", start)
	case q.Order != "" && q.Order != "DEFAULT":
		return nil, "", invalid("order", q.Order, "must be DEFAULT")
	case q.Cid != "":
		if _, ok := s.CounterByCid(q.Cid); !ok {
			return nil, "", invalid("cid", q.Cid, "no such counter")
		}
	case q.Metric != "" && !slices.Contains(s.Metrics(), q.Metric):
		return nil, "", invalid("metric", q.Metric, "no such metric")
	}
	if ferr := CheckTypes("types", q.Types); ferr != nil {
		return nil, "", ferr
	}
	rsrcs := map[string]bool{}
	for _, r := range q.Rsrcs {
		t, id, ok := ParseRID(r)
		if !ok {
			return nil, "", invalid("rsrcs", r, "must be type.<%s>=<id>", strings.Join(ResourceTypes, "|"))
		}
		rsrcs[RID(t, id)] = true
	}
	lo := pointKey(start, "", "")
	if q.Page != "" {
		t, ferr := decodeToken(q.Page, "dp")
		if ferr != nil {
			return nil, "", ferr
		}
		lo = max(lo, t.After+"\x00")
	}
	size := 10 * s.opts.PageSize
	var out []DataPoint
	next := ""
	err := s.opts.DB.ScanRange(lo, pointKey(end, "", ""), func(k string, val []byte) (bool, error) {
		tsPart, rest, _ := strings.Cut(strings.TrimPrefix(k, pointsPrefix), "/")
		cid, r, _ := strings.Cut(rest, "/")
		ts, err := strconv.ParseInt(tsPart, 10, 64)
		if err != nil {
			return false, fmt.Errorf("stats: a data point's key %q: %w", k, err)
		}
		c, ok := s.CounterByCid(cid)
		switch {
		case !ok, q.Cid != "" && cid != q.Cid, q.Metric != "" && c.Metric != q.Metric,
			len(q.Types) > 0 && !slices.Contains(q.Types, c.Type), len(rsrcs) > 0 && !rsrcs[r]:
			return true, nil
		}
		if len(out) == size {
			next = encodeToken(token{Kind: "dp", After: pointKey(out[len(out)-1].Ts, out[len(out)-1].Cid, out[len(out)-1].Rid)})
			return false, nil
		}
		var v float64
		if err := json.Unmarshal(val, &v); err != nil {
			return false, fmt.Errorf("stats: data point %q: %w", k, err)
		}
		out = append(out, DataPoint{Cid: cid, Mid: Mid, Rid: r, Ts: ts, Val: v})
		return true, nil
	})
	if err != nil {
		return nil, "", err
	}
	return orEmpty(out), next, nil
}

func invalid(field, value, format string, args ...any) *fault.Error {
	return fault.InvalidValue(field, value, format, args...)
}
