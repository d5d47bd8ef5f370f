package xenapi

import (
	"github.com/google/uuid"
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

// singleton declares a class with one object.
func singleton(name string, id func(*Surface) string, record func(*Surface) map[string]any, fields []string) *class {
	return &class{name: name, fields: fields, named: true,
		uuids: func(s *Surface) []string { return []string{id(s)} },
		record: func(s *Surface, uuid string) (map[string]any, bool) {
			if uuid != id(s) {
				return nil, false
			}
			return record(s), true
		}}
}

func init() {
	declareClass(singleton("pool", (*Surface).poolUUID, (*Surface).poolRecord, []string{"uuid", "name_label",
		"name_description", "master", "default_SR", "suspend_image_SR", "crash_dump_SR", "other_config", "tags",
		"ha_enabled", "restrictions", "allowed_operations", "current_operations"}))
	declareClass(singleton("host", (*Surface).hostUUID, (*Surface).hostRecord, []string{"uuid", "name_label",
		"name_description", "hostname", "address", "enabled", "API_version_major", "API_version_minor",
		"API_version_vendor", "software_version", "other_config", "PBDs", "PIFs", "resident_VMs", "tags",
		"allowed_operations", "current_operations"}))
}
