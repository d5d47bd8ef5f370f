package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vdiskd/vdiskd/internal/bytesize"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// pollInterval is how often --wait reads a task.
var pollInterval = 200 * time.Millisecond

// printResponse prints a success answer of call r.
func (a *app) printResponse(r *api.RPC, resp *response) error {
	switch {
	case resp.status == http.StatusNoContent && r.Method() == http.MethodGet:
		// A read that found nothing (kvol's 204): said on stderr, so
		// stdout stays empty for scripts; create and recovery queued
		// nothing.
		fmt.Fprintln(a.stderr, "no data (HTTP 204): nothing matches")
		return nil
	case resp.status == http.StatusNoContent || len(bytes.TrimSpace(resp.body)) == 0:
		return nil
	case resp.status == http.StatusAccepted && surfaceOf(r).tasks:
		return a.handleTask(r, resp.body)
	case a.jsonOut:
		return printJSON(a.stdout, resp.body)
	case r == &api.VDIListChangedBlocks.RPC && a.field == "":
		var cb api.ChangedBlocks
		if err := json.Unmarshal(resp.body, &cb); err == nil {
			fmt.Fprintln(a.stdout, cb.Bitmap)
			return nil
		}
	}
	return a.human(r, resp.body)
}

// human prints an answer for people, or with --field only that field.
func (a *app) human(r *api.RPC, body []byte) error {
	if a.field == "" {
		return printHuman(a.stdout, r, body)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return &exitError{code: exitAPI, msg: fmt.Sprintf("--field: the answer is not JSON: %v", err)}
	}
	if surfaceOf(r) != &xenREST {
		v = unwrapEnvelope(v)
	}
	rows := []any{v}
	if m, ok := v.(map[string]any); ok {
		if data, ok := m["data"].([]any); ok {
			rows = data
		} else if val, ok := m["value"]; ok && len(m) == 1 {
			rows = []any{map[string]any{a.field: val}}
		}
	} else if list, ok := v.([]any); ok {
		rows = list
	}
	for _, row := range rows {
		m, _ := row.(map[string]any)
		val, ok := m[a.field]
		if !ok {
			return &exitError{code: exitUsage, msg: fmt.Sprintf("--field %s: the answer has no such field", a.field)}
		}
		fmt.Fprintln(a.stdout, scalar(val))
	}
	return nil
}

// printJSON pretty-prints a JSON body, numbers exactly as sent.
func printJSON(w io.Writer, body []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, body, "", "  "); err != nil {
		_, err = w.Write(body) // not JSON: as it came
		return err
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// printHuman prints an answer for people: a list as a table, {"value": x}
// as x, an object as sorted "key: value" lines.
func printHuman(w io.Writer, r *api.RPC, body []byte) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		_, err = w.Write(body)
		return err
	}
	if surfaceOf(r) != &xenREST {
		v = unwrapEnvelope(v)
	}
	printValue(w, r, v)
	return nil
}

// unwrapEnvelope is the content of Cinder's envelope, {"consistencygroup":
// {...}} or {"consistencygroups": [...], "consistencygroup_links": [...]}:
// the one member that is not links.
func unwrapEnvelope(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	var inner any
	n := 0
	for k, x := range m {
		if !strings.HasSuffix(k, "_links") {
			inner, n = x, n+1
		}
	}
	if n != 1 {
		return v
	}
	return inner
}

func printValue(w io.Writer, r *api.RPC, v any) {
	switch x := v.(type) {
	case map[string]any:
		if val, ok := x["value"]; ok && len(x) == 1 {
			fmt.Fprintln(w, scalar(val))
			return
		}
		if data, ok := x["data"].([]any); ok {
			printTable(w, r, data)
			printPaging(w, x["_paging"], len(data))
			return
		}
		printObject(w, x)
	case []any:
		if allObjects(x) && len(x) > 0 {
			printTable(w, r, x)
			return
		}
		for _, e := range x {
			fmt.Fprintln(w, scalar(e))
		}
	default:
		fmt.Fprintln(w, scalar(v))
	}
}

func allObjects(xs []any) bool {
	for _, x := range xs {
		if _, ok := x.(map[string]any); !ok {
			return false
		}
	}
	return true
}

// printObject prints "key: value" lines, keys sorted case-insensitively.
func printObject(w io.Writer, m map[string]any) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := strings.Compare(strings.ToLower(a), strings.ToLower(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		fmt.Fprintf(w, "%s: %s\n", k, scalar(m[k]))
	}
}

