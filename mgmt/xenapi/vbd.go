package xenapi

import "github.com/vdiskd/vdiskd/mgmt/volume"

// VBDs are a VDI's attachments: each NBD client using it. vdiskd has no
// VMs, so a VBD's VM is the null handle and the VM class is empty: a
// client that follows VDI.VBDs to see who uses a disk finds the
// attachment, whether it writes, and that it is plugged.

func vbdRecord(a volume.Attachment) map[string]any {
	mode := "RO"
	if a.Writable {
		mode = "RW"
	}
	return map[string]any{"uuid": a.UUID, "VM": NullRef, "VDI": Ref(a.VDI), "device": "", "userdevice": "",
		"bootable": false, "mode": mode, "type": "Disk", "unpluggable": true, "storage_lock": false, "empty": false,
		"currently_attached": true, "status_code": int64(0), "status_detail": "", "other_config": map[string]any{},
		"runtime_properties": map[string]any{}, "qos_algorithm_type": "", "qos_algorithm_params": map[string]any{},
		"qos_supported_algorithms": []any{}, "metrics": NullRef, "allowed_operations": []any{},
		"current_operations": map[string]any{}}
}

func init() {
	declareClass(&class{name: "VBD", fields: []string{"uuid", "VM", "VDI", "device", "userdevice", "bootable", "mode",
		"type", "unpluggable", "storage_lock", "empty", "currently_attached", "status_code", "status_detail",
		"other_config", "runtime_properties", "qos_algorithm_type", "qos_algorithm_params", "qos_supported_algorithms",
		"metrics", "allowed_operations", "current_operations"},
		uuids: func(s *Surface) []string {
			var out []string
			for _, a := range s.opts.Volumes.Attachments() {
				out = append(out, a.UUID)
			}
			return out
		},
		record: func(s *Surface, id string) (map[string]any, bool) {
			a, ok := s.opts.Volumes.Attachment(id)
			if !ok {
				return nil, false
			}
			return vbdRecord(a), true
		}})
	declareClass(&class{name: "VM", named: true,
		uuids:  func(*Surface) []string { return nil },
		record: func(*Surface, string) (map[string]any, bool) { return nil, false }})
}
