package volume

import (
	"encoding/json"
	"maps"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// SetSurface replaces one surface's namespace of a VDI's attributes
// (nil removes it). Surfaces own their namespace; "xen" and "vdiskd" are
// the service's.
func (s *Service) SetSurface(id, ns string, value json.RawMessage) (VDI, error) {
	if ns == nsXen || ns == nsLifecycle || ns == "" {
		return VDI{}, fault.InvalidValue("namespace", ns, "is reserved")
	}
	return s.changeAttrs(id, func(_ Volume, a *Attrs) *fault.Error {
		*a = a.withSurface(ns, value)
		return nil
	})
}

// withSurfaces returns a with each namespace of m set to its value.
func (a Attrs) withSurfaces(m map[string][]byte) Attrs {
	for ns, v := range m {
		a = a.withSurface(ns, v)
	}
	return a
}

// withSurface returns a with namespace ns set to value (nil removes it).
func (a Attrs) withSurface(ns string, value []byte) Attrs {
	a.Surfaces = maps.Clone(a.Surfaces)
	if value == nil {
		delete(a.Surfaces, ns)
	} else {
		if a.Surfaces == nil {
			a.Surfaces = map[string]json.RawMessage{}
		}
		a.Surfaces[ns] = json.RawMessage(value)
	}
	return a
}

func (s *Service) changeAttrs(id string, change func(v Volume, a *Attrs) *fault.Error) (VDI, error) {
	e, ferr := s.lockIdle(id)
	if ferr != nil {
		return VDI{}, ferr
	}
	defer e.mu.Unlock()
	a := e.attrs.Clone()
	if err := change(e.volume(), &a); err != nil {
		return VDI{}, err
	}
	if err := s.setAttrs(e, a); err != nil {
		return VDI{}, StoreError(err, id, "set")
	}
	return s.view(e), nil
}

// lockIdle locks a visible VDI no exclusive operation is running on (a
// copy reading it is no obstacle). The caller unlocks e.mu.
func (s *Service) lockIdle(id string) (*entry, *fault.Error) {
	e, ferr := s.lock(id)
	if ferr != nil {
		return nil, ferr
	}
	if err := checkNotBusy(e.opState()); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	return e, nil
}

// SetReadOnly sets read_only of a live, detached VDI.
func (s *Service) SetReadOnly(id string, ro bool) (VDI, error) {
	e, ferr := s.lockIdle(id)
	if ferr != nil {
		return VDI{}, ferr
	}
	defer e.mu.Unlock()
	if e.info.IsSnapshot() {
		return VDI{}, fault.Conflicts(fault.CodeOperationNotAllowed, []string{"VDI is a snapshot: " + id}, "snapshots are always read-only")
	}
	if len(e.vbds) > 0 {
		return VDI{}, fault.Conflicts(fault.CodeVDIInUse, []string{id, "set_read_only"}, "VDI %s is attached", id)
	}
	if _, err := s.store.SetReadOnly(id, ro); err != nil {
		return VDI{}, StoreError(err, id, "set_read_only")
	}
	if err := s.refresh(e); err != nil {
		return VDI{}, StoreError(err, id, "set_read_only")
	}
	return s.view(e), nil
}

// SetOnBoot sets on_boot. reset takes a hidden snapshot now; every
// writable attach then starts from it (Attach). Setting reset again moves
// that point to now, as XenServer's "state when this flag was last set".
func (s *Service) SetOnBoot(id, mode, by string) (VDI, error) {
	e, ferr := s.lockFor(id, "set_on_boot")
	if ferr != nil {
		return VDI{}, ferr
	}
	defer e.mu.Unlock()
	// reset would roll the replica back at its replicator's next attach.
	if err := e.checkReplicaOwner(by, "set_on_boot"); err != nil {
		return VDI{}, err
	}
	if mode == "reset" && e.info.Kind == blockstore.KindLive {
		if err := s.takeBase(e); err != nil {
			return VDI{}, err
		}
	} else {
		a := e.attrs.Clone()
		old := a.Lifecycle.OnBootBase
		a.Xen.OnBoot, a.Lifecycle.OnBootBase = mode, ""
		if err := s.setAttrs(e, a); err != nil {
			return VDI{}, StoreError(err, id, "set_on_boot")
		}
		s.dropBase(old)
	}
	s.log.Info("VDI on_boot set", "vdi", id, "on_boot", mode, "by", by)
	return s.view(e), nil
}