// scalar writes a value on one line: strings bare (quoted if they hold a
// line break), numbers as sent, maps, lists and null as compact JSON.
func scalar(v any) string {
	switch x := v.(type) {
	case string:
		if strings.ContainsAny(x, "\r\n") {
			b, _ := json.Marshal(x)
			return string(b)
		}
		return x
	case json.Number:
		return x.String()
	case bool:
		if x {
			return "true"
		}
		return "false"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// column is one column of a table.
type column struct {
	key    string
	format func(any) string
}

func col(key string) column        { return column{key, cell} }
func bytesCol(key string) column   { return column{key, bytesCell} }
func percentCol(key string) column { return column{key, percentCell} }

// classColumns are a list's columns, by class.
var classColumns = map[string][]column{
	"VDI": {col("uuid"), col("name_label"), bytesCol("virtual_size"), bytesCol("physical_utilisation"),
		col("type"), col("is_a_snapshot"), col("cbt_enabled"), col("SR")},
	"vPool": {col("guid"), col("name"), col("backend_type"), bytesCol("size"), bytesCol("stored_data"), col("status")},
	"task":  {col("uuid"), col("name_label"), col("status"), percentCol("progress"), col("object")},
	"user":  {col("username"), col("role")},
}

// callColumns are the columns of calls whose list is not of their class.
var callColumns = map[string][]column{
	"vPool.storagerouters": {col("guid"), col("name"), col("ip"), col("zone"), col("node_type")},
	"VDI.nbd_info":         {col("uri"), col("address"), col("port"), col("exportname")},
}

func columnsFor(r *api.RPC, rows []any) []column {
	cols, ok := callColumns[r.Name()]
	if !ok {
		cols = classColumns[r.Class]
	}
	if len(rows) == 0 {
		return cols
	}
	first := rows[0].(map[string]any)
	for _, c := range cols {
		if _, ok := first[c.key]; ok {
			return cols
		}
	}
	// Rows of an unknown kind: their scalar fields.
	var generic []column
	keys := make([]string, 0, len(first))
	for k := range first {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch first[k].(type) {
		case map[string]any, []any:
		default:
			generic = append(generic, col(k))
		}
	}
	return generic
}

// printTable prints rows (JSON objects) aligned, a header first.
func printTable(w io.Writer, r *api.RPC, rows []any) {
	cols := columnsFor(r, rows)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = strings.ToUpper(c.key)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, row := range rows {
		m, _ := row.(map[string]any)
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = c.format(m[c.key])
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

func cell(v any) string {
	if v == nil {
		return ""
	}
	s := scalar(v)
	return strings.ReplaceAll(s, "\t", " ")
}

func bytesCell(v any) string {
	if n, ok := v.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			return bytesize.Format(i)
		}
	}
	return cell(v)
}

func percentCell(v any) string {
	if n, ok := v.(json.Number); ok {
		if f, err := n.Float64(); err == nil {
			return fmt.Sprintf("%.0f%%", f*100)
		}
	}
	return cell(v)
}

// printPaging says which page a partial list is.
func printPaging(w io.Writer, p any, n int) {
	m, ok := p.(map[string]any)
	if !ok {
		return
	}
	num := func(k string) int64 {
		if x, ok := m[k].(json.Number); ok {
			i, _ := x.Int64()
			return i
		}
		return 0
	}
	total, page, maxPage := num("total_items"), num("current_page"), num("max_page")
	if int64(n) >= total {
		return
	}
	fmt.Fprintf(w, "(page %d of %d: items %d to %d of %d)\n", page, maxPage, num("start_number"), num("end_number"), total)
}

// handleTask handles a 202: prints the task's UUID, or with --wait polls
// the task until it ends and prints its result.
func (a *app) handleTask(r *api.RPC, body []byte) error {
	var t api.Task
	if err := json.Unmarshal(body, &t); err != nil || t.UUID == "" {
		// Not a task after all: print what came.
		if a.jsonOut {
			return printJSON(a.stdout, body)
		}
		return printHuman(a.stdout, r, body)
	}
	if !a.wait {
		if a.jsonOut {
			return printJSON(a.stdout, body)
		}
		fmt.Fprintln(a.stdout, t.UUID)
		return nil
	}
	path := strings.Replace(api.TaskGet.Path, "{uuid}", url.PathEscape(t.UUID), 1)
	for t.Status == api.TaskPending {
		time.Sleep(pollInterval)
		resp, err := a.call(api.TaskGet.Method(), path, nil, nil)
		if err != nil {
			return err
		}
		body = resp.body
		t = api.Task{}
		if err := json.Unmarshal(body, &t); err != nil {
			return &exitError{code: exitAPI, msg: fmt.Sprintf("task answer is not a task: %v", err)}
		}
	}
	if a.jsonOut {
		if err := printJSON(a.stdout, body); err != nil {
			return err
		}
	}
	switch t.Status {
	case api.TaskSuccess:
		if a.jsonOut {
			return nil
		}
		var res struct {
			Result json.RawMessage `json:"result"`
		}
		_ = json.Unmarshal(body, &res)
		if len(res.Result) == 0 || string(res.Result) == "null" {
			fmt.Fprintf(a.stdout, "task %s: %s\n", t.UUID, t.Status)
			return nil
		}
		return a.human(r, res.Result)
	case api.TaskFailure:
		msg := fmt.Sprintf("task %s failed", t.UUID)
		if t.Error != nil {
			msg += ": " + t.Error.Error()
		}
		return &exitError{code: exitAPI, msg: msg}
	default:
		return &exitError{code: exitAPI, msg: fmt.Sprintf("task %s: %s", t.UUID, t.Status)}
	}
}
