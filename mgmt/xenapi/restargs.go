package xenapi

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/xenapi/wire"
)

// XenAPI messages whose REST twin is declared in package api take their
// parameters after the object in the order of the declaration's body
// members; they are decoded into the same argument struct, by the same
// checks (rpc.FillArgs), after three translations from XenAPI's values
// to REST's: a handle, in a member tagged xenapi:"ref" (or "ref=SR",
// "ref=VDI": then it must name a live object, else HANDLE_INVALID, as in
// xapi), becomes the uuid it names (OpaqueRef:NULL none); a decimal string
// an integer (XML-RPC carries int64s so); a dateTime (XML-RPC's, or xapi's
// text in a member tagged xenapi:"time") RFC 3339 text.

// bodyParams are a declaration's body members, in order.
func bodyParams(r *api.RPC) []string {
	var out []string
	for _, a := range r.Arguments() {
		if a.Source == rpc.FromBody {
			out = append(out, a.Name)
		}
	}
	return out
}

// restArgs fills dst, d's argument struct, for the object uuid from the
// message's parameters after the object.
func (s *Surface) restArgs(d *api.RPC, dst any, uuid string, params []any) error {
	names := bodyParams(d)
	values := make(map[string]any, len(params))
	for i, p := range params {
		if i < len(names) {
			values[names[i]] = p
		}
	}
	return s.restFill(d, dst, uuid, values)
}

// restFill fills dst, d's argument struct, for the object uuid from
// XenAPI values by member name (a record's fields, or restArgs' positional
// parameters). A nil value is a left-out one: the member keeps its
// default.
func (s *Surface) restFill(d *api.RPC, dst any, uuid string, values map[string]any) error {
	body := make(map[string]json.RawMessage, len(values))
	for _, a := range d.Arguments() { // in order: the first bad member is the one named
		name := a.Name
		p := values[name]
		if a.Source != rpc.FromBody || p == nil {
			continue
		}
		tag := d.Args.FieldByIndex(a.Index).Tag.Get("xenapi")
		if class, ok := strings.CutPrefix(tag, "ref="); ok {
			if p != NullRef {
				id, err := s.live(class, p)
				if err != nil {
					return err
				}
				p = refPrefix + id
			}
			tag = "ref"
		}
		b, err := json.Marshal(restValue(p, a.Type, tag))
		if err != nil {
			return xenError(CodeFieldTypeError, name)
		}
		body[name] = b
	}
	vars := map[string]string{}
	if uuid != "" {
		vars["uuid"] = uuid
	}
	return rpc.FillArgs(d, dst, vars, body)
}

// restValue translates one XenAPI value for a REST member of type t.
// kind is the member's xenapi tag: "ref" for handles, "time" for times.
func restValue(v any, t reflect.Type, kind string) any {
	switch x := v.(type) {
	case string:
		switch {
		case kind == "ref" && x == NullRef:
			return ""
		case kind == "ref":
			return strings.TrimPrefix(x, refPrefix)
		case kind == "time":
			if tm, err := time.Parse(wire.TimeLayout, x); err == nil {
				return tm.Format(time.RFC3339)
			}
		case t.Kind() == reflect.Int64:
			if n, err := strconv.ParseInt(x, 10, 64); err == nil {
				return n
			}
		}
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	}
	return v
}

// live is the uuid of the live object of class a handle names.
func (s *Surface) live(class string, ref any) (string, error) {
	switch class {
	case "SR":
		p, err := s.sr(ref)
		return p.GUID, err
	case "VDI":
		v, err := s.vdi(ref)
		return v.Info.ID, err
	}
	panic("xenapi: no handles of class " + class)
}
