package volume

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// A consistency group (Cinder's) is a set of live VDIs that are
// snapshotted together, at one point in time, and deleted as a whole; a
// group snapshot is one such snapshot of every member. The group's record
// is a store record and each member carries its group in its lifecycle
// attributes, so a group and its members always change in one store
// commit: after a crash, a call on a group happened wholly or not at all.
//
// Locks: a call holds at most one group's (or group snapshot's) op mutex,
// then the VDIs it changes, in ID order (lockAll); groups.mu is a leaf.

// Group statuses, Cinder's. A group is stored available (or error); the
// others are shown while a call changes it.
const (
	StatusCreating      = "creating"
	StatusAvailable     = "available"
	StatusUpdating      = "updating"
	StatusDeleting      = "deleting"
	StatusError         = "error"
	StatusErrorDeleting = "error_deleting"
)

// MaxNameLength bounds group and group snapshot names and descriptions
// (Cinder's column width).
const MaxNameLength = 255

// Group is a consistency group.
type Group struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Pools       []string  `json:"pools"` // vPool guids its members may live in (Cinder's volume types)
	Owner       string    `json:"owner"` // the project it belongs to
	Status      string    `json:"status"`
	Created     time.Time `json:"created"`
	// SourceGroup or SourceSnapshot: what it was created from, if anything.
	SourceGroup    string `json:"source_group,omitempty"`
	SourceSnapshot string `json:"source_snapshot,omitempty"`
	// Surfaces are the surfaces' own fields, by namespace.
	Surfaces map[string]json.RawMessage `json:"surfaces,omitempty"`

	// Members are its VDIs, sorted; Snapshots its group snapshots, sorted.
	Members   []string `json:"-"`
	Snapshots []string `json:"-"`
}

// GroupSnapshot is a snapshot of every member of a group at one point in
// time.
type GroupSnapshot struct {
	ID          string                     `json:"id"`
	Group       string                     `json:"group"`
	Name        string                     `json:"name"`
	Description string                     `json:"description"`
	Owner       string                     `json:"owner"`
	Status      string                     `json:"status"`
	Created     time.Time                  `json:"created"`
	Surfaces    map[string]json.RawMessage `json:"surfaces,omitempty"`

	// Members are its snapshot VDIs, sorted.
	Members []string `json:"-"`
}

const (
	groupKeyPrefix         = "group/"
	groupSnapshotKeyPrefix = "group-snapshot/"
)

// groups is the service's table of groups and group snapshots.
type groups struct {
	mu      sync.Mutex // guards everything below; a leaf, never held across I/O
	byID    map[string]*groupEntry
	snaps   map[string]*groupSnapEntry
	members map[string]map[string]bool // group or group snapshot -> member VDIs
}

// held is what a group's and a group snapshot's entries share.
type held struct {
	// op serialises the calls that change it or read it as a source; it
	// is held across their commit.
	op   sync.Mutex
	busy string // a transient status while a call changes it (under groups.mu)
	gone bool   // deleted (under groups.mu)
}

type groupEntry struct {
	held
	rec Group
}

type groupSnapEntry struct {
	held
	rec GroupSnapshot
}

// loadGroups reads the groups' records (insert indexed the members).
func (s *Service) loadGroups() error {
	g := &s.groups
	g.byID, g.snaps = map[string]*groupEntry{}, map[string]*groupSnapEntry{}
	err := s.store.Records(groupKeyPrefix, func(key string, v []byte) error {
		var rec Group
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("volume: group record %s: %w", key, err)
		}
		g.byID[rec.ID] = &groupEntry{rec: rec}
		return nil
	})
	if err != nil {
		return err
	}
	err = s.store.Records(groupSnapshotKeyPrefix, func(key string, v []byte) error {
		var rec GroupSnapshot
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("volume: group snapshot record %s: %w", key, err)
		}
		g.snaps[rec.ID] = &groupSnapEntry{rec: rec}
		return nil
	})
	return err
}

