package volume

import (
	"fmt"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// OpState is what decides whether an operation may run on a VDI now.
type OpState struct {
	UUID         string
	Kind         blockstore.Kind
	Type         string // vdi_type
	CBT          bool
	Sharable     bool
	ResetOnBoot  bool
	Current      map[string]string // task -> operation
	CopyTarget   bool              // a copy is writing into it
	VBDs, RWVBDs int
	// Group and GroupSnapshot name the consistency group (snapshot) the
	// VDI belongs to: it goes with the group, not alone.
	Group, GroupSnapshot string
}

// opState reads e's state. REQUIRES: e.mu held.
func (e *entry) opState() OpState {
	st := OpState{
		UUID: e.id, Kind: e.info.Kind, Type: e.attrs.Xen.VDIType(e.info.Kind), CBT: e.info.CBTEnabled,
		Sharable: e.attrs.Xen.Sharable, ResetOnBoot: e.attrs.Xen.OnBootMode() == "reset",
		Current: e.ops, CopyTarget: e.copyTarget != "",
		Group: e.attrs.Lifecycle.Group, GroupSnapshot: e.attrs.Lifecycle.GroupSnapshot,
	}
	for _, b := range e.vbds {
		st.VBDs++
		if b.Writable {
			st.RWVBDs++
		}
	}
	return st
}

// ImplementedOps are the vdi_operations vdiskd performs, in the order
// allowed_operations lists them. pool_migrate counts as "mirror", as in
// xapi. force_unlock, generate_config, blocked and revert_* are not offered.
var ImplementedOps = []string{"clone", "copy", "resize", "resize_online", "snapshot", "mirror", "destroy",
	"forget", "update", "enable_cbt", "disable_cbt", "data_destroy", "list_changed_blocks", "set_on_boot"}

// liveOps may run while the VDI is attached (xapi's
// operation_can_be_performed_live).
var liveOps = map[string]bool{"snapshot": true, "resize_online": true, "clone": true, "mirror": true,
	"enable_cbt": true, "disable_cbt": true, "data_destroy": true}

// groupOps are refused on a member of a consistency group or of a group
// snapshot: the group is deleted (or moved) as a whole (Cinder).
var groupOps = map[string]bool{"destroy": true, "forget": true, "data_destroy": true, "mirror": true}

// cbtMetadataOps are allowed on a cbt_metadata VDI.
var cbtMetadataOps = map[string]bool{"data_destroy": true, "destroy": true, "list_changed_blocks": true,
	"forget": true, "update": true}

// Allowed lists the operations of ImplementedOps that may run in state st:
// the record's allowed_operations.
func Allowed(st OpState) []string {
	out := []string{}
	for _, op := range ImplementedOps {
		if checkOperation(st, op) == nil {
			out = append(out, op)
		}
	}
	return out
}

// checkOperation is xapi's check_operation_error for the operations vdiskd
// implements: nil if op may run on the VDI in state st, else the XenAPI
// error. op "" checks nothing. It is pure, so allowed_operations and the
// calls agree, and its table is tested on its own (testdata/operations).
//
// Departures from xapi, on purpose: list_changed_blocks is blocked only by
// a writable attachment (a backup reading a snapshot over NBD is the normal
// case), and mirror (pool_migrate) is allowed with CBT on, because the
// chain survives a move between vPools here.
func checkOperation(st OpState, op string) *fault.Error {
	if op == "" {
		return nil
	}
	id := st.UUID
	if st.CopyTarget {
		return fault.Conflicts(fault.CodeOtherOperation, []string{"VDI", id}, "VDI %s is being written by a copy", id)
	}
	for _, cur := range st.Current {
		if cur != "copy" || op == "destroy" {
			return fault.Conflicts(fault.CodeOtherOperation, []string{"VDI", id}, "VDI %s is busy with %s", id, cur)
		}
	}
	blocked := false
	switch {
	case liveOps[op]:
	case op == "copy" || op == "list_changed_blocks":
		blocked = st.RWVBDs > 0
	default:
		blocked = st.VBDs > 0
	}
	if groupOps[op] && (st.Group != "" || st.GroupSnapshot != "") {
		what, group := "consistency group", st.Group
		if group == "" {
			what, group = "group snapshot", st.GroupSnapshot
		}
		return fault.Conflicts(fault.CodeOperationNotAllowed,
			[]string{fmt.Sprintf("VDI %s belongs to %s %s; it goes with the group, not alone", id, what, group)},
			"VDI %s belongs to %s %s: %s it with the group, or remove it from the group first", id, what, group, op)
	}
	if blocked {
		return fault.Conflicts(fault.CodeVDIInUse, []string{id, op}, "VDI %s is attached; %s needs it detached", id, op)
	}
	if st.Kind == blockstore.KindCBTMetadata && !cbtMetadataOps[op] {
		return fault.Conflicts(fault.CodeVDIIncompatible, []string{id, "cbt_metadata"},
			"VDI %s holds only changed-block metadata; %s is not possible", id, op)
	}
	if st.CBT && op == "set_on_boot" {
		return fault.Conflicts(fault.CodeVDICBTEnabled, []string{id}, "VDI %s has CBT enabled; disable it before %s", id, op)
	}
	isSnap := st.Kind != blockstore.KindLive
	switch op {
	case "data_destroy":
		if !isSnap {
			return notASnapshot(id)
		}
		if !st.CBT {
			return fault.Conflicts(fault.CodeVDINoCBTMetadata, []string{id}, "snapshot %s has no CBT metadata to keep", id)
		}
	case "snapshot":
		if st.Sharable {
			return fault.Conflicts(fault.CodeVDIIsSharable, []string{id}, "VDI %s is sharable; snapshots are refused", id)
		}
		if st.ResetOnBoot {
			return onBootRefuses(id, op)
		}
		for _, cur := range st.Current {
			if cur == "copy" {
				return fault.Conflicts(fault.CodeOperationNotAllowed, []string{"Snapshot operation not allowed during copy."},
					"VDI %s is being copied", id)
			}
		}
	case "copy":
		if st.ResetOnBoot {
			return onBootRefuses(id, op)
		}
	case "enable_cbt", "disable_cbt":
		if isSnap {
			return isASnapshot(id, "")
		}
		if st.Type != "user" && st.Type != "system" {
			return fault.Conflicts(fault.CodeVDIIncompatible, []string{id, st.Type}, "CBT needs type user or system; VDI %s is %s", id, st.Type)
		}
		if st.ResetOnBoot {
			return onBootRefuses(id, op)
		}
	case "resize", "resize_online", "mirror":
		if isSnap {
			return isASnapshot(id, op)
		}
	}
	return nil
}

// checkNotBusy refuses field changes while an exclusive operation
// (anything but a copy reading the VDI) runs on it.
func checkNotBusy(st OpState) *fault.Error {
	if st.CopyTarget {
		return fault.Conflicts(fault.CodeOtherOperation, []string{"VDI", st.UUID}, "VDI %s is being written by a copy", st.UUID)
	}
	for _, op := range st.Current {
		if op != "copy" {
			return fault.Conflicts(fault.CodeOtherOperation, []string{"VDI", st.UUID}, "VDI %s is busy with %s", st.UUID, op)
		}
	}
	return nil
}

func notASnapshot(id string) *fault.Error {
	return fault.Conflicts(fault.CodeOperationNotAllowed, []string{"VDI is not a snapshot: " + id}, "VDI %s is not a snapshot", id)
}

func isASnapshot(id, op string) *fault.Error {
	if op == "" {
		return fault.Conflicts(fault.CodeOperationNotAllowed, []string{"VDI is a snapshot: " + id}, "VDI %s is a snapshot", id)
	}
	return fault.Conflicts(fault.CodeOperationNotAllowed, []string{"VDI is a snapshot: " + id}, "VDI %s is a snapshot; %s is refused", id, op)
}

func onBootRefuses(id, op string) *fault.Error {
	return fault.Conflicts(fault.CodeVDIOnBootMode, []string{}, "VDI %s has on_boot=reset; %s is refused", id, op)
}

// addOps registers a running task's operation on a VDI. REQUIRES: e.mu
// held.
func (e *entry) addOp(task, op string) {
	if e.ops == nil {
		e.ops = map[string]string{}
	}
	e.ops[task] = op
	e.note()
}

// releaseOp removes a finished task's operation and copy mark.
// REQUIRES: e.mu held.
func (e *entry) releaseOp(task string) {
	defer e.note()
	if e.copyTarget == task {
		e.copyTarget = ""
	}
	if _, ok := e.ops[task]; ok {
		delete(e.ops, task)
		if len(e.ops) == 0 {
			e.ops = nil
		}
		e.signal()
	}
}
