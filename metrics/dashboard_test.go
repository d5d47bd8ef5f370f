package metrics_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/vdiskd/vdiskd/metrics"
	"github.com/vdiskd/vdiskd/nbd"
)

// The dashboard in metrics/dashboard is checked against what the exposition
// really exports: every PromQL expression of every panel and template
// variable may only name vdiskd_ series that a scrape returns.

const dashboardPath = "dashboard/vdiskd.json"

type gridPos struct{ H, W, X, Y int }

type dashTarget struct {
	RefID      string          `json:"refId"`
	Expr       string          `json:"expr"`
	Datasource json.RawMessage `json:"datasource"`
}

type dashPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Collapsed  bool            `json:"collapsed"`
	GridPos    *gridPos        `json:"gridPos"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []dashTarget    `json:"targets"`
	Panels     []dashPanel     `json:"panels"` // a collapsed row's
}

type dashVar struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"` // a string, or {"query": "..."}
	Datasource json.RawMessage `json:"datasource"`
	Current    struct {
		Value any `json:"value"`
	} `json:"current"`
}

type dashboard struct {
	UID           string      `json:"uid"`
	Title         string      `json:"title"`
	SchemaVersion int         `json:"schemaVersion"`
	Panels        []dashPanel `json:"panels"`
	Templating    struct {
		List []dashVar `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

// exprSite is one PromQL expression and where the dashboard has it.
type exprSite struct {
	where    string
	expr     string
	template bool // a Grafana variable query: label_values(), query_result()
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

// varQuery is a query variable's query, stored by Grafana 10/11 as an
// object and by older versions as a string.
func varQuery(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(raw, &o)
	return o.Query
}

func datasourceUID(raw json.RawMessage) string {
	var o struct {
		UID string `json:"uid"`
	}
	if json.Unmarshal(raw, &o) == nil {
		return o.UID
	}
	return ""
}

// dashboardSites collects every expression and reports what is wrong with
// the dashboard's structure: panel ids, grid positions, targets, data
// sources and template variables.
func dashboardSites(d dashboard) (sites []exprSite, problems []string) {
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if d.UID == "" || d.Title == "" {
		bad("dashboard: uid and title must be set")
	}
	if d.SchemaVersion < 36 {
		bad("dashboard: schemaVersion %d, want a Grafana 10/11 one (>= 36)", d.SchemaVersion)
	}

	vars := map[string]dashVar{}
	for _, v := range d.Templating.List {
		if v.Name == "" {
			bad("template variable without a name")
			continue
		}
		if _, dup := vars[v.Name]; dup {
			bad("template variable %q defined twice", v.Name)
		}
		vars[v.Name] = v
	}
	if ds, ok := vars["datasource"]; !ok || ds.Type != "datasource" || varQuery(ds.Query) != "prometheus" {
		bad(`dashboard: want a template variable "datasource" of type datasource, query prometheus`)
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		where := fmt.Sprintf("template variable %q", v.Name)
		q := varQuery(v.Query)
		if q == "" {
			bad("%s: empty query", where)
			continue
		}
		if uid := datasourceUID(v.Datasource); uid != "${datasource}" {
			bad("%s: data source %q, want ${datasource}", where, uid)
		}
		sites = append(sites, exprSite{where: where, expr: q, template: true})
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			sites = append(sites, exprSite{where: fmt.Sprintf("annotation %q", a.Name), expr: a.Expr})
		}
	}

	ids := map[int]string{}
	var walk func(ps []dashPanel, in string)
	walk = func(ps []dashPanel, in string) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %q (id %d%s)", p.Title, p.ID, in)
			if p.Title == "" {
				bad("%s: no title", where)
			}
			if p.ID <= 0 {
				bad("%s: id must be a positive integer", where)
			} else if other, dup := ids[p.ID]; dup {
				bad("%s: id already used by %s", where, other)
			} else {
				ids[p.ID] = where
			}
			if g := p.GridPos; g == nil {
				bad("%s: no gridPos", where)
			} else if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				bad("%s: gridPos %+v outside the 24-column grid", where, *g)
			}
			if p.Type == "row" {
				if len(p.Targets) > 0 {
					bad("%s: a row has no queries", where)
				}
				if !p.Collapsed && len(p.Panels) > 0 {
					bad("%s: an expanded row keeps its panels at the top level, not nested", where)
				}
				walk(p.Panels, fmt.Sprintf(", in row %q", p.Title))
				continue
			}
			if p.Type == "" {
				bad("%s: no type", where)
			}
			if uid := datasourceUID(p.Datasource); uid != "${datasource}" {
				bad("%s: data source %q, want ${datasource}", where, uid)
			}
			if len(p.Targets) == 0 {
				bad("%s: no targets", where)
			}
			refIDs := map[string]bool{}
			for i, tg := range p.Targets {
				tw := fmt.Sprintf("%s target %q", where, tg.RefID)
				if tg.RefID == "" {
					bad("%s: target %d has no refId", where, i)
				} else if refIDs[tg.RefID] {
					bad("%s: refId used twice", tw)
				}
				refIDs[tg.RefID] = true
				if len(tg.Datasource) > 0 {
					if uid := datasourceUID(tg.Datasource); uid != "${datasource}" {
						bad("%s: data source %q, want ${datasource}", tw, uid)
					}
				}
				if strings.TrimSpace(tg.Expr) == "" {
					bad("%s: empty expr", tw)
					continue
				}
				sites = append(sites, exprSite{where: tw, expr: tg.Expr})
			}
		}
	}
	walk(d.Panels, "")

	// Top-level panels (rows included) must not overlap.
	for i, a := range d.Panels {
		for _, b := range d.Panels[i+1:] {
			if a.GridPos == nil || b.GridPos == nil {
				continue
			}
			ga, gb := *a.GridPos, *b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				bad("panels %q (id %d) and %q (id %d) overlap", a.Title, a.ID, b.Title, b.ID)
			}
		}
	}
	return sites, problems
}

// ---- a small PromQL scanner ----------------------------------------------
//
// prometheus/prometheus's parser would pull the whole Prometheus server
// module into go.mod for a test; this scanner only needs to tell metric
// names from everything else an identifier can be in PromQL: functions
// and aggregations (followed by "("), keywords, label names (inside {...}
// and in by/without/on/ignoring/group_left/group_right lists), durations
// (inside [...]), and Grafana's $variables.

type tokKind int

const (
	tIdent tokKind = iota
	tString
	tNumber
	tVar
	tPunct
)

type token struct {
	kind tokKind
	text string // a tVar's is the variable's name
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentChar(c byte) bool  { return isIdentStart(c) || isDigit(c) || c == ':' }

func lexPromQL(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'':
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' {
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at offset %d", i)
			}
			toks = append(toks, token{tString, s[i : j+1]})
			i = j + 1
		case c == '`':
			j := strings.IndexByte(s[i+1:], '`')
			if j < 0 {
				return nil, fmt.Errorf("unterminated raw string at offset %d", i)
			}
			toks = append(toks, token{tString, s[i : i+j+2]})
			i += j + 2
		case c == '$':
			j := i + 1
			if j < len(s) && s[j] == '{' {
				k := strings.IndexByte(s[j:], '}')
				if k < 0 {
					return nil, fmt.Errorf("unterminated ${ at offset %d", i)
				}
				name, _, _ := strings.Cut(s[j+1:j+k], ":") // ${var:format}
				toks = append(toks, token{tVar, name})
				i = j + k + 1
				continue
			}
			for j < len(s) && (isIdentStart(s[j]) || isDigit(s[j])) {
				j++
			}
			if j == i+1 {
				return nil, fmt.Errorf("lone $ at offset %d", i)
			}
			toks = append(toks, token{tVar, s[i+1 : j]})
			i = j
		case c == '[' && strings.HasPrefix(s[i:], "[["): // Grafana's old [[var]]
			k := strings.Index(s[i:], "]]")
			if k < 0 {
				return nil, fmt.Errorf("unterminated [[ at offset %d", i)
			}
			name, _, _ := strings.Cut(s[i+2:i+k], ":")
			toks = append(toks, token{tVar, name})
			i += k + 2
		case isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1]):
			// Numbers, hex, exponents and durations (5m, 1h30m).
			j := i
			for j < len(s) && (isIdentChar(s[j]) && s[j] != ':' || s[j] == '.') {
				if (s[j] == 'e' || s[j] == 'E') && j+2 < len(s) && (s[j+1] == '+' || s[j+1] == '-') && isDigit(s[j+2]) {
					j += 2
				}
				j++
			}
			toks = append(toks, token{tNumber, s[i:j]})
			i = j
		case isIdentStart(c):
			j := i + 1
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			toks = append(toks, token{tIdent, s[i:j]})
			i = j
		default:
			toks = append(toks, token{tPunct, string(c)})
			i++
		}
	}
	return toks, nil
}

