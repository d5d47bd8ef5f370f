package xenapi

import (
	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// A class is a XenAPI class whose objects this surface reads: how to list
// them and read one's record, and the record's fields. Its read messages
// (get_all, get_all_records, get_record, get_by_uuid, get_<field> for
// each field, get_by_name_label where objects have names) all come from
// this one declaration, and events compare the same records.
type class struct {
	name   string
	uuids  func(s *Surface) []string
	record func(s *Surface, uuid string) (map[string]any, bool)
	fields []string
	named  bool
	// byName, if set, answers get_by_name_label without building every
	// record (a class with many objects); else the records are compared.
	byName func(s *Surface, label string) []string
}

// classes are every class, by name; events watch them all.
var classes = map[string]*class{}

func declareClass(k *class) {
	classes[k.name] = k
	ms := []*Message{
		{Class: k.name, Name: "get_all", Role: auth.ReadOnly, Summary: "Every " + k.name + "'s ref",
			Handle: func(c *Ctx, _ []any) (any, error) { return refs(k.uuids(c.S)), nil }},
		{Class: k.name, Name: "get_all_records", Role: auth.ReadOnly, Summary: "Every " + k.name + "'s record, by ref",
			Handle: func(c *Ctx, _ []any) (any, error) {
				out := map[string]any{}
				for ref, r := range k.records(c.S) {
					out[ref] = r
				}
				return out, nil
			}},
		{Class: k.name, Name: "get_record", Params: []string{"self"}, Role: auth.ReadOnly, Summary: "A " + k.name + "'s record",
			Handle: func(c *Ctx, args []any) (any, error) { return k.get(c.S, args[0]) }},
		{Class: k.name, Name: "get_by_uuid", Params: []string{"uuid"}, Role: auth.ReadOnly, Summary: "The " + k.name + " with a uuid",
			Handle: func(c *Ctx, args []any) (any, error) {
				id, err := str(args, 0, "uuid")
				if err != nil {
					return nil, err
				}
				if _, ok := k.record(c.S, id); !ok {
					return nil, xenError(fault.CodeUUIDInvalid, k.name, id)
				}
				return Ref(id), nil
			}},
	}
	if k.named {
		ms = append(ms, &Message{Class: k.name, Name: "get_by_name_label", Params: []string{"label"}, Role: auth.ReadOnly,
			Summary: "The " + k.name + "s with a name",
			Handle: func(c *Ctx, args []any) (any, error) {
				label, err := str(args, 0, "label")
				if err != nil {
					return nil, err
				}
				if k.byName != nil {
					return refs(k.byName(c.S, label)), nil
				}
				out := []string{}
				for _, id := range k.uuids(c.S) {
					if r, ok := k.record(c.S, id); ok && r["name_label"] == label {
						out = append(out, id)
					}
				}
				return refs(out), nil
			}})
	}
	for _, f := range k.fields {
		ms = append(ms, &Message{Class: k.name, Name: "get_" + f, Params: []string{"self"}, Role: auth.ReadOnly,
			Summary: "A " + k.name + "'s " + f,
			Handle: func(c *Ctx, args []any) (any, error) {
				r, err := k.get(c.S, args[0])
				if err != nil {
					return nil, err
				}
				return r[f], nil
			}})
	}
	declare(ms...)
}

// get is the record a handle names, or HANDLE_INVALID.
func (k *class) get(s *Surface, ref any) (map[string]any, error) {
	r, _ := ref.(string)
	id, err := uuidOf(k.name, r)
	if err != nil {
		return nil, err
	}
	rec, ok := k.record(s, id)
	if !ok {
		return nil, xenError(CodeHandleInvalid, k.name, r)
	}
	return rec, nil
}

// records are every record of the class now, by ref.
func (k *class) records(s *Surface) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, id := range k.uuids(s) {
		if r, ok := k.record(s, id); ok {
			out[Ref(id)] = r
		}
	}
	return out
}
