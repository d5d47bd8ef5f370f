package xenapi

import (
	"encoding/json"

	"github.com/vdiskd/vdiskd/mgmt/xenrecord"
)

// The VDI field calls (set_*, add_to_*, remove_from_*, add_tags, ...):
// one message per xenrecord.FieldCalls entry, whose parameters after the
// VDI are the REST call's body members, decoded and checked by the same
// declaration and applied by the same service call. They answer void, as
// xapi's setters do.
func init() {
	for _, f := range xenrecord.FieldCalls {
		declare(&Message{Class: "VDI", Name: f.Name(), Params: append([]string{"self"}, f.Params...),
			Role: f.RPC.Role, Summary: f.RPC.Summary,
			Handle: func(c *Ctx, args []any) (any, error) {
				v, err := c.S.vdi(args[0])
				if err != nil {
					return nil, err
				}
				params := make([]json.RawMessage, len(args)-1)
				for i, a := range args[1:] {
					b, err := json.Marshal(a)
					if err != nil {
						return nil, xenError(CodeFieldTypeError, f.Params[i])
					}
					params[i] = b
				}
				if _, err := f.Call(c.S.opts.Volumes, v.Info.ID, c.User, params); err != nil {
					return nil, err
				}
				return "", nil
			}})
	}
}