var (
	// Keywords followed by a parenthesised list of label names.
	promqlLabelListKeywords = set("by", "without", "on", "ignoring", "group_left", "group_right")
	promqlKeywords          = set("bool", "and", "or", "unless", "offset", "atan2", "inf", "nan")
	promqlAggregations      = set("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
		"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio")
	promqlFunctions = set(
		"abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
		"day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor",
		"histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
		"histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters",
		"double_exponential_smoothing", "hour", "idelta", "increase", "irate", "label_replace",
		"label_join", "ln", "log2", "log10", "minute", "month", "predict_linear", "rate", "resets",
		"round", "scalar", "sgn", "sort", "sort_desc", "sort_by_label", "sort_by_label_desc", "sqrt",
		"time", "timestamp", "vector", "year", "start", "end",
		"avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
		"quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
		"present_over_time", "mad_over_time",
		"acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh",
		"deg", "rad", "pi",
		// Grafana's variable queries (label_values is handled apart).
		"query_result", "label_names",
	)
)

func set(xs ...string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// promqlRefs returns the metric names an expression selects (every
// identifier in a metric name's position, whatever its namespace) and the
// Grafana variables it uses.
func promqlRefs(expr string) (names, vars []string, err error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return nil, nil, err
	}
	// Variables are interpolated inside strings too: find them all.
	for _, m := range grafanaVar.FindAllStringSubmatch(expr, -1) {
		vars = append(vars, m[1]+m[2]+m[3])
	}
	return names, vars, scanRefs(toks, &names)
}