// note keeps the member index in step with a VDI's lifecycle attributes.
func (g *groups) note(id string, was, is Lifecycle) {
	if was.Group == is.Group && was.GroupSnapshot == is.GroupSnapshot {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range []string{was.Group, was.GroupSnapshot} {
		if k != "" {
			delete(g.members[k], id)
			if len(g.members[k]) == 0 {
				delete(g.members, k)
			}
		}
	}
	for _, k := range []string{is.Group, is.GroupSnapshot} {
		if k != "" {
			if g.members[k] == nil {
				g.members[k] = map[string]bool{}
			}
			g.members[k][id] = true
		}
	}
}

// membersOf lists a group's (or group snapshot's) VDIs, sorted.
// REQUIRES: g.mu held.
func (g *groups) membersOf(id string) []string {
	return slices.Sorted(maps.Keys(g.members[id]))
}

// view is a group as callers see it. REQUIRES: g.mu held.
func (g *groups) view(ge *groupEntry) Group {
	r := ge.rec
	r.Pools = slices.Clone(r.Pools)
	r.Surfaces = maps.Clone(r.Surfaces)
	if ge.busy != "" {
		r.Status = ge.busy
	}
	r.Members = g.membersOf(r.ID)
	r.Snapshots = []string{}
	for id, c := range g.snaps {
		if c.rec.Group == r.ID && !c.gone {
			r.Snapshots = append(r.Snapshots, id)
		}
	}
	slices.Sort(r.Snapshots)
	return r
}

func (g *groups) viewSnapshot(c *groupSnapEntry) GroupSnapshot {
	r := c.rec
	r.Surfaces = maps.Clone(r.Surfaces)
	if c.busy != "" {
		r.Status = c.busy
	}
	r.Members = g.membersOf(r.ID)
	return r
}

// Group reads one group.
func (s *Service) Group(id string) (Group, *fault.Error) {
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	ge := s.groups.byID[id]
	if ge == nil || ge.gone {
		return Group{}, missingGroup(id)
	}
	return s.groups.view(ge), nil
}

// Groups lists every group, in no order.
func (s *Service) Groups() []Group {
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	out := make([]Group, 0, len(s.groups.byID))
	for _, ge := range s.groups.byID {
		if !ge.gone {
			out = append(out, s.groups.view(ge))
		}
	}
	return out
}

// groupUsingPool is a group whose volume types include vPool guid, if any.
func (s *Service) groupUsingPool(guid string) string {
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	for id, ge := range s.groups.byID {
		if slices.Contains(ge.rec.Pools, guid) {
			return id
		}
	}
	return ""
}

// GroupSnapshot reads one group snapshot.
func (s *Service) GroupSnapshot(id string) (GroupSnapshot, *fault.Error) {
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	c := s.groups.snaps[id]
	if c == nil || c.gone {
		return GroupSnapshot{}, missingGroupSnapshot(id)
	}
	return s.groups.viewSnapshot(c), nil
}

// GroupSnapshots lists every group snapshot, in no order.
func (s *Service) GroupSnapshots() []GroupSnapshot {
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	out := make([]GroupSnapshot, 0, len(s.groups.snaps))
	for _, c := range s.groups.snaps {
		if !c.gone {
			out = append(out, s.groups.viewSnapshot(c))
		}
	}
	return out
}

func missingGroup(id string) *fault.Error {
	return fault.New(fault.NotFound, fault.CodeUUIDInvalid, []string{"consistencygroup", id},
		"consistency group %s could not be found", id)
}

func missingGroupSnapshot(id string) *fault.Error {
	return fault.New(fault.NotFound, fault.CodeUUIDInvalid, []string{"cgsnapshot", id},
		"cgsnapshot %s could not be found", id)
}

// holdGroup takes a group's op mutex and marks it busy (if busy is not
// empty), once checkGroupStatus allows. The caller calls the release
// function returned.
func (s *Service) holdGroup(id, busy string) (*groupEntry, func(), *fault.Error) {
	s.groups.mu.Lock()
	ge := s.groups.byID[id]
	s.groups.mu.Unlock()
	if ge == nil {
		return nil, nil, missingGroup(id)
	}
	release, err := s.hold(&ge.held, func() *fault.Error { return checkGroupStatus(ge.rec.Status, busy) }, busy, missingGroup(id))
	return ge, release, err
}

// holdGroupSnapshot is holdGroup for a group snapshot.
func (s *Service) holdGroupSnapshot(id, busy string) (*groupSnapEntry, func(), *fault.Error) {
	s.groups.mu.Lock()
	c := s.groups.snaps[id]
	s.groups.mu.Unlock()
	if c == nil {
		return nil, nil, missingGroupSnapshot(id)
	}
	release, err := s.hold(&c.held, func() *fault.Error { return checkGroupSnapshotStatus(c.rec.Status, busy) }, busy, missingGroupSnapshot(id))
	return c, release, err
}

// hold takes h's op mutex, then, under groups.mu, checks that h is still
// there and that check allows the call, and marks it busy.
func (s *Service) hold(h *held, check func() *fault.Error, busy string, missing *fault.Error) (func(), *fault.Error) {
	h.op.Lock()
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	if h.gone {
		h.op.Unlock()
		return nil, missing
	}
	if err := check(); err != nil {
		h.op.Unlock()
		return nil, err
	}
	h.busy = busy
	return func() {
		s.groups.mu.Lock()
		h.busy = ""
		s.groups.mu.Unlock()
		h.op.Unlock()
	}, nil
}

// lockAll locks several visible VDIs in ID order, the one order any call
// that holds more than one VDI's lock takes them in. The caller calls the
// unlock function returned.
func (s *Service) lockAll(ids []string) ([]*entry, func(), *fault.Error) {
	want := slices.Compact(slices.Sorted(slices.Values(ids)))
	locked, unlock := s.lockSet(want)
	// locked is want, in order, less the volumes that went: the first
	// that differs, or is hidden, is missing.
	for i, id := range want {
		if i >= len(locked) || locked[i].id != id || !locked[i].shown.Load() {
			unlock()
			return nil, nil, fault.Missing("VDI", id)
		}
	}
	return locked, unlock, nil
}

// lockSet locks the volumes of ids that exist, hidden ones too, in ID
// order, skipping any that went.
func (s *Service) lockSet(ids []string) ([]*entry, func()) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	locked := make([]*entry, 0, len(ids))
	for _, id := range ids {
		e := s.entry(id)
		if e == nil {
			continue
		}
		e.mu.Lock()
		if e.gone {
			e.mu.Unlock()
			continue
		}
		locked = append(locked, e)
	}
	return locked, func() {
		for _, e := range locked {
			e.mu.Unlock()
		}
	}
}

