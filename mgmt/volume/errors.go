package volume

import (
	"errors"
	"syscall"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/cbt"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// StoreError translates a block-store failure of op on VDI id into the
// XenAPI error a caller branches on. Errors that are faults already pass
// through.
func StoreError(err error, id, op string) *fault.Error {
	if err == nil {
		return nil
	}
	if f, ok := fault.As(err); ok {
		return f
	}
	switch {
	case errors.Is(err, blockstore.ErrNotFound):
		return fault.Missing("VDI", id)
	case errors.Is(err, blockstore.ErrInUse):
		return fault.Conflicts(fault.CodeVDIInUse, []string{id, op}, "VDI %s is attached; %s needs it detached", id, op)
	case errors.Is(err, blockstore.ErrReadOnly):
		return fault.Conflicts(fault.CodeVDIReadOnly, []string{id}, "VDI %s is read-only", id)
	case errors.Is(err, blockstore.ErrShrink):
		return fault.Conflicts(fault.CodeShrinkRefused, []string{"", "VDI Invalid size", "shrinking not allowed"},
			"VDI %s cannot shrink: %v", id, err)
	case errors.Is(err, blockstore.ErrIsSnapshot):
		return fault.Conflicts(fault.CodeOperationNotAllowed, []string{"VDI is a snapshot: " + id}, "VDI %s is a snapshot", id)
	case errors.Is(err, blockstore.ErrNotSnapshot):
		return notASnapshot(id)
	case errors.Is(err, blockstore.ErrNoCBT):
		return fault.Conflicts(fault.CodeVDINoCBTMetadata, []string{id}, "VDI %s has no changed-block tracking metadata", id)
	case errors.Is(err, blockstore.ErrCBTMetadata):
		return fault.Conflicts(fault.CodeVDIIncompatible, []string{id, "cbt_metadata"}, "VDI %s holds only changed-block metadata", id)
	case errors.Is(err, cbt.ErrChain):
		return fault.Conflicts(fault.CodeChangedBlocks, []string{"", "Failed to calculate changed blocks for given VDIs", ""},
			"%v", err)
	case errors.Is(err, blockstore.ErrInvalid):
		return fault.BadRequest(fault.CodeInvalidValue, []string{"", ""}, "%v", err)
	case errors.Is(err, syscall.ENOSPC):
		return fault.New(fault.NoSpace, fault.CodeSRFull, []string{id}, "no space left for VDI %s: %v", id, err)
	case errors.Is(err, blockstore.ErrClosed):
		return fault.ShuttingDown()
	}
	return fault.Internalf([]string{id}, "%s %s: %v", op, id, err)
}
