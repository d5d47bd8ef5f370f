package volume

import (
	"maps"
	"slices"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// Volume is what the index knows of a VDI: the store's description and
// the attributes. A copy.
type Volume struct {
	Info     blockstore.VolumeInfo
	Attrs    Attrs
	Attached bool // an attachment exists now
}

// VDI is one VDI's whole state at one moment: what a record shows. A copy.
type VDI struct {
	Volume
	Snapshots  []string          // visible snapshots, sorted
	VBDs       []string          // attachments' uuids, sorted
	Operations map[string]string // task -> operation in progress
	Allowed    []string          // operations that may run now
	// PhysicalUtilisation is measured by the store: the bytes this VDI's
	// own data takes.
	PhysicalUtilisation uint64
}

// Lookup reads what the index knows of a visible VDI, without measuring
// anything: the cheap read for hot paths (an NBD connect).
func (s *Service) Lookup(id string) (Volume, *fault.Error) {
	e, err := s.lock(id)
	if err != nil {
		return Volume{}, err
	}
	defer e.mu.Unlock()
	return e.volume(), nil
}

// Get reads one visible VDI's whole state.
func (s *Service) Get(id string) (VDI, error) {
	e, err := s.lock(id)
	if err != nil {
		return VDI{}, err
	}
	defer e.mu.Unlock()
	return s.view(e), nil
}

// volume copies e's description. REQUIRES: e.mu held.
func (e *entry) volume() Volume {
	return Volume{Info: e.info, Attrs: e.attrs.Clone(), Attached: len(e.vbds) > 0}
}

// view builds e's whole state. REQUIRES: e.mu held.
func (s *Service) view(e *entry) VDI {
	phys, err := s.store.PhysicalUtilisation(e.id)
	if err != nil {
		phys = 0 // destroyed meanwhile; the record is about to vanish anyway
	}
	vbds := make([]string, 0, len(e.vbds))
	for id := range e.vbds {
		vbds = append(vbds, id)
	}
	slices.Sort(vbds)
	return VDI{
		Volume: e.volume(), Snapshots: s.snapshotsOf(e.id), VBDs: vbds,
		Operations: maps.Clone(e.ops), Allowed: Allowed(e.opState()), PhysicalUtilisation: phys,
	}
}

// Find lists the visible VDIs match accepts, sorted by uuid, reading the
// index only (no record is built, nothing is measured).
func (s *Service) Find(match func(v *Volume) bool) []string {
	var out []string
	s.Each(func(v *Volume) {
		if match == nil || match(v) {
			out = append(out, v.Info.ID)
		}
	})
	slices.Sort(out)
	return out
}

// Each calls fn for every visible VDI, in no order. fn must not call the
// service back for the same VDI.
func (s *Service) Each(fn func(v *Volume)) {
	for _, e := range s.entries() {
		e.mu.Lock()
		if !e.shown.Load() {
			e.mu.Unlock()
			continue
		}
		v := Volume{Info: e.info, Attrs: e.attrs, Attached: len(e.vbds) > 0} // fn must not change it
		e.mu.Unlock()
		fn(&v)
	}
}

// Count is the number of volumes in the store, hidden ones included.
func (s *Service) Count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.vdis)
}