// groupRecord is a group's store record.
func groupRecord(g Group) blockstore.Record {
	b, err := json.Marshal(g)
	if err != nil {
		panic(fmt.Sprintf("volume: encoding a group: %v", err))
	}
	return blockstore.Record{Key: groupKeyPrefix + g.ID, Value: b}
}

func groupSnapshotRecord(c GroupSnapshot) blockstore.Record {
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("volume: encoding a group snapshot: %v", err))
	}
	return blockstore.Record{Key: groupSnapshotKeyPrefix + c.ID, Value: b}
}

// NewGroup describes a group to create.
type NewGroup struct {
	Name, Description string
	Pools             []string // vPool guids or names; at least one
	Owner             string
	Surfaces          map[string][]byte
	By                string
}

// resolvePools finds every vPool of refs, as guids, in order, once each.
func (s *Service) resolvePools(refs []string) ([]string, *fault.Error) {
	var out []string
	for _, ref := range refs {
		p, err := s.Pool(ref, "volume type")
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, p.GUID) {
			out = append(out, p.GUID)
		}
	}
	return out, nil
}

// CreateGroup makes an empty group.
func (s *Service) CreateGroup(req NewGroup) (Group, error) {
	if err := checkNames(req.Name, req.Description); err != nil {
		return Group{}, err
	}
	if len(req.Pools) == 0 {
		return Group{}, fault.BadRequest(fault.CodeInvalidVolumeType, nil,
			"volume_types must be provided to create a consistency group")
	}
	s.pools.inUse.RLock()
	defer s.pools.inUse.RUnlock()
	pools, perr := s.resolvePools(req.Pools)
	if perr != nil {
		return Group{}, perr
	}
	g := Group{ID: uuid.NewString(), Name: req.Name, Description: req.Description, Pools: pools,
		Owner: req.Owner, Status: StatusAvailable, Created: s.opts.Now().UTC(), Surfaces: rawSurfaces(req.Surfaces)}
	if _, err := s.store.Apply(blockstore.Change{Records: []blockstore.Record{groupRecord(g)}}); err != nil {
		return Group{}, StoreError(err, g.ID, "create consistency group")
	}
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	ge := &groupEntry{rec: g}
	s.groups.byID[g.ID] = ge
	s.log.Info("consistency group created", "group", g.ID, "name", g.Name, "by", req.By)
	return s.groups.view(ge), nil
}

func rawSurfaces(in map[string][]byte) map[string]json.RawMessage {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]json.RawMessage, len(in))
	for k, v := range in {
		out[k] = json.RawMessage(v)
	}
	return out
}

func checkNames(name, description string) *fault.Error {
	if len(name) > MaxNameLength {
		return fault.InvalidValue("name", "", "has more than %d characters", MaxNameLength)
	}
	if len(description) > MaxNameLength {
		return fault.InvalidValue("description", "", "has more than %d characters", MaxNameLength)
	}
	return nil
}

// GroupUpdate changes a group: its name and description, and members
// added and removed, all in one commit.
type GroupUpdate struct {
	Name, Description *string
	Add, Remove       []string
	By                string
}

