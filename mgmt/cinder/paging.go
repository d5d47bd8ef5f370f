package cinder

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// maxLimit is Cinder's osapi_max_limit: a page's default and largest size.
const maxLimit = 1000

// row is one object of a list: its id, the fields lists sort and filter
// on (strings, or Cinder-formatted times, which sort as strings), and its
// two views.
type row struct {
	id      string
	fields  map[string]string
	summary any
	detail  any
}

// listing is what a list call asks, checked (cinder/api/common.py).
type listing struct {
	keys    []sortKey
	limit   int
	marker  string
	offset  int
	filters map[string]string
}

type sortKey struct {
	name string
	desc bool
}

// parseListing checks a list's parameters against the keys it may sort by.
func parseListing(a *cinderapi.ListArgs, sortable []string) (listing, *fault.Error) {
	l := listing{limit: maxLimit, marker: a.Marker, filters: a.Filters}
	if a.Limit != "" {
		n, err := strconv.Atoi(a.Limit)
		if err != nil || n < 0 {
			return l, invalid("limit param must be an integer, and limit param must be positive")
		}
		l.limit = min(n, maxLimit)
	}
	if a.Offset != "" {
		n, err := strconv.Atoi(a.Offset)
		if err != nil || n < 0 {
			return l, invalid("offset param must be an integer, and offset param must be positive")
		}
		l.offset = n
	}
	if a.Sort != "" && (a.SortKey != "" || a.SortDir != "") {
		return l, invalid("The 'sort_key' and 'sort_dir' parameters are deprecated and cannot be used with the 'sort' parameter.")
	}
	var pairs [][2]string
	if a.Sort != "" {
		for _, p := range strings.Split(a.Sort, ",") {
			k, d, _ := strings.Cut(strings.TrimSpace(p), ":")
			pairs = append(pairs, [2]string{strings.TrimSpace(k), strings.TrimSpace(d)})
		}
	} else {
		pairs = [][2]string{{cmp.Or(a.SortKey, "created_at"), a.SortDir}}
	}
	for _, p := range pairs {
		k, d := p[0], strings.ToLower(cmp.Or(p[1], "desc"))
		if !slices.Contains(sortable, k) {
			return l, invalid(fmt.Sprintf("Invalid input received: sort key %q is not one of %s", k, strings.Join(sortable, ", ")))
		}
		if d != "asc" && d != "desc" {
			return l, invalid(fmt.Sprintf("Invalid input received: sort direction %q must be asc or desc", d))
		}
		l.keys = append(l.keys, sortKey{k, d == "desc"})
	}
	if !slices.ContainsFunc(l.keys, func(k sortKey) bool { return k.name == "id" }) {
		// id breaks ties, in the first key's direction, as Cinder appends it.
		l.keys = append(l.keys, sortKey{"id", l.keys[0].desc})
	}
	for k := range l.filters {
		if k == "" {
			delete(l.filters, k)
		}
	}
	return l, nil
}

func invalid(msg string) *fault.Error {
	return fault.BadRequest(fault.CodeInvalidValue, nil, "%s", msg)
}

// apply filters, sorts and cuts rows: the page and whether it is full
// (a next link is due).
func (l listing) apply(rows []row) ([]row, bool, *fault.Error) {
	rows = slices.DeleteFunc(rows, func(r row) bool {
		for k, want := range l.filters {
			got, ok := r.fields[k]
			if !ok || got != want {
				return true // a filter on an unknown field matches nothing
			}
		}
		return false
	})
	slices.SortStableFunc(rows, func(a, b row) int {
		for _, k := range l.keys {
			c := cmp.Compare(a.fields[k.name], b.fields[k.name])
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
	start := 0
	if l.marker != "" {
		i := slices.IndexFunc(rows, func(r row) bool { return r.id == l.marker })
		if i < 0 {
			return nil, false, fault.New(fault.NotFound, fault.CodeUUIDInvalid, []string{"marker", l.marker},
				"Marker %s could not be found.", l.marker)
		}
		start = i + 1
	}
	start = min(start+l.offset, len(rows))
	end := min(start+l.limit, len(rows))
	page := rows[start:end]
	return page, len(page) > 0 && len(page) == l.limit, nil
}

// nextLink is the href of the page after last: the request's own URL with
// marker set to it.
func nextLink(u *url.URL, host, scheme, last string) cinderapi.Link {
	q := u.Query()
	q.Set("marker", last)
	q.Del("offset")
	next := url.URL{Scheme: scheme, Host: host, Path: u.Path, RawQuery: q.Encode()}
	return cinderapi.Link{Href: next.String(), Rel: "next"}
}
