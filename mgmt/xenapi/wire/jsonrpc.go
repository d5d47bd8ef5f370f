package wire

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"time"
)

// DecodeJSONRPC reads a JSON-RPC call: {"jsonrpc": "2.0", "method",
// "params": [...], "id"}. Version 1.0 calls (no "jsonrpc") are taken too.
// Integers decode to int64, other numbers to float64.
func DecodeJSONRPC(r io.Reader) (Call, error) {
	body, err := readBody(r)
	if err != nil {
		return Call{}, err
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var req struct {
		JSONRPC string          `json:"jsonrpc"`
		Method  *string         `json:"method"`
		Params  json.RawMessage `json:"params"`
		ID      any             `json:"id"`
	}
	if err := d.Decode(&req); err != nil {
		return Call{}, malformed("not a JSON-RPC call: %v", err)
	}
	if d.More() {
		return Call{}, malformed("data after the call")
	}
	if req.JSONRPC != "" && req.JSONRPC != "2.0" && req.JSONRPC != "1.0" {
		return Call{}, malformed("jsonrpc %q: want 2.0", req.JSONRPC)
	}
	if req.Method == nil {
		return Call{}, malformed("no method")
	}
	c := Call{Method: *req.Method, Params: []any{}, ID: req.ID}
	if len(bytes.TrimSpace(req.Params)) == 0 || string(bytes.TrimSpace(req.Params)) == "null" {
		return c, nil
	}
	pd := json.NewDecoder(bytes.NewReader(req.Params))
	pd.UseNumber()
	var params any
	if err := pd.Decode(&params); err != nil {
		return Call{}, malformed("params: %v", err)
	}
	list, ok := params.([]any)
	if !ok {
		return Call{}, malformed("params must be an array (XenAPI's calls are positional)")
	}
	var b budget
	for i, p := range list {
		v, err := normalize(p, 1, &b)
		if err != nil {
			return Call{}, err
		}
		list[i] = v
	}
	c.Params = list
	return c, nil
}

// normalize turns json.Numbers into int64 or float64 and checks the
// limits.
func normalize(v any, depth int, b *budget) (any, error) {
	if err := b.take(depth); err != nil {
		return nil, err
	}
	switch t := v.(type) {
	case json.Number:
		if n, err := t.Int64(); err == nil {
			return n, nil
		}
		f, err := t.Float64()
		if err != nil {
			return nil, malformed("number %s is out of range", t)
		}
		return f, nil
	case []any:
		for i, x := range t {
			y, err := normalize(x, depth+1, b)
			if err != nil {
				return nil, err
			}
			t[i] = y
		}
	case map[string]any:
		for k, x := range t {
			y, err := normalize(x, depth+1, b)
			if err != nil {
				return nil, err
			}
			t[k] = y
		}
	}
	return v, nil
}

// EncodeJSONRPCResult writes a JSON-RPC 2.0 result.
func EncodeJSONRPCResult(w io.Writer, id any, v any) error {
	return json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": id, "result": jsonValue(v)})
}

// EncodeJSONRPCError writes xapi's JSON-RPC error: the XenAPI code as the
// message, its parameters as data.
func EncodeJSONRPCError(w io.Writer, id any, code string, params []string) error {
	if params == nil {
		params = []string{}
	}
	return json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": id,
		"error": map[string]any{"code": 1, "message": code, "data": params}})
}

// jsonValue is v as JSON-RPC carries it: times as XML-RPC's text, as xapi.
func jsonValue(v any) any {
	switch t := v.(type) {
	case time.Time:
		return t.UTC().Format(TimeLayout)
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = jsonValue(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = jsonValue(x)
		}
		return out
	}
	return v
}

// IsJSON reports whether a body looks like JSON (xapi takes both
// encodings on its one port).
func IsJSON(body []byte) bool { return strings.HasPrefix(strings.TrimSpace(string(body)), "{") }