// grafanaVar matches $var, ${var} or ${var:format}, and [[var]].
var grafanaVar = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)(?::[^\]]*)?\]\]`)

func isPunct(t token, s string) bool { return t.kind == tPunct && t.text == s }

var closer = map[string]string{"(": ")", "{": "}", "[": "]"}

// matching returns the index of the bracket closing toks[open].
func matching(toks []token, open int) (int, error) {
	var stack []string
	for i := open; i < len(toks); i++ {
		t := toks[i]
		if t.kind != tPunct {
			continue
		}
		switch t.text {
		case "(", "{", "[":
			stack = append(stack, closer[t.text])
		case ")", "}", "]":
			if len(stack) == 0 || stack[len(stack)-1] != t.text {
				return 0, fmt.Errorf("unbalanced %q", t.text)
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("unclosed %q", toks[open].text)
}

func scanRefs(toks []token, names *[]string) error {
	var stack []string // expected closers; "L)" closes a label list
	top := func() string {
		if len(stack) == 0 {
			return ""
		}
		return stack[len(stack)-1]
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		next := token{kind: -1}
		if i+1 < len(toks) {
			next = toks[i+1]
		}
		switch t.kind {
		case tPunct:
			switch t.text {
			case "(", "{", "[":
				stack = append(stack, closer[t.text])
			case ")", "}", "]":
				want := strings.TrimPrefix(top(), "L")
				if want != t.text {
					return fmt.Errorf("unbalanced %q", t.text)
				}
				stack = stack[:len(stack)-1]
			}
		case tIdent:
			switch top() {
			case "}": // a label matcher's name
				if t.text == "__name__" {
					return fmt.Errorf("selector by __name__: name the metric instead")
				}
				continue
			case "]", "L)": // a duration, or a label list
				continue
			}
			low := strings.ToLower(t.text)
			switch {
			case promqlLabelListKeywords[low]:
				if isPunct(next, "(") {
					stack = append(stack, "L)")
					i++
				}
			case promqlKeywords[low]:
			case isPunct(next, "(") && low == "label_values":
				// Grafana: label_values(label) or label_values(selector, label).
				end, err := matching(toks, i+1)
				if err != nil {
					return err
				}
				args := splitArgs(toks[i+2 : end])
				last := args[len(args)-1]
				if len(args) > 2 || len(last) != 1 || last[0].kind != tIdent {
					return fmt.Errorf("label_values wants (label) or (selector, label)")
				}
				if len(args) == 2 {
					if err := scanRefs(args[0], names); err != nil {
						return err
					}
				}
				i = end
			case promqlAggregations[low] && (isPunct(next, "(") || next.kind == tIdent &&
				(strings.EqualFold(next.text, "by") || strings.EqualFold(next.text, "without"))):
				// sum(...), sum by (...) (...)
			case isPunct(next, "("):
				if !promqlFunctions[low] {
					return fmt.Errorf("unknown function %s()", t.text)
				}
			default:
				*names = append(*names, t.text)
			}
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed bracket, %q expected", strings.TrimPrefix(top(), "L"))
	}
	return nil
}

// splitArgs splits a call's argument tokens at its top-level commas.
func splitArgs(toks []token) [][]token {
	args := [][]token{nil}
	depth := 0
	for _, t := range toks {
		if t.kind == tPunct {
			switch t.text {
			case "(", "{", "[":
				depth++
			case ")", "}", "]":
				depth--
			case ",":
				if depth == 0 {
					args = append(args, nil)
					continue
				}
			}
		}
		args[len(args)-1] = append(args[len(args)-1], t)
	}
	return args
}

// ---- checking names against the exposition --------------------------------

var (
	vdiskdMetric = regexp.MustCompile(`^vdiskd_[a-z0-9_]+$`)
	// Other exporters' and collectors' namespaces, searched for anywhere in
	// an expression (label values and strings included) as a backstop.
	foreignMetric = regexp.MustCompile(`\b(process|go|node|promhttp|prometheus|scrape|grafana)_[a-z0-9_]+`)
)

// families maps the gathered family names to their types.
func families(mfs []*dto.MetricFamily) map[string]dto.MetricType {
	m := make(map[string]dto.MetricType, len(mfs))
	for _, mf := range mfs {
		m[mf.GetName()] = mf.GetType()
	}
	return m
}

// resolveMetric says why a series name is not one the exposition exports
// ("" if it is): a histogram family x has the series x_bucket, x_sum and
// x_count and no series named x; a summary x has x, x_sum and x_count.
func resolveMetric(name string, fams map[string]dto.MetricType) string {
	if typ, ok := fams[name]; ok {
		if typ == dto.MetricType_HISTOGRAM {
			return "is a histogram: select its _bucket, _sum or _count series"
		}
		return ""
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch typ, found := fams[base]; {
		case found && typ == dto.MetricType_HISTOGRAM:
			return ""
		case found && typ == dto.MetricType_SUMMARY && suffix != "_bucket":
			return ""
		case found:
			return fmt.Sprintf("is not exported (%s is a %s, not a histogram)", base, strings.ToLower(typ.String()))
		}
	}
	return "is not exported by vdiskd"
}

// exprProblems checks one expression: it must scan, and every series it
// selects must be a vdiskd_ one that the exposition exports.
func exprProblems(site exprSite, fams map[string]dto.MetricType) (problems, vars []string) {
	names, vars, err := promqlRefs(site.expr)
	if err != nil {
		return []string{fmt.Sprintf("%s: cannot scan %q: %v", site.where, site.expr, err)}, nil
	}
	if len(names) == 0 && !site.template {
		problems = append(problems, fmt.Sprintf("%s: selects no metric: %q", site.where, site.expr))
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		if !vdiskdMetric.MatchString(n) {
			problems = append(problems, fmt.Sprintf("%s: %s is not a vdiskd_ metric (the dashboard uses vdiskd's own series only)", site.where, n))
			continue
		}
		if why := resolveMetric(n, fams); why != "" {
			problems = append(problems, fmt.Sprintf("%s: %s %s", site.where, n, why))
		}
	}
	for _, m := range foreignMetric.FindAllString(site.expr, -1) {
		if !seen[m] {
			problems = append(problems, fmt.Sprintf("%s: mentions %s, from another namespace", site.where, m))
		}
	}
	return problems, vars
}

// ---- the exposition under test ---------------------------------------------

// gatherExposition scrapes an exposition over fake sources (one vPool, two
// vDisks, an open store) after one NBD request, one NBD error and two REST
// calls, so that every labelled family has a series.
func gatherExposition(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	s := metrics.Sample{ReadOps: 3, ReadBytes: 3 << 12, WriteOps: 2, WriteBytes: 2 << 12,
		BackendReads: 4, BackendReadBytes: 3 << 12, BackendWrites: 2, BackendWriteBytes: 9000,
		IndexHits: 2, IndexMisses: 1, CacheHits: 2, CacheMisses: 1}
	e := metrics.NewExposition(metrics.Sources{
		Disks: func() []metrics.DiskInfo {
			return []metrics.DiskInfo{
				{ID: "d1", Pool: "p1", Name: "disk one", VirtualSize: 1 << 30, PhysicalUtilisation: 5 << 12, Sample: s},
				{ID: "d2", Pool: "p1", Name: "disk two", VirtualSize: 2 << 30, Sample: metrics.Sample{}},
			}
		},
		Pools: func() []metrics.PoolInfo {
			return []metrics.PoolInfo{{GUID: "p1", Name: "pool one", Size: 1 << 40, StoredData: 5 << 12}}
		},
		Pebble: func() *pebble.Metrics { return &pebble.Metrics{} },
		Segments: func() metrics.SegmentSample {
			return metrics.SegmentSample{Files: 3, Bytes: 5 << 12, Reclaimed: 1, Moved: 2}
		},
		Replications: func() []metrics.ReplicationInfo {
			return []metrics.ReplicationInfo{{Seq: 1, VPool: "p1", DstZone: "b", State: "active", LagSeconds: 12, ShippedBytes: 1 << 20}}
		},
	})
	e.NBD.Connections(1)
	e.NBD.RequestStarted(nbd.Commands[0])
	e.NBD.RequestDone(nbd.Commands[0], time.Millisecond, 0)
	e.NBD.RequestStarted(nbd.Commands[1])
	e.NBD.RequestDone(nbd.Commands[1], time.Millisecond, nbd.EIO)
	e.HTTP.Observe("VDI.get_all", 200, time.Millisecond)
	e.HTTP.Observe("VDI.create", 500, time.Millisecond)
	mfs, err := e.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// ---- tests -----------------------------------------------------------------

// TestDashboard checks the dashboard's structure and that every series it
// queries is one vdiskd exports.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	sites, problems := dashboardSites(d)
	for _, p := range problems {
		t.Error(p)
	}
	if len(sites) == 0 {
		t.Fatal("no expressions found in the dashboard")
	}

	fams := families(gatherExposition(t))
	varNames := map[string]bool{}
	for _, v := range d.Templating.List {
		varNames[v.Name] = true
	}
	used := map[string]bool{}
	for _, site := range sites {
		problems, vars := exprProblems(site, fams)
		for _, p := range problems {
			t.Error(p)
		}
		for _, v := range vars {
			if !varNames[v] && !strings.HasPrefix(v, "__") {
				t.Errorf("%s: uses $%s, which is no template variable", site.where, v)
			}
		}
		names, _, _ := promqlRefs(site.expr)
		for _, n := range names {
			used[n] = true
		}
	}

	// Not a failure: a family may be exported for other consumers.
	var unused []string
	for name, typ := range fams {
		if !strings.HasPrefix(name, "vdiskd_") {
			continue
		}
		hit := used[name]
		if typ == dto.MetricType_HISTOGRAM {
			hit = used[name+"_bucket"] || used[name+"_sum"] || used[name+"_count"]
		}
		if !hit {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Logf("vdiskd families no panel shows: %s", strings.Join(unused, ", "))
	}
}

// TestDashboardChecksFail feeds the checks expressions they must reject,
// and some they must accept, so TestDashboard cannot pass vacuously.
func TestDashboardChecksFail(t *testing.T) {
	fams := families(gatherExposition(t))
	for _, tc := range []struct {
		expr string
		want string // a substring of the one problem expected; "" for none
	}{
		{`rate(vdiskd_no_such_metric_total[5m])`, "vdiskd_no_such_metric_total is not exported"},
		{`sum by (vpool) (rate(vdiskd_vdisk_read_operations_total{vpool=~"$vpool"}[$__rate_interval]))` +
			` * on(vpool) group_left(name) vdiskd_vpool_infoo`, "vdiskd_vpool_infoo is not exported"},
		{`process_resident_memory_bytes`, "process_resident_memory_bytes is not a vdiskd_ metric"},
		{`rate(go_gc_duration_seconds_count[5m])`, "go_gc_duration_seconds_count is not a vdiskd_ metric"},
		{`vdiskd_pebble_l0_files / on() node_filesystem_size_bytes`, "node_filesystem_size_bytes is not a vdiskd_ metric"},
		{`vdiskd_nbd_connections{job="go_thing"}`, "mentions go_thing"},
		{`{__name__="vdiskd_nbd_connections"}`, "__name__"},
		{`vdiskd_nbd_request_duration_seconds`, "is a histogram"},
		{`vdiskd_vdisk_info_bucket`, "vdiskd_vdisk_info is a gauge, not a histogram"},
		{`rte(vdiskd_nbd_connections_accepted_total[5m])`, "unknown function rte()"},
		{`sum(rate(vdiskd_nbd_connections_accepted_total[5m])`, "unclosed"},
		{`vdiskd_nbd_connections{instance="x}`, "unterminated string"},
		{`1 + 2`, "selects no metric"},

		{`histogram_quantile(0.99, sum by (command, le) (rate(vdiskd_nbd_request_duration_seconds_bucket[$__rate_interval])))`, ""},
		{`sum(rate(vdiskd_http_request_duration_seconds_sum[5m])) / sum(rate(vdiskd_http_request_duration_seconds_count[5m]))`, ""},
		{`topk($topk, (sum by (vpool, vdisk) (rate(vdiskd_vdisk_write_bytes_total{vdisk=~"${vdisk:regex}"}[1h:5m] offset 1d))) * on(vpool, vdisk) group_left(name) vdiskd_vdisk_info)`, ""},
		{`sum(vdiskd_pebble_l0_files) without (instance, job) > bool 10 or vector(0)`, ""},
	} {
		probs, _ := exprProblems(exprSite{where: "test", expr: tc.expr}, fams)
		switch {
		case tc.want == "" && len(probs) > 0:
			t.Errorf("%s: unexpected problems %q", tc.expr, probs)
		case tc.want != "" && (len(probs) != 1 || !strings.Contains(probs[0], tc.want)):
			t.Errorf("%s: got problems %q, want one about %q", tc.expr, probs, tc.want)
		}
	}

	names, vars, err := promqlRefs(`label_values(vdiskd_vdisk_info{vpool=~"$vpool"}, vdisk)`)
	if err != nil || strings.Join(names, ",") != "vdiskd_vdisk_info" || strings.Join(vars, ",") != "vpool" {
		t.Errorf("label_values: names %q vars %q err %v", names, vars, err)
	}
	if names, _, err := promqlRefs(`label_values(instance)`); err != nil || len(names) != 0 {
		t.Errorf("label_values(instance): names %q err %v", names, err)
	}

	// The structural checks, on a broken copy.
	var d dashboard
	d.UID, d.Title, d.SchemaVersion = "x", "x", 39
	d.Templating.List = []dashVar{{Name: "datasource", Type: "datasource", Query: json.RawMessage(`"prometheus"`)}}
	ds := json.RawMessage(`{"type":"prometheus","uid":"${datasource}"}`)
	d.Panels = []dashPanel{
		{ID: 1, Type: "timeseries", Title: "no targets", Datasource: ds, GridPos: &gridPos{8, 12, 0, 0}},
		{ID: 1, Type: "timeseries", Title: "same id", Datasource: ds, GridPos: &gridPos{8, 12, 6, 0},
			Targets: []dashTarget{{RefID: "A", Expr: "vdiskd_nbd_connections"}}},
	}
	_, probs := dashboardSites(d)
	for _, want := range []string{`"no targets" (id 1): no targets`, `"same id" (id 1): id already used`, "overlap"} {
		found := false
		for _, p := range probs {
			found = found || strings.Contains(p, want)
		}
		if !found {
			t.Errorf("structural checks missed %q; got %q", want, probs)
		}
	}
}

