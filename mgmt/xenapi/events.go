package xenapi

import (
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/auth"
)

// Events are found by comparing records with what they were at the
// previous look: whatever changed them (a XenAPI or REST call, an NBD
// client attaching, the replicator) shows, and no service has to announce
// anything. A look rereads the VDIs the volume service's change feed names
// (and their VBDs), the SRs whose VDIs list or allocation those moved, and
// the few tasks, pool and host; every Options.EventRescan, and when the
// feed lost track, it rereads everything, which also brings physical
// utilisation (moved by writes, which the feed does not note) up to date.
// Each change gets the next generation; a token is a generation.

// eventClasses are the classes whose records events report.
var eventClasses = []string{"VDI", "SR", "task", "pool", "host", "VBD", "VM"}

// smallClasses are reread at every look.
var smallClasses = []string{"task", "pool", "host", "VM"}

// event is one change, as event.from answers it.
type event struct {
	gen       uint64
	class     string
	operation string // add, mod, del
	ref       string
	snapshot  map[string]any
	at        time.Time
}

// eventLog is what changed, with the records as last seen.
type eventLog struct {
	mu     sync.Mutex
	gen    uint64
	seen   map[string]seenRecord      // by ref
	refs   map[string]map[string]bool // the refs of seen, by class
	events []event                    // oldest first, at most maxEvents
	looked time.Time                  // the last comparison
	reread time.Time                  // the last comparison of everything
	volGen uint64                     // the volume change feed's generation then
	notice <-chan struct{}            // closed when the feed moves on from volGen
}

// closed reports whether ch is closed (a nil one never is).
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return ch != nil
	default:
		return false
	}
}

type seenRecord struct {
	class string
	json  string
	rec   map[string]any
}

// maxEvents bounds the events kept; a token older than them is
// EVENTS_LOST, as xapi's.
const maxEvents = 100000

// look compares the records that may have changed with the last look:
// at once when the volume service noted a change, else at most every
// 250 ms (for tasks) unless forced.
func (s *Surface) look(force bool) {
	l := &s.events
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !force && now.Sub(l.looked) < 250*time.Millisecond && !closed(l.notice) {
		return
	}
	l.looked = now
	l.notice = s.opts.Volumes.ChangeNotice() // before reading: a change after it wakes the next look
	ids, gen, complete := s.opts.Volumes.ChangesSince(l.volGen)
	l.volGen = gen
	var r reading
	if l.seen == nil || !complete || now.Sub(l.reread) >= s.opts.EventRescan {
		r = s.readEverything()
		l.reread = now
	} else {
		r = s.readChanged(l, ids)
	}
	l.apply(r, now)
}

// reading is what a look read: the records now, by ref, and what was
// looked at, so that a ref looked at and not read is gone.
type reading struct {
	current map[string]seenRecord
	whole   map[string]bool // classes read whole
	single  map[string]bool // refs read one by one
}

func newReading() reading {
	return reading{current: map[string]seenRecord{}, whole: map[string]bool{}, single: map[string]bool{}}
}

// one reads one object's record, if it has one now.
func (r reading) one(s *Surface, class, id string) {
	r.single[Ref(id)] = true
	if rec, ok := classes[class].record(s, id); ok {
		b, _ := json.Marshal(rec)
		r.current[Ref(id)] = seenRecord{class: class, json: string(b), rec: rec}
	}
}

// class reads every record of a class.
func (r reading) class(s *Surface, class string) {
	r.whole[class] = true
	for _, id := range classes[class].uuids(s) {
		r.one(s, class, id)
	}
}

func (s *Surface) readEverything() reading {
	r := newReading()
	for _, class := range eventClasses {
		r.class(s, class)
	}
	return r
}

