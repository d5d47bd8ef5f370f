package xenrest

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
)

// defaultPageSize is OVS's.
const defaultPageSize = 10

// page sorts items (sort=field,-field; default by defSort) and cuts the
// requested page, as OVS lists do: without page every item comes back; a
// page past the end is the last page. (OVS answers page=0 with nothing;
// here 0 means absent, as Go's zero value does.)
func page[T any](items []T, p api.PageArgs, defSort string) (api.List[T], error) {
	keys := defSort
	if p.Sort != "" {
		keys = p.Sort
	}
	var less []func(a, b reflect.Value) int
	for _, k := range strings.Split(keys, ",") {
		desc := strings.HasPrefix(k, "-")
		name := strings.TrimPrefix(k, "-")
		idx, ok := jsonField(reflect.TypeFor[T](), name)
		if !ok {
			return api.List[T]{}, api.InvalidValue("sort", k, "no sortable field %q", name)
		}
		less = append(less, func(a, b reflect.Value) int {
			c := compareValues(a.FieldByIndex(idx), b.FieldByIndex(idx))
			if desc {
				return -c
			}
			return c
		})
	}
	slices.SortStableFunc(items, func(a, b T) int {
		va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
		for _, f := range less {
			if c := f(va, vb); c != 0 {
				return c
			}
		}
		return 0
	})
	paging, lo, hi := cut(len(items), p)
	return api.List[T]{Data: orSlice(items[lo:hi]), Paging: paging}, nil
}

// cut is the page p asks of total items in order: its _paging block and
// the bounds of its items. Without page every item is on one page; a page
// past the end is the last page.
func cut(total int, p api.PageArgs) (paging api.Paging, lo, hi int) {
	paging = api.Paging{TotalItems: total, CurrentPage: 1, MaxPage: 1}
	lo, hi = 0, total
	if p.Page > 0 {
		size := p.PageSize
		if size == 0 {
			size = defaultPageSize
		}
		paging.MaxPage = max(1, (total+size-1)/size)
		paging.CurrentPage = min(p.Page, paging.MaxPage)
		lo, hi = (paging.CurrentPage-1)*size, min(paging.CurrentPage*size, total)
	}
	paging.StartNumber, paging.EndNumber = lo+1, hi
	if hi == lo {
		paging.StartNumber = 0
	}
	return paging, lo, hi
}

// jsonField finds the scalar field a JSON name denotes.
func jsonField(t reflect.Type, name string) ([]int, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag != name {
			continue
		}
		switch f.Type.Kind() {
		case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
			return f.Index, true
		}
		if f.Type == reflect.TypeFor[time.Time]() || f.Type == reflect.TypeFor[api.Role]() {
			return f.Index, true
		}
	}
	return nil, false
}

func compareValues(a, b reflect.Value) int {
	switch a.Kind() {
	case reflect.String:
		return cmp.Compare(a.String(), b.String())
	case reflect.Bool:
		return cmp.Compare(boolInt(a.Bool()), boolInt(b.Bool()))
	case reflect.Int, reflect.Int64:
		return cmp.Compare(a.Int(), b.Int())
	case reflect.Float64:
		return cmp.Compare(a.Float(), b.Float())
	}
	if t, ok := a.Interface().(time.Time); ok {
		return t.Compare(b.Interface().(time.Time))
	}
	panic(fmt.Sprintf("mgmt: cannot sort by %s", a.Type()))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pageOfIDs cuts the requested page (p.Page > 0) of ids, already in the
// list's order, and builds records only for that page; ids whose record
// is gone by now are left out of it.
func pageOfIDs[T any](ids []string, p api.PageArgs, rec func(id string) (T, bool)) (api.List[T], error) {
	paging, lo, hi := cut(len(ids), p)
	out := api.List[T]{Data: []T{}, Paging: paging}
	for _, id := range ids[lo:hi] {
		if r, ok := rec(id); ok {
			out.Data = append(out.Data, r)
		}
	}
	return out, nil
}