// TestExpositionLint runs promlint over a scrape.
func TestExpositionLint(t *testing.T) {
	problems, err := promlint.NewWithMetricFamilies(gatherExposition(t)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestDashboardPromQLSyntax parses every expression with Prometheus's own
// parser, through promtool check rules. A missing promtool fails: make
// test installs it (scripts/ensure-tools.sh).
func TestDashboardPromQLSyntax(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: run `make tools` (scripts/ensure-tools.sh)")
	}
	d := loadDashboard(t)
	sites, _ := dashboardSites(d)
	values := map[string]string{}
	for _, v := range d.Templating.List {
		if s, ok := v.Current.Value.(string); ok && v.Type == "custom" {
			values[v.Name] = s
		}
	}
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	var where []string
	for _, s := range sites {
		expr := s.expr
		if s.template { // Grafana's wrappers around a PromQL selector
			if inner, ok := strings.CutPrefix(expr, "query_result("); ok {
				expr = strings.TrimSuffix(inner, ")")
			} else if inner, ok := strings.CutPrefix(expr, "label_values("); ok {
				i := strings.LastIndexByte(inner, ',')
				if i < 0 {
					continue
				}
				expr = inner[:i]
			}
		}
		expr = grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
			sm := grafanaVar.FindStringSubmatch(m)
			name := sm[1] + sm[2] + sm[3]
			switch {
			case values[name] != "":
				return values[name]
			case strings.HasPrefix(name, "__"): // $__rate_interval and friends
				return "1m"
			}
			return ".*" // dashboard variables are regex matchers' values
		})
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:expr_%d", len(rules)), Expr: expr})
		where = append(where, s.where)
	}
	b, err := json.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rules.yml") // JSON is YAML
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		msg := string(out)
		// promtool names failing rules by index: point at the panels.
		for i := len(where) - 1; i >= 0; i-- {
			msg = strings.ReplaceAll(msg, fmt.Sprintf("dashboard:expr_%d", i), where[i])
		}
		t.Errorf("promtool check rules: %v\n%s", err, msg)
	}
}
