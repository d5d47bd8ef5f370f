package nbd

import "strings"

// Meta-context queries. proto.md leaves the syntax to each namespace but
// says an empty leaf-name is a wildcard for LIST and selects nothing in
// SET. vdiskd goes one step further for LIST, as qemu does: a query that
// ends in a colon lists every context it prefixes, so "qemu:dirty-bitmap:"
// lists the bitmaps. SET selects exact names only: qemu rejects a reply
// that holds anything it did not ask for.

// matchList returns the contexts LIST_META_CONTEXT answers for queries.
func matchList(available, queries []string) []string {
	if len(queries) == 0 {
		return available
	}
	exact := make(map[string]bool, len(queries))
	var prefixes []string
	for _, q := range queries {
		if strings.HasSuffix(q, ":") {
			prefixes = append(prefixes, q)
		} else {
			exact[q] = true
		}
	}
	var out []string
	for _, name := range available {
		if exact[name] || hasAnyPrefix(name, prefixes) {
			out = append(out, name)
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// matchSet returns the contexts SET_META_CONTEXT selects for queries, each
// once, in the order asked.
func matchSet(available, queries []string) []string {
	have := make(map[string]bool, len(available))
	for _, name := range available {
		have[name] = true
	}
	var out []string
	for _, q := range queries {
		if have[q] {
			out = append(out, q)
			delete(have, q)
		}
	}
	return out
}
