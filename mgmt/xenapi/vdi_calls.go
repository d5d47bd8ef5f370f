package xenapi

import (
	"math"
	"strconv"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/cbt"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/volume"
	"github.com/vdiskd/vdiskd/mgmt/xenrecord"
)

// The VDI messages that change things. Each is the volume service's call
// the REST surface makes for the same XenAPI message, with that call's
// minimum role: the rules are the service's, never repeated here.

// integer reads an int parameter: a number, or (XML-RPC, as xapi sends
// int64s) its decimal text.
func integer(args []any, i int, name string) (int64, error) {
	switch v := args[i].(type) {
	case int64:
		return v, nil
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<62 {
			return int64(v), nil
		}
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, xenError(CodeFieldTypeError, name)
}

// stringMap reads a (string -> string) map parameter.
func stringMap(args []any, i int, name string) (map[string]string, error) {
	if args[i] == nil {
		return nil, nil
	}
	m, ok := args[i].(map[string]any)
	if !ok {
		return nil, xenError(CodeFieldTypeError, name)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			return nil, xenError(CodeFieldTypeError, name+"."+k)
		}
		out[k] = s
	}
	return out, nil
}

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
		onVDI("snapshot", &api.VDISnapshot.RPC, []string{"driver_params"}, "Snapshot a VDI (O(1)); answers the snapshot",
			func(c *Ctx, id string, args []any) (any, error) {
				params, err := stringMap(args, 0, "driver_params")
				if err != nil {
					return nil, err
				}
				return vdiRef(c.S.opts.Volumes.Snapshot(id, params, c.User))
			}),
		onVDI("clone", &api.VDIClone.RPC, []string{"driver_params"}, "Clone a VDI (O(1)); answers the clone",
			func(c *Ctx, id string, args []any) (any, error) {
				params, err := stringMap(args, 0, "driver_params")
				if err != nil {
					return nil, err
				}
				return vdiRef(c.S.opts.Volumes.Clone(id, params, c.User))
			}),
		onVDI("resize", &api.VDIResize.RPC, []string{"size"}, "Grow a detached VDI",
			func(c *Ctx, id string, args []any) (any, error) { return resize(c, id, args, "resize") }),
		onVDI("resize_online", &api.VDIResizeOnline.RPC, []string{"size"}, "Grow a VDI, attached or not",
			func(c *Ctx, id string, args []any) (any, error) { return resize(c, id, args, "resize_online") }),
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

func resize(c *Ctx, id string, args []any, op string) (any, error) {
	size, err := integer(args, 0, "size")
	if err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, xenError(CodeFieldTypeError, "size")
	}
	_, err = c.S.opts.Volumes.Resize(id, uint64(size), op, c.User)
	return "", err
}

// vdiCreate makes a VDI from a XenAPI record, checked by the same rules as
// REST's VDI.create.
func vdiCreate(c *Ctx, args []any) (any, error) {
	rec, ok := args[0].(map[string]any)
	if !ok {
		return nil, xenError(CodeFieldTypeError, "args")
	}
	one := func(k string) []any { return []any{rec[k]} }
	var a api.VDICreateArgs
	var err error
	if a.VirtualSize, err = integer(one("virtual_size"), 0, "virtual_size"); err != nil {
		return nil, err
	}
	for k, dst := range map[string]*string{"name_label": &a.NameLabel, "name_description": &a.NameDescription, "type": &a.Type} {
		if rec[k] == nil {
			continue
		}
		if *dst, err = str(one(k), 0, k); err != nil {
			return nil, err
		}
	}
	if r, ok := rec["SR"].(string); ok && r != NullRef && r != "" {
		p, err := c.S.sr(r)
		if err != nil {
			return nil, err
		}
		a.SR = p.GUID
	}
	for k, dst := range map[string]*bool{"sharable": &a.Sharable, "read_only": &a.ReadOnly} {
		if rec[k] == nil {
			continue
		}
		b, ok := rec[k].(bool)
		if !ok {
			return nil, xenError(CodeFieldTypeError, k)
		}
		*dst = b
	}
	for k, dst := range map[string]*map[string]string{"other_config": &a.OtherConfig, "sm_config": &a.SMConfig, "xenstore_data": &a.XenstoreData} {
		if *dst, err = stringMap(one(k), 0, k); err != nil {
			return nil, err
		}
	}
	if tags, ok := rec["tags"].([]any); ok {
		for _, t := range tags {
			s, ok := t.(string)
			if !ok {
				return nil, xenError(CodeFieldTypeError, "tags")
			}
			a.Tags = append(a.Tags, s)
		}
	}
	if ferr := a.Validate(); ferr != nil {
		return nil, ferr
	}
	return vdiRef(c.S.opts.Volumes.Create(volume.CreateRequest{Pool: a.SR, Size: uint64(a.VirtualSize), ReadOnly: a.ReadOnly,
		By: c.User, Xen: volume.XenAttrs{NameLabel: a.NameLabel, NameDescription: a.NameDescription, Type: a.Type,
			Sharable: a.Sharable, OtherConfig: a.OtherConfig, SMConfig: a.SMConfig, XenstoreData: a.XenstoreData, Tags: a.Tags}}))
}
