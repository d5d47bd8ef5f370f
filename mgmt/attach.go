package mgmt

import (
	"time"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/api"
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

	s *Server
}

// AttachVBD opens a VDI for a client. A writable attach of an
// on_boot=reset VDI that nobody else has attached first reverts it to the
// content it had when reset was set. Attachments still there are given
// Options.DetachGrace to go first: a VM restarted at once must not skip
// its reset because its old connection has not been torn down yet.
func (s *Server) AttachVBD(id, user string, writable bool) (*VBD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.vdiFor(id, "")
	if err != nil {
		return nil, err
	}
	resets := func(v vdi) bool { return writable && v.attrs.onBoot() == "reset" && v.attrs.OnBootBase != "" }
	for deadline := time.Now().Add(s.opts.DetachGrace); resets(v) && len(s.vbds[id]) > 0 && s.pauseLocked(deadline); {
		if _, v, err = s.vdiFor(id, ""); err != nil {
			return nil, err
		}
	}
	switch {
	case v.info.Kind == blockstore.KindCBTMetadata:
		return nil, api.Conflict(api.CodeVDIIncompatible, []string{id, "cbt_metadata"}, "VDI %s holds no data", id)
	case writable && v.info.ReadOnly:
		return nil, api.Conflict(api.CodeVDIReadOnly, []string{id}, "VDI %s is read-only", id)
	}
	for _, op := range s.ops[id] {
		// A copy reads the source as it is: it may be read alongside, not
		// written; and nothing attaches a copy's destination.
		if op != "copy" || writable || s.copyTargets[id] != "" {
			return nil, api.Conflict(api.CodeOtherOperation, []string{"VDI", id}, "VDI %s is busy with %s", id, op)
		}
	}
	if resets(v) && len(s.vbds[id]) == 0 {
		if _, err := s.store.Revert(id, v.attrs.OnBootBase); err != nil {
			return nil, storeError(err, id, "attach")
		}
		s.log.Info("VDI reset to its on_boot base", "vdi", id)
	}
	d, aerr := s.store.Attach(id)
	if aerr != nil {
		return nil, storeError(aerr, id, "attach")
	}
	b := &VBD{UUID: uuid.NewString(), VDI: id, Writable: writable, User: user, Disk: d, s: s}
	if s.vbds[id] == nil {
		s.vbds[id] = map[string]*VBD{}
	}
	s.vbds[id][b.UUID] = b
	return b, nil
}

// Close detaches.
func (b *VBD) Close() error {
	s := b.s
	s.mu.Lock()
	delete(s.vbds[b.VDI], b.UUID)
	if len(s.vbds[b.VDI]) == 0 {
		delete(s.vbds, b.VDI)
	}
	s.mu.Unlock()
	return b.Disk.Close()
}