// UpdateGroup applies u to group id. Volumes already in the group are not
// added again (Cinder ignores them).
func (s *Service) UpdateGroup(id string, u GroupUpdate) (Group, error) {
	if err := checkUpdateRequest(u); err != nil {
		return Group{}, err
	}
	ge, release, err := s.holdGroup(id, StatusUpdating)
	if err != nil {
		return Group{}, err
	}
	defer release()
	rec := ge.rec
	rec.Pools = slices.Clone(rec.Pools)
	if u.Name != nil {
		rec.Name = *u.Name
	}
	if u.Description != nil {
		rec.Description = *u.Description
	}
	change := blockstore.Change{Records: []blockstore.Record{groupRecord(rec)}}
	es, unlock, ferr := s.lockAll(append(slices.Clone(u.Add), u.Remove...))
	if ferr != nil {
		// Cinder answers an unknown volume in an update as invalid input.
		return Group{}, fault.BadRequest(fault.CodeInvalidVolume, ferr.Params,
			"cannot update consistency group %s: %s", id, ferr.Message)
	}
	defer unlock()
	adds, removes := map[string]Attrs{}, map[string]Attrs{}
	for _, e := range es {
		adding := slices.Contains(u.Add, e.id)
		if err := checkMembership(id, rec.Pools, memberState(e), adding); err != nil {
			return Group{}, err
		}
		a := e.attrs.Clone()
		switch {
		case adding && a.Lifecycle.Group == id:
			continue // already in: ignored
		case adding:
			a.Lifecycle.Group = id
			adds[e.id] = a
		default:
			a.Lifecycle.Group = ""
			removes[e.id] = a
		}
		change.Attrs = append(change.Attrs, blockstore.AttrsRequest{ID: e.id, Attrs: a.encode()})
	}
	out, serr := s.store.Apply(change)
	if serr != nil {
		return Group{}, StoreError(serr, id, "update consistency group")
	}
	byID := map[string]*entry{}
	for _, e := range es {
		byID[e.id] = e
	}
	for _, info := range out.Attrs {
		e := byID[info.ID]
		a, ok := adds[e.id]
		if !ok {
			a = removes[e.id]
		}
		s.setIndexed(e, info, a)
	}
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	ge.rec = rec
	s.log.Info("consistency group updated", "group", id, "added", len(adds), "removed", len(removes), "by", u.By)
	v := s.groups.view(ge)
	v.Status = StatusAvailable // as it is once this call returns
	return v, nil
}

// setIndexed records a VDI's committed new description and attributes in
// the index. REQUIRES: e.mu held.
func (s *Service) setIndexed(e *entry, info blockstore.VolumeInfo, a Attrs) {
	info.Attrs = nil
	was := e.attrs.Lifecycle
	e.info, e.attrs = info, a
	e.shown.Store(!e.gone && a.Lifecycle.Visible())
	s.groups.note(e.id, was, a.Lifecycle)
	e.note()
}

// memberState is what the membership rules read of a VDI. REQUIRES: e.mu
// held.
func memberState(e *entry) MemberState {
	st := e.opState()
	return MemberState{ID: e.id, Kind: e.info.Kind, Pool: e.info.Pool, Group: e.attrs.Lifecycle.Group,
		Busy: checkNotBusy(st) != nil}
}

// DeleteGroup deletes an empty group; with force, its members too, in the
// same commit.
func (s *Service) DeleteGroup(id string, force bool, by string) error {
	ge, release, err := s.holdGroup(id, StatusDeleting)
	if err != nil {
		return err
	}
	defer release()
	s.groups.mu.Lock()
	view := s.groups.view(ge)
	view.Status = ge.rec.Status
	s.groups.mu.Unlock()
	if err := checkGroupDelete(view, force); err != nil {
		return err
	}
	es, unlock, ferr := s.lockAll(view.Members)
	if ferr != nil {
		return ferr
	}
	defer unlock()
	change := blockstore.Change{Records: []blockstore.Record{{Key: groupKeyPrefix + id}}}
	for _, e := range es {
		st := e.opState()
		st.Group = "" // it goes with its group
		if err := checkOperation(st, "destroy"); err != nil {
			return err
		}
		if snaps := s.snapshotsOf(e.id); len(snaps) > 0 {
			return fault.BadRequest(fault.CodeInvalidVolume, []string{e.id},
				"volume %s has snapshots (%d); delete them before deleting consistency group %s", e.id, len(snaps), id)
		}
		change.Destroys = append(change.Destroys, e.id)
	}
	if _, err := s.store.Apply(change); err != nil {
		return StoreError(err, id, "delete consistency group")
	}
	for _, e := range es {
		s.remove(e)
	}
	for _, e := range es {
		s.dropBase(e.attrs.Lifecycle.OnBootBase)
	}
	s.groups.mu.Lock()
	ge.gone = true
	delete(s.groups.byID, id)
	s.groups.mu.Unlock()
	s.log.Info("consistency group deleted", "group", id, "volumes", len(es), "by", by)
	return nil
}
