package volume

import (
	"time"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// VBD is one attachment of a VDI: an NBD connection. While it exists the
// VDI is "attached" for XenAPI's rules (destroy, resize, set_on_boot,
// list_changed_blocks of a writable attach refuse with VDI_IN_USE).
type VBD struct {
	UUID     string
	VDI      string
	Writable bool
	User     string
	Disk     *blockstore.Disk

	e *entry
	s *Service
}

// Attach opens a VDI for a client. A writable attach of an on_boot=reset
// VDI that nobody else has attached first reverts it to the content it had
// when reset was set. Attachments still there are given DetachGrace to go
// first: a VM restarted at once must not skip its reset because its old
// connection has not been torn down yet.
func (s *Service) Attach(id, user string, writable bool) (*VBD, error) {
	e, ferr := s.lock(id)
	if ferr != nil {
		return nil, ferr
	}
	defer e.mu.Unlock()
	resets := func() bool {
		return writable && e.attrs.Xen.OnBootMode() == "reset" && e.attrs.Lifecycle.OnBootBase != ""
	}
	if grace := s.DetachGrace(); resets() && len(e.vbds) > 0 && grace > 0 {
		timer := time.NewTimer(grace)
		for resets() && len(e.vbds) > 0 && e.waitChangeLocked(timer.C) {
			if !e.shown.Load() { // destroyed or forgotten meanwhile
				timer.Stop()
				return nil, fault.Missing("VDI", id)
			}
		}
		timer.Stop()
	}
	switch {
	case e.info.Kind == blockstore.KindCBTMetadata:
		return nil, fault.Conflicts(fault.CodeVDIIncompatible, []string{id, "cbt_metadata"}, "VDI %s holds no data", id)
	case writable && e.attrs.Lifecycle.ReplicaOwner != "" && user != e.attrs.Lifecycle.ReplicaOwner:
		return nil, e.checkReplicaOwner(user, "write")
	case writable && e.info.ReadOnly:
		return nil, fault.Conflicts(fault.CodeVDIReadOnly, []string{id}, "VDI %s is read-only", id)
	}
	for _, op := range e.ops {
		// A copy reads the source as it is: it may be read alongside, not
		// written; and nothing attaches a copy's destination.
		if op != "copy" || writable || e.copyTarget != "" {
			return nil, fault.Conflicts(fault.CodeOtherOperation, []string{"VDI", id}, "VDI %s is busy with %s", id, op)
		}
	}
	if resets() && len(e.vbds) == 0 {
		info, err := s.store.Revert(id, e.attrs.Lifecycle.OnBootBase)
		if err != nil {
			return nil, StoreError(err, id, "attach")
		}
		info.Attrs = nil
		e.info = info
		e.note()
		s.log.Info("VDI reset to its on_boot base", "vdi", id)
	}
	d, err := s.store.Attach(id)
	if err != nil {
		return nil, StoreError(err, id, "attach")
	}
	b := &VBD{UUID: uuid.NewString(), VDI: id, Writable: writable, User: user, Disk: d, e: e, s: s}
	if e.vbds == nil {
		e.vbds = map[string]*VBD{}
	}
	e.vbds[b.UUID] = b
	s.mu.Lock()
	s.attached[b.UUID] = id
	s.mu.Unlock()
	e.note()
	return b, nil
}

// Close detaches: the disk first (it waits for requests in flight), so a
// call woken by the detach finds the store's handle gone too.
func (b *VBD) Close() error {
	err := b.Disk.Close()
	e := b.e
	e.mu.Lock()
	if _, ok := e.vbds[b.UUID]; ok {
		delete(e.vbds, b.UUID)
		e.signal()
		e.note()
	}
	e.mu.Unlock()
	b.s.mu.Lock()
	delete(b.s.attached, b.UUID)
	b.s.mu.Unlock()
	return err
}
