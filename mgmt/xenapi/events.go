package xenapi

import (
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/auth"
)

// Events are found by comparing the records of the classes event.from
// watches with what they were at the previous look: whatever changed them
// (a XenAPI or REST call, an NBD client attaching, the replicator) shows,
// and no service has to announce anything. Each change gets the next
// generation; a token is a generation.

// eventClasses are the classes whose records events report.
var eventClasses = []string{"VDI", "SR", "task", "pool", "host", "VBD", "VM"}

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
	seen   map[string]seenRecord // by ref
	events []event               // oldest first, at most maxEvents
	looked time.Time             // the last comparison
}

type seenRecord struct {
	class string
	json  string
	rec   map[string]any
}

// maxEvents bounds the events kept; a token older than them is
// EVENTS_LOST, as xapi's.
const maxEvents = 100000

// look compares every record with the last look, at most every 250 ms
// (each look reads every record: O(VDIs); a change feed from the volume
// service should replace it for large pools).
func (s *Surface) look(force bool) {
	l := &s.events
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !force && now.Sub(l.looked) < 250*time.Millisecond {
		return
	}
	l.looked = now
	if l.seen == nil {
		l.seen = map[string]seenRecord{}
	}
	current := map[string]seenRecord{}
	for _, class := range eventClasses {
		for ref, rec := range s.records(class) {
			b, _ := json.Marshal(rec)
			current[ref] = seenRecord{class: class, json: string(b), rec: rec}
		}
	}
	emit := func(class, op, ref string, rec map[string]any) {
		l.gen++
		l.events = append(l.events, event{gen: l.gen, class: class, operation: op, ref: ref, snapshot: rec, at: now})
	}
	for _, ref := range slices.Sorted(mapKeys(current)) {
		cur := current[ref]
		old, ok := l.seen[ref]
		switch {
		case !ok:
			emit(cur.class, "add", ref, cur.rec)
		case old.json != cur.json:
			emit(cur.class, "mod", ref, cur.rec)
		}
	}
	for ref, old := range l.seen {
		if _, ok := current[ref]; !ok {
			emit(old.class, "del", ref, nil)
		}
	}
	l.seen = current
	if n := len(l.events) - maxEvents; n > 0 {
		l.events = slices.Delete(l.events, 0, n)
	}
}

// records are every record of a class now, by ref: what get_all_records
// answers and events compare.
func (s *Surface) records(class string) map[string]map[string]any {
	return classes[class].records(s)
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
		for _, r := range l.seen {
			if want[r.class] {
				n, _ := counts[r.class].(int64)
				counts[r.class] = n + 1
			}
		}
		l.mu.Unlock()
		if len(evs) > 0 || token == "" || !time.Now().Before(deadline) {
			if evs == nil {
				evs = []any{}
			}
			return map[string]any{"events": evs, "token": strconv.FormatUint(since, 10), "valid_ref_counts": counts}, nil
		}
		time.Sleep(min(250*time.Millisecond, time.Until(deadline)))
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
