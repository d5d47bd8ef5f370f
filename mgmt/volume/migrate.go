package volume

import (
	"fmt"
	"slices"

	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// Check finds a visible VDI and checks that op may run on it now ("" checks
// nothing), answering its state.
func (s *Service) Check(id, op string) (VDI, error) {
	e, ferr := s.lockFor(id, op)
	if ferr != nil {
		return VDI{}, ferr
	}
	defer e.mu.Unlock()
	return s.view(e), nil
}

// Migration is a pool_migrate under way: the VDI is busy with "mirror"
// until Run or Abandon.
type Migration struct {
	s        *Service
	id, task string
	pool, by string
	done     bool
}

// StartMigration checks that VDI id may move to vPool ref and marks it busy
// for task.
func (s *Service) StartMigration(id, ref, task, by string) (*Migration, error) {
	e, ferr := s.lockFor(id, "mirror")
	if ferr != nil {
		return nil, ferr
	}
	defer e.mu.Unlock()
	pool, perr := s.Pool(ref, "SR")
	if perr != nil {
		return nil, perr
	}
	e.addOp(task, "mirror")
	return &Migration{s: s, id: id, task: task, pool: pool.GUID, by: by}, nil
}

// Run moves the VDI, its snapshots (and theirs) and its on_boot base to
// the vPool. vPools are key spaces of one store, so nothing is copied and
// the CBT chain stays usable, which XenServer's storage migration cannot
// offer.
func (m *Migration) Run() (VDI, error) {
	s := m.s
	defer m.Abandon()
	s.pools.inUse.RLock()
	defer s.pools.inUse.RUnlock()
	// Resolve again: the vPool may have gone meanwhile.
	dest, perr := s.Pool(m.pool, "SR")
	if perr != nil {
		return VDI{}, perr
	}
	// The snapshots (and bases) move too, locked so none is destroyed
	// half way, in ID order as every call holding several VDIs; a
	// snapshot taken before the locks were all held means another round.
	var members []*entry
	for {
		fam := slices.Sorted(slices.Values(s.family(m.id)))
		locked, unlock := s.lockSet(fam)
		if slices.Equal(fam, slices.Sorted(slices.Values(s.family(m.id)))) {
			defer unlock()
			members = locked
			break
		}
		unlock()
	}
	var e *entry
	ids := make([]string, 0, len(members))
	for _, f := range members {
		ids = append(ids, f.id)
		if f.id == m.id {
			e = f
		}
	}
	if e == nil || !e.visible() {
		return VDI{}, fault.Missing("VDI", m.id)
	}
	for _, f := range members {
		if c := f.attrs.Lifecycle.GroupSnapshot; c != "" {
			// Its snapshots would move too, and a group snapshot's
			// member never moves alone.
			return VDI{}, fault.Conflicts(fault.CodeOperationNotAllowed,
				[]string{fmt.Sprintf("snapshot %s of VDI %s belongs to group snapshot %s", f.id, m.id, c)},
				"VDI %s cannot move: its snapshot %s belongs to group snapshot %s; delete the group snapshot first", m.id, f.id, c)
		}
	}
	if err := s.store.MovePool(dest.GUID, ids...); err != nil {
		return VDI{}, StoreError(err, m.id, "pool_migrate")
	}
	for _, f := range members {
		f.info.Pool = dest.GUID
		f.note()
	}
	e.releaseOp(m.task)
	m.done = true
	s.log.Info("VDI migrated", "vdi", m.id, "pool", dest.Name, "by", m.by)
	return s.view(e), nil
}

// Abandon releases the VDI if Run did not.
func (m *Migration) Abandon() {
	if m.done {
		return
	}
	m.done = true
	if e := m.s.entry(m.id); e != nil {
		e.mu.Lock()
		e.releaseOp(m.task)
		e.mu.Unlock()
	}
}
