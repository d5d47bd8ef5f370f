package volume

import (
	"slices"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// The rules of Cinder's consistency-group API (cinder/consistencygroup/
// api.py before generic groups). They are pure functions of the state they
// are given, tested on their own (testdata/groups), and every violation is
// invalid input: Cinder answers 400 for each.

// checkGroupStatus says whether a call may start on a group in status
// stored, to mark it busy: updates and group snapshots need it available;
// a delete also takes error (without force the caller checks more).
func checkGroupStatus(stored, busy string) *fault.Error {
	switch busy {
	case "", StatusDeleting:
		return nil // reads and create_from_src check nothing here; delete checks in checkGroupDelete
	}
	if stored != StatusAvailable {
		return fault.BadRequest(fault.CodeInvalidGroup, []string{stored},
			"consistency group status must be available, but is %s", stored)
	}
	return nil
}

// checkGroupSnapshotStatus is checkGroupStatus for group snapshots: a
// delete, or a group created from it, needs it available or error.
func checkGroupSnapshotStatus(stored, busy string) *fault.Error {
	if busy == "" {
		return nil
	}
	if stored != StatusAvailable && stored != StatusError {
		return fault.BadRequest(fault.CodeInvalidGroupSnapshot, []string{stored},
			"cgsnapshot status must be available or error, but is %s", stored)
	}
	return nil
}

// checkUpdateRequest checks an update on its own: it changes something,
// and no volume is both added and removed.
func checkUpdateRequest(u GroupUpdate) *fault.Error {
	if u.Name == nil && u.Description == nil && len(u.Add) == 0 && len(u.Remove) == 0 {
		return fault.BadRequest(fault.CodeInvalidGroup, nil,
			"name, description, add_volumes or remove_volumes must be given to update a consistency group")
	}
	name, desc := "", ""
	if u.Name != nil {
		name = *u.Name
	}
	if u.Description != nil {
		desc = *u.Description
	}
	if err := checkNames(name, desc); err != nil {
		return err
	}
	for _, id := range u.Add {
		if slices.Contains(u.Remove, id) {
			return fault.BadRequest(fault.CodeInvalidVolume, []string{id},
				"volume %s is in both add_volumes and remove_volumes", id)
		}
	}
	return nil
}

// MemberState is what the membership rules read of a volume.
type MemberState struct {
	ID    string
	Kind  blockstore.Kind
	Pool  string // vPool guid
	Group string // the group it is in, if any
	Busy  bool   // being built by a copy, or an exclusive operation runs on it
}

// checkMembership says whether vol may be added to (adding) or removed
// from group, whose volumes live in pools.
func checkMembership(group string, pools []string, vol MemberState, adding bool) *fault.Error {
	if !adding {
		if vol.Group != group {
			return fault.BadRequest(fault.CodeInvalidVolume, []string{vol.ID},
				"cannot remove volume %s from consistency group %s: it is not in the group", vol.ID, group)
		}
		if vol.Busy {
			return fault.BadRequest(fault.CodeInvalidVolume, []string{vol.ID},
				"cannot remove volume %s from consistency group %s: an operation is running on it", vol.ID, group)
		}
		return nil
	}
	switch {
	case vol.Group == group:
		return nil // already in: ignored
	case vol.Kind != blockstore.KindLive:
		return fault.BadRequest(fault.CodeInvalidVolume, []string{vol.ID},
			"cannot add %s to consistency group %s: it is a snapshot, not a volume", vol.ID, group)
	case vol.Group != "":
		return fault.BadRequest(fault.CodeInvalidVolume, []string{vol.ID},
			"cannot add volume %s to consistency group %s: it is already in consistency group %s", vol.ID, group, vol.Group)
	case !slices.Contains(pools, vol.Pool):
		return fault.BadRequest(fault.CodeInvalidVolume, []string{vol.ID},
			"cannot add volume %s to consistency group %s: its volume type %s is not one of the group's", vol.ID, group, vol.Pool)
	case vol.Busy:
		return fault.BadRequest(fault.CodeInvalidVolume, []string{vol.ID},
			"cannot add volume %s to consistency group %s: its status must be available or in-use, and an operation is running on it", vol.ID, group)
	}
	return nil
}

// checkGroupDelete says whether g may be deleted: without force it must be
// available or error and empty; with force any status, and the members
// go too. Either way no group snapshot may be left.
func checkGroupDelete(g Group, force bool) *fault.Error {
	if len(g.Snapshots) > 0 {
		return fault.BadRequest(fault.CodeInvalidGroup, []string{g.ID},
			"consistency group %s still has cgsnapshots (%d); delete them first", g.ID, len(g.Snapshots))
	}
	if force {
		return nil
	}
	if g.Status != StatusAvailable && g.Status != StatusError {
		return fault.BadRequest(fault.CodeInvalidGroup, []string{g.ID, g.Status},
			"consistency group status must be available or error, but is %s", g.Status)
	}
	if len(g.Members) > 0 {
		return fault.BadRequest(fault.CodeInvalidGroup, []string{g.ID},
			"consistency group %s still contains volumes (%d); delete them with force=true, or remove them first", g.ID, len(g.Members))
	}
	return nil
}

// checkFromSource says whether a group may be made from exactly one of a
// group snapshot or a group.
func checkFromSource(snapshot, group string) *fault.Error {
	switch {
	case snapshot == "" && group == "":
		return fault.BadRequest(fault.CodeInvalidGroup, nil,
			"either cgsnapshot_id or source_cgid must be given to create a consistency group from a source")
	case snapshot != "" && group != "":
		return fault.BadRequest(fault.CodeInvalidGroup, nil,
			"only one of cgsnapshot_id and source_cgid may be given to create a consistency group from a source")
	}
	return nil
}