// readChanged reads the VDIs the change feed named and their VBDs (then
// and now), the SRs whose VDIs list or allocation they moved (every SR
// when a vPool came or went), and the small classes.
func (s *Surface) readChanged(l *eventLog, ids []string) reading {
	r := newReading()
	for _, class := range smallClasses {
		r.class(s, class)
	}
	srs, allSRs := map[string]bool{}, false
	for _, id := range ids {
		ref := Ref(id)
		old, existed := l.seen[ref]
		if existed && old.class != "VDI" {
			allSRs = true // a vPool came or went
			continue
		}
		r.one(s, "VDI", id)
		cur, exists := r.current[ref]
		if !existed && !exists {
			allSRs = true // a vPool, or a VDI without a record
			continue
		}
		if existed != exists || old.rec["SR"] != cur.rec["SR"] || old.rec["virtual_size"] != cur.rec["virtual_size"] ||
			old.rec["type"] != cur.rec["type"] {
			for _, sr := range []any{old.rec["SR"], cur.rec["SR"]} {
				if sref, ok := sr.(string); ok && sref != NullRef {
					srs[sref] = true
				}
			}
		}
		for _, rec := range []map[string]any{old.rec, cur.rec} {
			vbds, _ := rec["VBDs"].([]any)
			for _, v := range vbds {
				vbd, _ := v.(string)
				r.one(s, "VBD", vbd[len(refPrefix):])
			}
		}
	}
	if allSRs {
		r.class(s, "SR")
	} else {
		for sref := range srs {
			r.one(s, "SR", sref[len(refPrefix):])
		}
	}
	return r
}

// apply turns a reading into events: add or mod for each record that is
// new or differs from the last seen, del for each ref looked at that has
// none now.
func (l *eventLog) apply(r reading, now time.Time) {
	if l.seen == nil {
		l.seen, l.refs = map[string]seenRecord{}, map[string]map[string]bool{}
	}
	emit := func(class, op, ref string, rec map[string]any) {
		l.gen++
		l.events = append(l.events, event{gen: l.gen, class: class, operation: op, ref: ref, snapshot: rec, at: now})
	}
	for _, ref := range slices.Sorted(mapKeys(r.current)) {
		cur := r.current[ref]
		old, ok := l.seen[ref]
		switch {
		case !ok:
			emit(cur.class, "add", ref, cur.rec)
		case old.json != cur.json:
			emit(cur.class, "mod", ref, cur.rec)
		}
	}
	var gone []string
	for class := range r.whole {
		for ref := range l.refs[class] {
			if _, ok := r.current[ref]; !ok {
				gone = append(gone, ref)
			}
		}
	}
	for ref := range r.single {
		old, seen := l.seen[ref]
		if _, exists := r.current[ref]; seen && !exists && !r.whole[old.class] {
			gone = append(gone, ref)
		}
	}
	slices.Sort(gone)
	for _, ref := range gone {
		old := l.seen[ref]
		emit(old.class, "del", ref, nil)
		delete(l.seen, ref)
		delete(l.refs[old.class], ref)
	}
	for ref, cur := range r.current {
		l.seen[ref] = cur
		if l.refs[cur.class] == nil {
			l.refs[cur.class] = map[string]bool{}
		}
		l.refs[cur.class][ref] = true
	}
	if n := len(l.events) - maxEvents; n > 0 {
		l.events = slices.Delete(l.events, 0, n)
	}
}

// inject records a mod of an object, as event.inject asks, and answers
// the token from which it shows.
func (s *Surface) inject(class, ref string) (string, error) {
	s.look(true)
	l := &s.events
	l.mu.Lock()
	defer l.mu.Unlock()
	seen, ok := l.seen[ref]
	if !ok || seen.class != class {
		return "", xenError(CodeHandleInvalid, class, ref)
	}
	token := strconv.FormatUint(l.gen, 10)
	l.gen++
	l.events = append(l.events, event{gen: l.gen, class: class, operation: "mod", ref: ref, snapshot: seen.rec, at: time.Now()})
	return token, nil
}

