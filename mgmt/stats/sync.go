package stats

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// token is a page token: opaque to clients (base64 of this), it says
// where the next page starts, and for a sync the window it belongs to.
type token struct {
	Kind    string `json:"k"`
	After   string `json:"a"`           // the last id (or data point key) answered
	Section int    `json:"s,omitempty"` // sync: 0 created, 1 updated, 2 deleted
	Start   int64  `json:"f,omitempty"`
	End     int64  `json:"t,omitempty"`
}

func encodeToken(t token) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s, kind string) (token, *fault.Error) {
	var t token
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &t) != nil || t.Kind != kind || t.Section < 0 || t.Section > 2 {
		return token{}, fault.InvalidValue("page", s, "is not a page token this call answered (use its next)")
	}
	return t, nil
}

// SyncResult is what a client cache applies to catch up (vStats'
// cache/sync answer).
type SyncResult struct {
	Created []Spec   `json:"created_acq_specs"`
	Updated []Spec   `json:"updated_acq_specs"`
	Deleted []string `json:"deleted_acq_specs"`
	Next    string   `json:"next,omitempty"`
}

// MaxClockAhead is how far past this daemon's clock an end_epoch may be
// (a client's clock a little ahead).
const MaxClockAhead = 60 * time.Second

// Sync answers what changed in (start, end]: the specs created then (for
// start 0, a full sync: every spec, nothing updated or deleted), those
// created before and updated then, and the ids deleted then; paged, the
// window carried in the page token. end nil is now. A start older than
// the tombstones kept is refused: the answer would miss deletions.
func (s *Service) Sync(start int64, end *int64, page string) (SyncResult, error) {
	now := s.opts.Now()
	t := token{Kind: "sync"}
	if page != "" {
		var ferr *fault.Error
		if t, ferr = decodeToken(page, "sync"); ferr != nil {
			return SyncResult{}, ferr
		}
		if (start != 0 && start != t.Start) || (end != nil && *end != t.End) {
			return SyncResult{}, fault.InvalidValue("page", page, "belongs to the window (%d, %d]: ask with that start_epoch and end_epoch, or none", t.Start, t.End)
		}
	} else {
		t.Start, t.End = start, now.Unix()
		if end != nil {
			t.End = *end
		}
		switch {
		case t.Start < 0:
			return SyncResult{}, fault.InvalidValue("start_epoch", fmt.Sprint(t.Start), "must be 0 (a full sync) or a Unix time in seconds")
		case t.End < 0:
			return SyncResult{}, fault.InvalidValue("end_epoch", fmt.Sprint(t.End), "must be a Unix time in seconds")
		case t.End < t.Start:
			return SyncResult{}, fault.InvalidValue("end_epoch", fmt.Sprint(t.End), "is before start_epoch %d", t.Start)
		case t.End > now.Add(MaxClockAhead).Unix():
			return SyncResult{}, fault.InvalidValue("end_epoch", fmt.Sprint(t.End), "is more than %s past this server's clock (%d)", MaxClockAhead, now.Unix())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.Start != 0 && t.Start < s.purged {
		return SyncResult{}, fault.InvalidValue("start_epoch", fmt.Sprint(t.Start),
			"is older than the deletions this server still remembers (since %d, kept %s): do a full sync (start_epoch=0)",
			s.purged, s.opts.TombstoneRetention)
	}
	// Changes made from now on are stamped after the window answered.
	if t.End > s.horizon {
		if err := s.opts.DB.Put(keyHorizon, t.End); err != nil {
			return SyncResult{}, fault.Internalf(nil, "stats: %v", err)
		}
		s.horizon = t.End
	}
	created, updated, deleted, err := s.changes(t.Start, t.End)
	if err != nil {
		return SyncResult{}, err
	}
	return pageSync(created, updated, deleted, t, s.opts.PageSize), nil
}

// changes lists, in id order, the window's created and updated specs and
// deleted ids.
func (s *Service) changes(start, end int64) (created, updated []Spec, deleted []string, err error) {
	in := func(at int64) bool { return at > start && at <= end }
	for _, id := range s.sortedIDs() {
		st := s.specs[id]
		switch {
		case start == 0 && st.Created <= end, start != 0 && in(st.Created):
			created = append(created, s.view(st))
		case start != 0 && st.Created <= start && in(st.Updated):
			updated = append(updated, s.view(st))
		}
	}
	if start != 0 {
		err = s.opts.DB.Scan(tombPrefix, func(_ string, val []byte) error {
			var tb tombstone
			if err := json.Unmarshal(val, &tb); err != nil {
				return err
			}
			if in(tb.Deleted) {
				deleted = append(deleted, tb.ID)
			}
			return nil
		})
		slices.Sort(deleted)
	}
	return created, updated, deleted, err
}

// pageSync cuts one page from the three lists, after t's position.
func pageSync(created, updated []Spec, deleted []string, t token, size int) SyncResult {
	out := SyncResult{Created: []Spec{}, Updated: []Spec{}, Deleted: []string{}}
	n := 0
	full := func(section int, after string) bool {
		if n < size {
			return false
		}
		out.Next = encodeToken(token{Kind: "sync", After: after, Section: section, Start: t.Start, End: t.End})
		return true
	}
	lists := [2][]Spec{created, updated}
	for sec := t.Section; sec < 2; sec++ {
		for _, sp := range lists[sec] {
			if sec == t.Section && sp.ID <= t.After {
				continue
			}
			if full(sec, lastID(out, sec)) {
				return out
			}
			if sec == 0 {
				out.Created = append(out.Created, sp)
			} else {
				out.Updated = append(out.Updated, sp)
			}
			n++
		}
	}
	for _, id := range deleted {
		if t.Section == 2 && id <= t.After {
			continue
		}
		if full(2, lastID(out, 2)) {
			return out
		}
		out.Deleted = append(out.Deleted, id)
		n++
	}
	return out
}

// lastID is the last id answered in section sec of this page ("" if none:
// the next page starts the section from its beginning).
func lastID(out SyncResult, sec int) string {
	switch {
	case sec == 0 && len(out.Created) > 0:
		return out.Created[len(out.Created)-1].ID
	case sec == 1 && len(out.Updated) > 0:
		return out.Updated[len(out.Updated)-1].ID
	case sec == 2 && len(out.Deleted) > 0:
		return out.Deleted[len(out.Deleted)-1]
	}
	return ""
}
