package mgmt

import (
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// opState is what decides whether an operation may run on a VDI now.
type opState struct {
	uuid         string
	kind         blockstore.Kind
	vdiType      string
	cbt          bool
	sharable     bool
	resetBoot    bool
	current      map[string]string // task -> operation
	copyTarget   bool              // a copy is writing into it
	vbds, rwVBDs int
}

func (s *Server) opStateLocked(v vdi) opState {
	st := opState{
		uuid: v.info.ID, kind: v.info.Kind, vdiType: v.attrs.vdiType(v.info.Kind), cbt: v.info.CBTEnabled,
		sharable: v.attrs.Sharable, resetBoot: v.attrs.onBoot() == "reset", current: s.ops[v.info.ID],
		copyTarget: s.copyTargets[v.info.ID] != "",
	}
	for _, b := range s.vbds[v.info.ID] {
		st.vbds++
		if b.Writable {
			st.rwVBDs++
		}
	}
	return st
}

// implementedOps are the vdi_operations vdiskd performs, in the order
// allowed_operations lists them. pool_migrate counts as "mirror", as in
// xapi. force_unlock, generate_config, blocked and revert_* are not offered.
var implementedOps = []string{"clone", "copy", "resize", "resize_online", "snapshot", "mirror", "destroy",
	"forget", "update", "enable_cbt", "disable_cbt", "data_destroy", "list_changed_blocks", "set_on_boot"}

// liveOps may run while the VDI is attached (xapi's
// operation_can_be_performed_live).
var liveOps = map[string]bool{"snapshot": true, "resize_online": true, "clone": true, "mirror": true,
	"enable_cbt": true, "disable_cbt": true, "data_destroy": true}

// cbtMetadataOps are allowed on a cbt_metadata VDI.
var cbtMetadataOps = map[string]bool{"data_destroy": true, "destroy": true, "list_changed_blocks": true,
	"forget": true, "update": true}

// checkOperation is xapi's check_operation_error for the operations vdiskd
// implements: nil if op may run on the VDI in state st, else the XenAPI
// error. It is pure, so allowed_operations and the calls agree.
//
// Departures from xapi, on purpose: list_changed_blocks is blocked only by
// a writable attachment (a backup reading a snapshot over NBD is the normal
// case), and mirror (pool_migrate) is allowed with CBT on, because the
// chain survives a move between vPools here.
func checkOperation(st opState, op string) *api.Error {
	id := st.uuid
	if st.copyTarget {
		return api.Conflict(api.CodeOtherOperation, []string{"VDI", id}, "VDI %s is being written by a copy", id)
	}
	for _, cur := range st.current {
		if cur != "copy" || op == "destroy" {
			return api.Conflict(api.CodeOtherOperation, []string{"VDI", id}, "VDI %s is busy with %s", id, cur)
		}
	}
	blocked := false
	switch {
	case liveOps[op]:
	case op == "copy" || op == "list_changed_blocks":
		blocked = st.rwVBDs > 0
	default:
		blocked = st.vbds > 0
	}
	if blocked {
		return api.Conflict(api.CodeVDIInUse, []string{id, op}, "VDI %s is attached; %s needs it detached", id, op)
	}
	if st.kind == blockstore.KindCBTMetadata && !cbtMetadataOps[op] {
		return api.Conflict(api.CodeVDIIncompatible, []string{id, "cbt_metadata"},
			"VDI %s holds only changed-block metadata; %s is not possible", id, op)
	}
	if st.cbt && op == "set_on_boot" {
		return api.Conflict(api.CodeVDICBTEnabled, []string{id}, "VDI %s has CBT enabled; disable it before %s", id, op)
	}
	isSnap := st.kind != blockstore.KindLive
	switch op {
	case "data_destroy":
		if !isSnap {
			return api.Conflict(api.CodeOperationNotAllowed, []string{"VDI is not a snapshot: " + id}, "VDI %s is not a snapshot", id)
		}
		if !st.cbt {
			return api.Conflict(api.CodeVDINoCBTMetadata, []string{id}, "snapshot %s has no CBT metadata to keep", id)
		}
	case "snapshot":
		if st.sharable {
			return api.Conflict(api.CodeVDIIsSharable, []string{id}, "VDI %s is sharable; snapshots are refused", id)
		}
		if st.resetBoot {
			return api.Conflict(api.CodeVDIOnBootMode, []string{}, "VDI %s has on_boot=reset; %s is refused", id, op)
		}
		for _, cur := range st.current {
			if cur == "copy" {
				return api.Conflict(api.CodeOperationNotAllowed, []string{"Snapshot operation not allowed during copy."},
					"VDI %s is being copied", id)
			}
		}
	case "copy":
		if st.resetBoot {
			return api.Conflict(api.CodeVDIOnBootMode, []string{}, "VDI %s has on_boot=reset; %s is refused", id, op)
		}
	case "enable_cbt", "disable_cbt":
		if isSnap {
			return api.Conflict(api.CodeOperationNotAllowed, []string{"VDI is a snapshot: " + id}, "VDI %s is a snapshot", id)
		}
		if st.vdiType != "user" && st.vdiType != "system" {
			return api.Conflict(api.CodeVDIIncompatible, []string{id, st.vdiType}, "CBT needs type user or system; VDI %s is %s", id, st.vdiType)
		}
		if st.resetBoot {
			return api.Conflict(api.CodeVDIOnBootMode, []string{}, "VDI %s has on_boot=reset; %s is refused", id, op)
		}
	case "resize", "resize_online", "mirror":
		if isSnap {
			return api.Conflict(api.CodeOperationNotAllowed, []string{"VDI is a snapshot: " + id}, "VDI %s is a snapshot; %s is refused", id, op)
		}
	}
	return nil
}

// addOpsLocked registers a running task's operations on VDIs, after
// checking each. REQUIRES: s.mu held.
func (s *Server) addOpsLocked(task string, ops map[string]string) {
	for id, op := range ops {
		if s.ops[id] == nil {
			s.ops[id] = map[string]string{}
		}
		s.ops[id][task] = op
	}
}

// releaseOps removes a finished task's operations.
func (s *Server) releaseOps(task string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseOpsLocked(task)
}

// releaseOpsLocked is releaseOps. REQUIRES: s.mu held.
func (s *Server) releaseOpsLocked(task string) {
	for id, t := range s.copyTargets {
		if t == task {
			delete(s.copyTargets, id)
		}
	}
	for id, m := range s.ops {
		delete(m, task)
		if len(m) == 0 {
			delete(s.ops, id)
		}
	}
}