// from answers the events of classes after token, waiting up to timeout
// for some: {events, token, valid_ref_counts}. Token "" is every object
// now, as add events.
func (s *Surface) from(classes []string, token string, timeout time.Duration) (map[string]any, error) {
	want := map[string]bool{}
	for _, c := range classes {
		if c == "*" {
			for _, k := range eventClasses {
				want[k] = true
			}
			continue
		}
		want[c] = true
	}
	deadline := time.Now().Add(timeout)
	for {
		s.look(false)
		l := &s.events
		l.mu.Lock()
		var since uint64
		var evs []any
		if token == "" {
			for _, ref := range slices.Sorted(mapKeys(l.seen)) {
				if r := l.seen[ref]; want[r.class] {
					evs = append(evs, eventRecord(event{class: r.class, operation: "add", ref: ref, snapshot: r.rec, at: time.Now()}))
				}
			}
			since = l.gen
		} else {
			n, err := strconv.ParseUint(token, 10, 64)
			if err != nil || n > l.gen {
				l.mu.Unlock()
				return nil, xenError("EVENT_FROM_TOKEN_PARSE_FAILURE", token)
			}
			if len(l.events) > 0 && n+1 < l.events[0].gen {
				l.mu.Unlock()
				return nil, xenError("EVENTS_LOST")
			}
			for _, e := range l.events {
				if e.gen > n && want[e.class] {
					evs = append(evs, eventRecord(e))
				}
			}
			since = l.gen
		}
		counts := map[string]any{}
		for class, refs := range l.refs {
			if want[class] {
				counts[class] = int64(len(refs))
			}
		}
		l.mu.Unlock()
		if len(evs) > 0 || token == "" || !time.Now().Before(deadline) {
			if evs == nil {
				evs = []any{}
			}
			return map[string]any{"events": evs, "token": strconv.FormatUint(since, 10), "valid_ref_counts": counts}, nil
		}
		l.mu.Lock()
		notice := l.notice
		l.mu.Unlock()
		select {
		case <-notice:
		case <-time.After(min(250*time.Millisecond, time.Until(deadline))):
		}
	}
}

func mapKeys[V any](m map[string]V) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func eventRecord(e event) map[string]any {
	r := map[string]any{"id": strconv.FormatUint(e.gen, 10), "timestamp": e.at.UTC().Format("20060102T15:04:05Z"),
		"class": e.class, "operation": e.operation, "ref": e.ref, "obj_uuid": e.ref[len(refPrefix):]}
	if e.snapshot != nil {
		r["snapshot"] = e.snapshot
	}
	return r
}

// maxEventWait bounds event.from's timeout.
const maxEventWait = 5 * time.Minute

func init() {
	declare(
		&Message{Class: "event", Name: "from", Params: []string{"classes", "token", "timeout"}, Role: auth.ReadOnly,
			Summary: "The changes to records of classes (VDI, SR, task, pool, host; * for all) after token, waiting up to timeout seconds: {events, token, valid_ref_counts}",
			Handle: func(c *Ctx, args []any) (any, error) {
				list, ok := args[0].([]any)
				if !ok {
					return nil, xenError(CodeFieldTypeError, "classes")
				}
				var classes []string
				for _, x := range list {
					s, ok := x.(string)
					if !ok {
						return nil, xenError(CodeFieldTypeError, "classes")
					}
					classes = append(classes, s)
				}
				token, err := str(args, 1, "token")
				if err != nil {
					return nil, err
				}
				var secs float64
				switch t := args[2].(type) {
				case float64:
					secs = t
				case int64:
					secs = float64(t)
				case string:
					if secs, err = strconv.ParseFloat(t, 64); err != nil {
						return nil, xenError(CodeFieldTypeError, "timeout")
					}
				default:
					return nil, xenError(CodeFieldTypeError, "timeout")
				}
				wait := min(time.Duration(max(secs, 0)*float64(time.Second)), maxEventWait)
				return c.S.from(classes, token, wait)
			}},
		&Message{Class: "event", Name: "inject", Params: []string{"class", "ref"}, Role: auth.ReadOnly,
			Summary: "Record a change of an object (a mod event), answering the token it follows",
			Handle: func(c *Ctx, args []any) (any, error) {
				class, err := str(args, 0, "class")
				if err != nil {
					return nil, err
				}
				ref, err := str(args, 1, "ref")
				if err != nil {
					return nil, err
				}
				return c.S.inject(class, ref)
			}},
	)
}
