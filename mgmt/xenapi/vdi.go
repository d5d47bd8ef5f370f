package xenapi

import (
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/volume"
	"github.com/vdiskd/vdiskd/mgmt/xenrecord"
)

// vdiRecord is a VDI's XenAPI record on the wire: xenrecord's, with
// handles where XenAPI has them.
func vdiRecord(v volume.VDI) map[string]any {
	r := xenrecord.VDI(v)
	ref := func(id string) string {
		if id == "" || id == api.NullRef {
			return NullRef
		}
		return Ref(id)
	}
	strs := func(m map[string]string) map[string]any {
		out := make(map[string]any, len(m))
		for k, x := range m {
			out[k] = x
		}
		return out
	}
	ops := map[string]any{}
	for task, op := range r.CurrentOperations {
		ops[Ref(task)] = op
	}
	allowed := make([]any, len(r.AllowedOperations))
	for i, op := range r.AllowedOperations {
		allowed[i] = op
	}
	tags := make([]any, len(r.Tags))
	for i, t := range r.Tags {
		tags[i] = t
	}
	return map[string]any{
		"uuid": r.UUID, "name_label": r.NameLabel, "name_description": r.NameDescription,
		"allow_caching": r.AllowCaching, "allowed_operations": allowed, "cbt_enabled": r.CBTEnabled,
		"crash_dumps": []any{}, "current_operations": ops, "is_a_snapshot": r.IsASnapshot,
		"is_tools_iso": r.IsToolsISO, "location": r.Location, "managed": r.Managed,
		"metadata_latest": r.MetadataLatest, "metadata_of_pool": ref(r.MetadataOfPool), "missing": r.Missing,
		"on_boot": r.OnBoot, "other_config": strs(r.OtherConfig), "parent": NullRef,
		"physical_utilisation": r.PhysicalUtilisation, "read_only": r.ReadOnly, "sharable": r.Sharable,
		"sm_config": strs(r.SMConfig), "snapshot_of": ref(r.SnapshotOf), "snapshot_time": r.SnapshotTime,
		"snapshots": refs(r.Snapshots), "SR": ref(r.SR), "storage_lock": r.StorageLock, "tags": tags,
		"type": r.Type, "VBDs": refs(r.VBDs), "virtual_size": r.VirtualSize, "xenstore_data": strs(r.XenstoreData),
	}
}

// vdiFields are the fields of the record, each with its getter.
var vdiFields = []string{"uuid", "name_label", "name_description", "allow_caching", "allowed_operations",
	"cbt_enabled", "crash_dumps", "current_operations", "is_a_snapshot", "is_tools_iso", "location", "managed",
	"metadata_latest", "metadata_of_pool", "missing", "on_boot", "other_config", "parent", "physical_utilisation",
	"read_only", "sharable", "sm_config", "snapshot_of", "snapshot_time", "snapshots", "SR", "storage_lock",
	"tags", "type", "VBDs", "virtual_size", "xenstore_data"}

// visible lists the VDIs a XenAPI client sees: every VDI but the hidden.
func (s *Surface) visible() []string {
	return s.opts.Volumes.Find(nil)
}

// vdi reads the VDI a handle names.
func (s *Surface) vdi(ref any) (volume.VDI, error) {
	r, _ := ref.(string)
	id, err := uuidOf("VDI", r)
	if err != nil {
		return volume.VDI{}, err
	}
	v, err := s.opts.Volumes.Get(id)
	if err != nil {
		if f, ok := fault.As(err); ok && f.Kind == fault.NotFound {
			return volume.VDI{}, xenError(CodeHandleInvalid, "VDI", r)
		}
		return volume.VDI{}, err
	}
	return v, nil
}

func init() {
	declareClass(&class{name: "VDI", fields: vdiFields, named: true,
		uuids: (*Surface).visible,
		byName: func(s *Surface, label string) []string {
			return s.opts.Volumes.Find(func(v *volume.Volume) bool { return v.Attrs.Xen.NameLabel == label })
		},
		record: func(s *Surface, id string) (map[string]any, bool) {
			v, err := s.opts.Volumes.Get(id)
			if err != nil {
				return nil, false
			}
			return vdiRecord(v), true
		}})
	declareClass(&class{name: "SR", fields: srFields, named: true,
		uuids: func(s *Surface) []string {
			var out []string
			for _, p := range s.opts.Volumes.Pools() {
				out = append(out, p.GUID)
			}
			return out
		},
		record: func(s *Surface, guid string) (map[string]any, bool) {
			p, err := s.opts.Volumes.Pool(guid, "SR")
			if err != nil || p.GUID != guid {
				return nil, false
			}
			return s.srRecord(p), true
		}})
}

// srRecord is a vPool as XenAPI's SR.
func (s *Surface) srRecord(p volume.Pool) map[string]any {
	// The VDIs with records: not the forgotten, nor on_boot bases.
	var members []string
	var virtual int64
	for _, id := range s.opts.Volumes.PoolMembers(p.GUID) {
		v, err := s.opts.Volumes.Lookup(id)
		if err != nil {
			continue
		}
		members = append(members, id)
		if v.Info.Kind != blockstore.KindCBTMetadata {
			virtual += int64(v.Info.Size)
		}
	}
	other := map[string]any{}
	for k, x := range p.Metadata {
		other[k] = x
	}
	return map[string]any{"uuid": p.GUID, "name_label": p.Name, "name_description": p.Description,
		"type": "vdiskd", "content_type": "user", "physical_size": p.Size, "physical_utilisation": int64(0),
		"virtual_allocation": virtual, "VDIs": refs(members), "PBDs": []any{}, "shared": false, "other_config": other,
		"sm_config": map[string]any{}, "tags": []any{}, "allowed_operations": []any{}, "current_operations": map[string]any{},
		"is_tools_sr": false, "local_cache_enabled": false, "clustered": false, "blobs": map[string]any{}}
}

// sr reads the vPool a handle names.
func (s *Surface) sr(ref any) (volume.Pool, error) {
	r, _ := ref.(string)
	id, err := uuidOf("SR", r)
	if err != nil {
		return volume.Pool{}, err
	}
	p, ferr := s.opts.Volumes.Pool(id, "SR")
	if ferr != nil || p.GUID != id {
		return volume.Pool{}, xenError(CodeHandleInvalid, "SR", r)
	}
	return p, nil
}

var srFields = []string{"uuid", "name_label", "name_description", "type", "content_type", "physical_size",
	"physical_utilisation", "virtual_allocation", "VDIs", "PBDs", "shared", "other_config", "sm_config", "tags",
	"allowed_operations", "current_operations", "is_tools_sr", "local_cache_enabled", "clustered", "blobs"}

func orList(l []any) []any {
	if l == nil {
		return []any{}
	}
	return l
}
