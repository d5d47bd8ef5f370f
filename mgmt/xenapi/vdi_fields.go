package xenapi

import (
	"github.com/vdiskd/vdiskd/mgmt/xenrecord"
)

// The VDI field calls (set_*, add_to_*, remove_from_*, add_tags, ...):
// one message per xenrecord.FieldCalls entry, whose parameters after the
// VDI are the REST call's body members (restArgs), checked by the same
// declaration and applied by the same service call. They answer void, as
// xapi's setters do.
func init() {
	for _, f := range xenrecord.FieldCalls {
		declare(&Message{Class: "VDI", Name: f.Name(), Params: append([]string{"self"}, bodyParams(f.RPC)...),
			Role: f.RPC.Role, Summary: f.RPC.Summary,
			Handle: func(c *Ctx, args []any) (any, error) {
				v, err := c.S.vdi(args[0])
				if err != nil {
					return nil, err
				}
				a := f.NewArgs()
				if err := c.S.restArgs(f.RPC, a, v.Info.ID, args[1:]); err != nil {
					return nil, err
				}
				if _, err := f.Do(a, c.S.opts.Volumes, c.User); err != nil {
					return nil, err
				}
				return "", nil
			}})
	}
}
