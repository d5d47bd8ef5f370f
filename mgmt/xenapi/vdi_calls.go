package xenapi

import (
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/cbt"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/volume"
	"github.com/vdiskd/vdiskd/mgmt/xenrecord"
)

// The VDI messages that change things. Each is the volume service's call
// the REST surface makes for the same XenAPI message, with that call's
// minimum role: the rules are the service's, never repeated here.

// vdiRef answers a VDI's handle, for the calls that make one.
func vdiRef(v volume.VDI, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return Ref(v.Info.ID), nil
}

// onVDI declares a message taking a VDI and more, with the REST call's role.
func onVDI(name string, rest *api.RPC, params []string, summary string, fn func(c *Ctx, id string, args []any) (any, error)) *Message {
	return &Message{Class: "VDI", Name: name, Params: append([]string{"vdi"}, params...), Role: rest.Role, Summary: summary,
		Handle: func(c *Ctx, args []any) (any, error) {
			v, err := c.S.vdi(args[0])
			if err != nil {
				return nil, err
			}
			return fn(c, v.Info.ID, args[1:])
		}}
}

func init() {
	declare(
		&Message{Class: "VDI", Name: "create", Params: []string{"args"}, Role: api.VDICreate.Role,
			Summary: "Make an empty thin VDI from a record (name_label, SR, virtual_size, type, sharable, read_only, other_config, sm_config, xenstore_data, tags)",
			Handle:  vdiCreate},
		onVDI("destroy", &api.VDIDestroy.RPC, nil, "Destroy a VDI",
			func(c *Ctx, id string, _ []any) (any, error) { return "", c.S.opts.Volumes.Destroy(id, c.User) }),
		onVDI("forget", &api.VDIForget.RPC, nil, "Forget a VDI's record; its data stays for introduce",
			func(c *Ctx, id string, _ []any) (any, error) { return "", c.S.opts.Volumes.Forget(id, c.User) }),
		onVDIWith(api.VDISnapshot, 0, func(c *Ctx, id string, a *api.VDIDriverParamsArgs) (any, error) {
			return vdiRef(c.S.opts.Volumes.Snapshot(id, a.DriverParams, c.User))
		}),
		onVDIWith(api.VDIClone, 0, func(c *Ctx, id string, a *api.VDIDriverParamsArgs) (any, error) {
			return vdiRef(c.S.opts.Volumes.Clone(id, a.DriverParams, c.User))
		}),
		onVDIWith(api.VDIResize, 0, func(c *Ctx, id string, a *api.VDIResizeArgs) (any, error) {
			_, err := c.S.opts.Volumes.Resize(id, uint64(a.Size), "resize", c.User)
			return "", err
		}),
		onVDIWith(api.VDIResizeOnline, 0, func(c *Ctx, id string, a *api.VDIResizeArgs) (any, error) {
			_, err := c.S.opts.Volumes.Resize(id, uint64(a.Size), "resize_online", c.User)
			return "", err
		}),
		onVDI("enable_cbt", &api.VDIEnableCBT.RPC, nil, "Turn changed-block tracking on",
			func(c *Ctx, id string, _ []any) (any, error) {
				_, err := c.S.opts.Volumes.SetCBT(id, true, c.User)
				return "", err
			}),
		onVDI("disable_cbt", &api.VDIDisableCBT.RPC, nil, "Turn changed-block tracking off",
			func(c *Ctx, id string, _ []any) (any, error) {
				_, err := c.S.opts.Volumes.SetCBT(id, false, c.User)
				return "", err
			}),
		onVDI("data_destroy", &api.VDIDataDestroy.RPC, nil, "Free a CBT-enabled snapshot's data, keeping its CBT metadata",
			func(c *Ctx, id string, _ []any) (any, error) {
				_, err := c.S.opts.Volumes.DataDestroy(id, c.User)
				return "", err
			}),
		&Message{Class: "VDI", Name: "list_changed_blocks", Params: []string{"vdi_from", "vdi_to"}, Role: api.VDIListChangedBlocks.Role,
			Summary: "The 64 KiB blocks that differ between two snapshots of a VDI: XenAPI's base64 bitmap",
			Handle: func(c *Ctx, args []any) (any, error) {
				from, err := c.S.vdi(args[0])
				if err != nil {
					return nil, err
				}
				to, err := c.S.vdi(args[1])
				if err != nil {
					return nil, err
				}
				bm, size, err := c.S.opts.Volumes.ChangedBlocks(from.Info.ID, to.Info.ID)
				if err != nil {
					return nil, err
				}
				return cbt.Encode(bm, size), nil
			}},
		onVDI("update", &api.VDIUpdate.RPC, nil, "Refresh the fields measured from the store",
			func(c *Ctx, id string, _ []any) (any, error) {
				_, err := c.S.opts.Volumes.Check(id, "update")
				return "", err
			}),
		onVDI("open_database", &api.VDIOpenDatabase.RPC, nil, "Open a metadata VDI's pool database: vdiskd keeps none",
			func(c *Ctx, id string, _ []any) (any, error) {
				v, err := c.S.opts.Volumes.Lookup(id)
				if err != nil {
					return nil, err
				}
				return nil, xenrecord.OpenDatabase(v)
			}),
		onVDI("read_database_pool_uuid", &api.VDIReadDatabasePoolUUID.RPC, nil, "The pool a metadata VDI's database is of: none here",
			func(*Ctx, string, []any) (any, error) { return "", nil }),
		onVDI("get_nbd_info", &api.VDINBDInfo.RPC, nil,
			"Where the VDI is served over NBD: one record per address, its export name carrying the session",
			func(c *Ctx, id string, _ []any) (any, error) {
				v, err := c.S.opts.Volumes.Lookup(id)
				if err != nil {
					return nil, err
				}
				if v.Info.Kind == blockstore.KindCBTMetadata {
					return nil, xenError(api.CodeVDIIncompatible, Ref(id), "cbt_metadata")
				}
				out := []any{}
				if c.S.opts.NBDInfo == nil {
					return out, nil
				}
				name := "/" + id
				if c.S.opts.TokenExports {
					name += "?session_id=" + Ref(c.Token)
				}
				for _, i := range c.S.opts.NBDInfo(name) {
					rec := map[string]any{"exportname": i.ExportName, "address": i.Address, "port": int64(i.Port)}
					// xapi always has a certificate and fills cert; vdiskd
					// without --tls-cert has none and leaves cert and subject
					// out, since Xen Orchestra's NBD client sends STARTTLS
					// whenever cert is present, even empty.
					if i.Cert != "" {
						rec["cert"], rec["subject"] = i.Cert, i.Subject
					}
					out = append(out, rec)
				}
				return out, nil
			}),
	)
}

// createFields are the fields of a XenAPI VDI record that VDI.create
// reads; the record's others are ignored (replica_of, REST's member for
// vdiskd's replicator, among them).
var createFields = []string{"name_label", "name_description", "virtual_size", "SR", "type", "sharable",
	"read_only", "other_config", "sm_config", "xenstore_data", "tags"}

// vdiCreate makes a VDI from a XenAPI record: its fields are REST's
// VDI.create members, checked by the same declaration (restFill).
func vdiCreate(c *Ctx, args []any) (any, error) {
	rec, ok := args[0].(map[string]any)
	if !ok {
		return nil, xenError(CodeFieldTypeError, "args")
	}
	values := map[string]any{}
	for _, f := range createFields {
		values[f] = rec[f]
	}
	if values["SR"] == "" { // as a null handle: the default vPool
		values["SR"] = nil
	}
	var a api.VDICreateArgs
	if err := c.S.restFill(&api.VDICreate.RPC, &a, "", values); err != nil {
		return nil, err
	}
	return vdiRef(c.S.opts.Volumes.Create(xenrecord.Creation(&a, c.User)))
}
