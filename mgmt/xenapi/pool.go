package xenapi

import (
	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/mgmt/auth"
)

// API version this surface speaks: XenServer 8's.
const (
	APIVersionMajor = 2
	APIVersionMinor = 21
)

// hostUUID is this daemon as a XenAPI host: its node guid.
func (s *Surface) hostUUID() string { return s.opts.NodeGUID }

// poolUUID is the one-host pool this daemon is, derived from the host.
func (s *Surface) poolUUID() string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("vdiskd pool "+s.opts.NodeGUID)).String()
}

func (s *Surface) poolRecord() map[string]any {
	return map[string]any{"uuid": s.poolUUID(), "name_label": s.opts.Zone, "name_description": "vdiskd zone " + s.opts.Zone,
		"master": Ref(s.hostUUID()), "default_SR": s.defaultSR(), "suspend_image_SR": NullRef, "crash_dump_SR": NullRef,
		"other_config": map[string]any{}, "tags": []any{}, "ha_enabled": false, "restrictions": map[string]any{},
		"allowed_operations": []any{}, "current_operations": map[string]any{}}
}

func (s *Surface) hostRecord() map[string]any {
	return map[string]any{"uuid": s.hostUUID(), "name_label": s.opts.NodeName, "name_description": "vdiskd",
		"hostname": s.opts.NodeName, "address": s.opts.Address, "enabled": true,
		"API_version_major": int64(APIVersionMajor), "API_version_minor": int64(APIVersionMinor), "API_version_vendor": "vdiskd",
		"software_version": map[string]any{"product_brand": "vdiskd", "xapi": "vdiskd"}, "other_config": map[string]any{},
		"PBDs": []any{}, "PIFs": []any{}, "resident_VMs": []any{}, "tags": []any{},
		"allowed_operations": []any{}, "current_operations": map[string]any{}}
}

// defaultSR is the default vPool's ref.
func (s *Surface) defaultSR() string {
	for _, p := range s.opts.Volumes.Pools() {
		if p.Default {
			return Ref(p.GUID)
		}
	}
	return NullRef
}

// singleton declares the read messages of a class with one object.
func singleton(class string, ref func(*Surface) string, record func(*Surface) map[string]any) []*Message {
	check := func(c *Ctx, args []any) error {
		r, _ := args[0].(string)
		if r != ref(c.S) {
			return xenError(CodeHandleInvalid, class, r)
		}
		return nil
	}
	return []*Message{
		{Class: class, Name: "get_all", Role: auth.ReadOnly, Summary: "The one " + class + ": this daemon",
			Handle: func(c *Ctx, _ []any) (any, error) { return []any{ref(c.S)}, nil }},
		{Class: class, Name: "get_all_records", Role: auth.ReadOnly, Summary: "The one " + class + ", by ref",
			Handle: allRecords(class)},
		{Class: class, Name: "get_record", Params: []string{"self"}, Role: auth.ReadOnly, Summary: "The " + class + "'s record",
			Handle: func(c *Ctx, args []any) (any, error) {
				if err := check(c, args); err != nil {
					return nil, err
				}
				return record(c.S), nil
			}},
		{Class: class, Name: "get_uuid", Params: []string{"self"}, Role: auth.ReadOnly, Summary: "The " + class + "'s uuid",
			Handle: func(c *Ctx, args []any) (any, error) {
				if err := check(c, args); err != nil {
					return nil, err
				}
				return record(c.S)["uuid"], nil
			}},
	}
}

func init() {
	declare(singleton("pool", func(s *Surface) string { return Ref(s.poolUUID()) }, (*Surface).poolRecord)...)
	declare(singleton("host", func(s *Surface) string { return Ref(s.hostUUID()) }, (*Surface).hostRecord)...)
	declare(
		&Message{Class: "pool", Name: "get_master", Params: []string{"self"}, Role: auth.ReadOnly, Summary: "The pool's master: this host",
			Handle: func(c *Ctx, _ []any) (any, error) { return Ref(c.S.hostUUID()), nil }},
		&Message{Class: "host", Name: "get_API_version_major", Params: []string{"self"}, Role: auth.ReadOnly,
			Summary: "XenAPI's major version", Handle: func(*Ctx, []any) (any, error) { return int64(APIVersionMajor), nil }},
		&Message{Class: "host", Name: "get_API_version_minor", Params: []string{"self"}, Role: auth.ReadOnly,
			Summary: "XenAPI's minor version", Handle: func(*Ctx, []any) (any, error) { return int64(APIVersionMinor), nil }},
	)
}
