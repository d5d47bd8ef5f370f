package volume

import (
	"slices"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// NewGroupSnapshot describes a snapshot of every member of a group.
type NewGroupSnapshot struct {
	Group             string
	Name, Description string
	Owner             string
	Surfaces          map[string][]byte
	// MemberSurfaces, if set, gives each member snapshot's surface
	// attributes from its source volume.
	MemberSurfaces func(source Volume) map[string][]byte
	By             string
}

// SnapshotGroup snapshots every member of a group at one point in time, in
// one store commit with the group snapshot's record: each member snapshot
// holds every write acknowledged before the call, and none holds a write
// that started after it returned.
func (s *Service) SnapshotGroup(req NewGroupSnapshot) (GroupSnapshot, error) {
	if err := checkNames(req.Name, req.Description); err != nil {
		return GroupSnapshot{}, err
	}
	ge, release, err := s.holdGroup(req.Group, StatusUpdating)
	if err != nil {
		return GroupSnapshot{}, err
	}
	defer release()
	s.groups.mu.Lock()
	members := s.groups.membersOf(ge.rec.ID)
	s.groups.mu.Unlock()
	es, unlock, ferr := s.lockAll(members)
	if ferr != nil {
		return GroupSnapshot{}, ferr
	}
	defer unlock()
	now := s.opts.Now().UTC()
	c := GroupSnapshot{ID: uuid.NewString(), Group: ge.rec.ID, Name: req.Name, Description: req.Description,
		Owner: req.Owner, Status: StatusAvailable, Created: now, Surfaces: rawSurfaces(req.Surfaces)}
	change := blockstore.Change{Records: []blockstore.Record{groupSnapshotRecord(c)}}
	attrs := map[string]Attrs{}
	for _, e := range es {
		st := e.opState()
		if err := checkOperation(st, "snapshot"); err != nil {
			return GroupSnapshot{}, fault.BadRequest(fault.CodeInvalidVolume, []string{e.id},
				"cannot snapshot consistency group %s: volume %s: %s", c.Group, e.id, err.Message)
		}
		a := Attrs{Xen: derivedAttrs(e.attrs.Xen, nil, now), Lifecycle: Lifecycle{GroupSnapshot: c.ID}}
		if req.MemberSurfaces != nil {
			a = a.withSurfaces(req.MemberSurfaces(e.volume()))
		}
		id := uuid.NewString()
		attrs[id] = a
		change.Snapshots = append(change.Snapshots, blockstore.SnapshotRequest{Source: e.id, ID: id, Attrs: a.encode()})
	}
	out, serr := s.store.Apply(change)
	if serr != nil {
		return GroupSnapshot{}, StoreError(serr, c.Group, "create cgsnapshot")
	}
	for _, info := range out.Snapshots {
		s.insert(info, attrs[info.ID])
	}
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	s.groups.snaps[c.ID] = &groupSnapEntry{rec: c}
	s.log.Info("cgsnapshot created", "cgsnapshot", c.ID, "group", c.Group, "snapshots", len(out.Snapshots), "by", req.By)
	return s.groups.viewSnapshot(s.groups.snaps[c.ID]), nil
}

// DeleteGroupSnapshot destroys a group snapshot and its member snapshots in
// one commit.
func (s *Service) DeleteGroupSnapshot(id, by string) error {
	c, release, err := s.holdGroupSnapshot(id, StatusDeleting)
	if err != nil {
		return err
	}
	defer release()
	s.groups.mu.Lock()
	members := s.groups.membersOf(id)
	s.groups.mu.Unlock()
	es, unlock, ferr := s.lockAll(members)
	if ferr != nil {
		return ferr
	}
	defer unlock()
	change := blockstore.Change{Records: []blockstore.Record{{Key: groupSnapshotKeyPrefix + id}}}
	for _, e := range es {
		st := e.opState()
		st.GroupSnapshot = "" // it goes with its group snapshot
		if err := checkOperation(st, "destroy"); err != nil {
			return fault.BadRequest(fault.CodeInvalidGroupSnapshot, []string{id},
				"cannot delete cgsnapshot %s: snapshot %s: %s", id, e.id, err.Message)
		}
		change.Destroys = append(change.Destroys, e.id)
	}
	if _, err := s.store.Apply(change); err != nil {
		return StoreError(err, id, "delete cgsnapshot")
	}
	for _, e := range es {
		s.remove(e)
	}
	s.groups.mu.Lock()
	c.gone = true
	delete(s.groups.snaps, id)
	s.groups.mu.Unlock()
	s.log.Info("cgsnapshot deleted", "cgsnapshot", id, "snapshots", len(es), "by", by)
	return nil
}

// GroupFromSource describes a group made from a group snapshot or, at one
// point in time, from another group's volumes.
type GroupFromSource struct {
	Name, Description string
	FromSnapshot      string // a group snapshot's id
	FromGroup         string // or a group's
	Owner             string
	Surfaces          map[string][]byte
	// MemberSurfaces, if set, gives each new volume's surface attributes
	// from its source.
	MemberSurfaces func(source Volume) map[string][]byte
	By             string
}

// CreateGroupFromSource makes a group with one new volume per source
// volume: clones of a group snapshot's snapshots, or of a group's members
// frozen together (a group snapshot nobody sees). Nothing is copied; the
// group, its volumes and their marks are one store commit.
func (s *Service) CreateGroupFromSource(req GroupFromSource) (Group, error) {
	if err := checkNames(req.Name, req.Description); err != nil {
		return Group{}, err
	}
	if err := checkFromSource(req.FromSnapshot, req.FromGroup); err != nil {
		return Group{}, err
	}
	s.pools.inUse.RLock() // the new group names vPools
	defer s.pools.inUse.RUnlock()
	var (
		pools   []string
		sources []string
	)
	if req.FromSnapshot != "" {
		// A source is held, so it cannot change meanwhile, but not
		// marked: it looks as it is (Cinder leaves sources alone).
		c, release, err := s.holdGroupSnapshot(req.FromSnapshot, "")
		if err != nil {
			return Group{}, err
		}
		defer release()
		if err := checkGroupSnapshotStatus(c.rec.Status, StatusCreating); err != nil {
			return Group{}, err
		}
		s.groups.mu.Lock()
		sources = s.groups.membersOf(c.rec.ID)
		if g := s.groups.byID[c.rec.Group]; g != nil {
			pools = slices.Clone(g.rec.Pools)
		}
		s.groups.mu.Unlock()
		if len(sources) == 0 {
			return Group{}, fault.BadRequest(fault.CodeInvalidGroup, []string{c.rec.ID},
				"cgsnapshot %s is empty; no consistency group can be created from it", c.rec.ID)
		}
	} else {
		ge, release, err := s.holdGroup(req.FromGroup, "")
		if err != nil {
			return Group{}, err
		}
		defer release()
		if err := checkGroupStatus(ge.rec.Status, StatusUpdating); err != nil {
			return Group{}, err
		}
		s.groups.mu.Lock()
		sources = s.groups.membersOf(ge.rec.ID)
		pools = slices.Clone(ge.rec.Pools)
		s.groups.mu.Unlock()
		if len(sources) == 0 {
			return Group{}, fault.BadRequest(fault.CodeInvalidGroup, []string{ge.rec.ID},
				"source consistency group %s is empty; no consistency group can be created from it", ge.rec.ID)
		}
	}
	es, unlock, ferr := s.lockAll(sources)
	if ferr != nil {
		return Group{}, ferr
	}
	defer unlock()
	now := s.opts.Now().UTC()
	g := Group{ID: uuid.NewString(), Name: req.Name, Description: req.Description, Pools: pools,
		Owner: req.Owner, Status: StatusAvailable, Created: now, SourceGroup: req.FromGroup,
		SourceSnapshot: req.FromSnapshot, Surfaces: rawSurfaces(req.Surfaces)}
	change := blockstore.Change{Records: []blockstore.Record{groupRecord(g)}}
	attrs := map[string]Attrs{}
	for _, e := range es {
		if err := checkOperation(e.opState(), "clone"); err != nil {
			return Group{}, fault.BadRequest(fault.CodeInvalidVolume, []string{e.id},
				"cannot create a consistency group from %s: %s", e.id, err.Message)
		}
		if !slices.Contains(g.Pools, e.info.Pool) {
			g.Pools = append(g.Pools, e.info.Pool) // the source group lost it: keep every member placeable
		}
		a := Attrs{Xen: derivedAttrs(e.attrs.Xen, nil, now), Lifecycle: Lifecycle{Group: g.ID}}
		if req.MemberSurfaces != nil {
			a = a.withSurfaces(req.MemberSurfaces(e.volume()))
		}
		id := uuid.NewString()
		attrs[id] = a
		change.Clones = append(change.Clones, blockstore.CloneRequest{Source: e.id, ID: id, Attrs: a.encode()})
	}
	change.Records[0] = groupRecord(g)
	out, serr := s.store.Apply(change)
	if serr != nil {
		return Group{}, StoreError(serr, g.ID, "create consistency group from source")
	}
	for _, info := range out.Clones {
		n := s.insert(info, attrs[info.ID])
		if attrs[info.ID].Xen.OnBootMode() == "reset" {
			n.mu.Lock()
			if err := s.takeBase(n); err != nil {
				s.log.Warn("taking the on_boot base of a new group member failed; the next start retries", "vdi", n.id, "err", err)
			}
			n.mu.Unlock()
		}
	}
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	ge := &groupEntry{rec: g}
	s.groups.byID[g.ID] = ge
	s.log.Info("consistency group created from a source", "group", g.ID, "cgsnapshot", req.FromSnapshot,
		"source_group", req.FromGroup, "volumes", len(out.Clones), "by", req.By)
	return s.groups.view(ge), nil
}
