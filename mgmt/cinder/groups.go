package cinder

import (
	"encoding/json"

	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// groupAttrs are Cinder's fields of a group the volume service does not
// know.
type groupAttrs struct {
	UserID           string `json:"user_id,omitempty"`
	AvailabilityZone string `json:"availability_zone,omitempty"`
}

func (s *Surface) groupFields(g volume.Group) groupAttrs {
	var a groupAttrs
	if raw := g.Surfaces[namespace]; raw != nil {
		_ = json.Unmarshal(raw, &a) // written by this surface only
	}
	if a.AvailabilityZone == "" {
		a.AvailabilityZone = s.opts.Zone
	}
	return a
}

func (s *Surface) groupView(g volume.Group) cinderapi.Group {
	return cinderapi.Group{ID: g.ID, Status: g.Status, AvailabilityZone: s.groupFields(g).AvailabilityZone,
		CreatedAt: cinderapi.Time(g.Created), Name: cinderapi.Text(g.Name), Description: cinderapi.Text(g.Description),
		VolumeTypes: append([]string{}, g.Pools...)}
}

// groupSortKeys are the group fields lists sort by.
var groupSortKeys = []string{"created_at", "id", "name", "status", "description", "availability_zone"}

func (s *Surface) groupRows(c *rpc.Call, a *cinderapi.ListArgs) []row {
	all := listsAll(c, a)
	var rows []row
	for _, g := range s.vols.Groups() {
		if !all && g.Owner != a.TenantID {
			continue
		}
		v := s.groupView(g)
		rows = append(rows, row{id: g.ID, summary: cinderapi.Summary{ID: g.ID, Name: v.Name}, detail: v,
			fields: map[string]string{"id": g.ID, "name": g.Name, "status": v.Status, "created_at": v.CreatedAt,
				"description": g.Description, "availability_zone": v.AvailabilityZone, "project_id": g.Owner}})
	}
	return rows
}

func (s *Surface) groupList(c *rpc.Call, a *cinderapi.ListArgs) (any, error) {
	return s.listOf(c, a, "consistencygroups", "consistencygroup_links", groupSortKeys, false, s.groupRows)
}

func (s *Surface) groupDetail(c *rpc.Call, a *cinderapi.ListArgs) (any, error) {
	return s.listOf(c, a, "consistencygroups", "consistencygroup_links", groupSortKeys, true, s.groupRows)
}

// listOf answers a list: its rows for the caller, filtered, sorted and
// cut, in the summary or detail view, with a next link when the page is
// full (linksKey "" for lists that have none).
func (s *Surface) listOf(c *rpc.Call, a *cinderapi.ListArgs, key, linksKey string, sortable []string, detail bool,
	rowsOf func(*rpc.Call, *cinderapi.ListArgs) []row) (any, error) {
	l, ferr := parseListing(a, sortable)
	if ferr != nil {
		return nil, ferr
	}
	page, full, ferr := l.apply(rowsOf(c, a))
	if ferr != nil {
		return nil, ferr
	}
	items := make([]any, 0, len(page))
	for _, r := range page {
		if detail {
			items = append(items, r.detail)
		} else {
			items = append(items, r.summary)
		}
	}
	out := map[string]any{key: items}
	if full && linksKey != "" {
		scheme := "http"
		if c.R.TLS != nil {
			scheme = "https"
		}
		out[linksKey] = []cinderapi.Link{nextLink(c.R.URL, c.R.Host, scheme, page[len(page)-1].id)}
	}
	return out, nil
}

// group finds a group the caller may see; any other is not found.
func (s *Surface) group(c *rpc.Call, tenant, id string) (volume.Group, error) {
	g, err := s.vols.Group(id)
	if err != nil {
		return volume.Group{}, err
	}
	if !sees(c, tenant, g.Owner) {
		return volume.Group{}, fault.New(fault.NotFound, fault.CodeUUIDInvalid, []string{"consistencygroup", id},
			"consistency group %s could not be found", id)
	}
	return g, nil
}

func (s *Surface) groupShow(c *rpc.Call, a *cinderapi.GroupRef) (any, error) {
	g, err := s.group(c, a.TenantID, a.ID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"consistencygroup": s.groupView(g)}, nil
}

// checkZone refuses an availability zone other than this daemon's.
func (s *Surface) checkZone(az string) error {
	if az != "" && az != s.opts.Zone {
		return fault.BadRequest(fault.CodeInvalidValue, []string{"availability_zone", az},
			"Availability zone '%s' is invalid: this daemon is zone %s", az, s.opts.Zone)
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings and maps
	}
	return b
}

func (s *Surface) groupCreate(c *rpc.Call, a *cinderapi.GroupCreateArgs) (any, error) {
	if err := s.checkZone(a.AvailabilityZone); err != nil {
		return nil, err
	}
	g, err := s.vols.CreateGroup(volume.NewGroup{Name: a.Name, Description: a.Description, Pools: a.Types(),
		Owner: a.TenantID, By: c.User, Surfaces: map[string][]byte{
			namespace: mustJSON(groupAttrs{UserID: c.User, AvailabilityZone: s.opts.Zone})}})
	if err != nil {
		return nil, err
	}
	return map[string]any{"consistencygroup": cinderapi.Summary{ID: g.ID, Name: cinderapi.Text(g.Name)}}, nil
}

func (s *Surface) groupCreateFromSource(c *rpc.Call, a *cinderapi.GroupFromSourceArgs) (any, error) {
	req := volume.GroupFromSource{Name: a.Name, Description: a.Description, FromSnapshot: a.CGSnapshotID,
		FromGroup: a.SourceCGID, Owner: a.TenantID, By: c.User,
		Surfaces: map[string][]byte{namespace: mustJSON(groupAttrs{UserID: c.User, AvailabilityZone: s.opts.Zone})}}
	// Unknown or foreign sources are not found; the service checks the rest.
	switch {
	case a.CGSnapshotID != "" && a.SourceCGID == "":
		if _, err := s.groupSnapshot(c, a.TenantID, a.CGSnapshotID); err != nil {
			return nil, err
		}
	case a.SourceCGID != "" && a.CGSnapshotID == "":
		if _, err := s.group(c, a.TenantID, a.SourceCGID); err != nil {
			return nil, err
		}
	}
	req.MemberSurfaces = func(src volume.Volume) map[string][]byte {
		va := volumeFields(src)
		n := volumeAttrs{ProjectID: a.TenantID, UserID: c.User, AvailabilityZone: s.opts.Zone, Metadata: va.Metadata}
		if src.Info.IsSnapshot() {
			n.SnapshotID = src.Info.ID
		} else {
			n.SourceVolID = src.Info.ID
		}
		return map[string][]byte{namespace: mustJSON(n)}
	}
	g, err := s.vols.CreateGroupFromSource(req)
	if err != nil {
		return nil, err
	}
	return map[string]any{"consistencygroup": cinderapi.Summary{ID: g.ID, Name: cinderapi.Text(g.Name)}}, nil
}

func (s *Surface) groupDelete(c *rpc.Call, a *cinderapi.GroupDeleteArgs) (any, error) {
	if _, err := s.group(c, a.TenantID, a.ID); err != nil {
		return nil, err
	}
	return nil, s.vols.DeleteGroup(a.ID, bool(a.Force), c.User)
}

func (s *Surface) groupUpdate(c *rpc.Call, a *cinderapi.GroupUpdateArgs) (any, error) {
	if _, err := s.group(c, a.TenantID, a.ID); err != nil {
		return nil, err
	}
	u := volume.GroupUpdate{Name: a.Name, Description: a.Description, Add: cinderapi.SplitList(a.AddVolumes),
		Remove: cinderapi.SplitList(a.RemoveVolumes), By: c.User}
	for _, id := range append(append([]string{}, u.Add...), u.Remove...) {
		v, err := s.vols.Lookup(id)
		if err != nil || !sees(c, a.TenantID, s.fields(v).ProjectID) {
			return nil, fault.BadRequest(fault.CodeInvalidVolume, []string{id},
				"Invalid volume: cannot update consistency group %s: volume %s could not be found", a.ID, id)
		}
	}
	_, err := s.vols.UpdateGroup(a.ID, u)
	return nil, err
}

// groupSnapshot finds a cgsnapshot the caller may see.
func (s *Surface) groupSnapshot(c *rpc.Call, tenant, id string) (volume.GroupSnapshot, error) {
	g, err := s.vols.GroupSnapshot(id)
	if err != nil {
		return volume.GroupSnapshot{}, err
	}
	if !sees(c, tenant, g.Owner) {
		return volume.GroupSnapshot{}, fault.New(fault.NotFound, fault.CodeUUIDInvalid, []string{"cgsnapshot", id},
			"cgsnapshot %s could not be found", id)
	}
	return g, nil
}

func groupSnapshotView(g volume.GroupSnapshot) cinderapi.GroupSnapshot {
	return cinderapi.GroupSnapshot{ID: g.ID, ConsistencyGroupID: g.Group, Status: g.Status,
		CreatedAt: cinderapi.Time(g.Created), Name: cinderapi.Text(g.Name), Description: cinderapi.Text(g.Description)}
}

var groupSnapshotSortKeys = []string{"created_at", "id", "name", "status", "consistencygroup_id", "description"}

func (s *Surface) groupSnapshotRows(c *rpc.Call, a *cinderapi.ListArgs) []row {
	all := listsAll(c, a)
	var rows []row
	for _, g := range s.vols.GroupSnapshots() {
		if !all && g.Owner != a.TenantID {
			continue
		}
		v := groupSnapshotView(g)
		rows = append(rows, row{id: g.ID, summary: cinderapi.Summary{ID: g.ID, Name: v.Name}, detail: v,
			fields: map[string]string{"id": g.ID, "name": g.Name, "status": g.Status, "created_at": v.CreatedAt,
				"consistencygroup_id": g.Group, "description": g.Description, "project_id": g.Owner}})
	}
	return rows
}

// cgsnapshot lists page with offset and limit only (common.limited): no
// links.
func (s *Surface) groupSnapshotList(c *rpc.Call, a *cinderapi.ListArgs) (any, error) {
	return s.listOf(c, a, "cgsnapshots", "", groupSnapshotSortKeys, false, s.groupSnapshotRows)
}

func (s *Surface) groupSnapshotDetail(c *rpc.Call, a *cinderapi.ListArgs) (any, error) {
	return s.listOf(c, a, "cgsnapshots", "", groupSnapshotSortKeys, true, s.groupSnapshotRows)
}

func (s *Surface) groupSnapshotShow(c *rpc.Call, a *cinderapi.GroupSnapshotRef) (any, error) {
	g, err := s.groupSnapshot(c, a.TenantID, a.ID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"cgsnapshot": groupSnapshotView(g)}, nil
}

func (s *Surface) groupSnapshotCreate(c *rpc.Call, a *cinderapi.GroupSnapshotCreateArgs) (any, error) {
	if _, err := s.group(c, a.TenantID, a.ConsistencyGroupID); err != nil {
		return nil, err
	}
	g, err := s.vols.SnapshotGroup(volume.NewGroupSnapshot{Group: a.ConsistencyGroupID, Name: a.Name,
		Description: a.Description, Owner: a.TenantID, By: c.User,
		MemberSurfaces: func(src volume.Volume) map[string][]byte {
			return map[string][]byte{namespace: mustJSON(volumeAttrs{ProjectID: a.TenantID, UserID: c.User})}
		}})
	if err != nil {
		return nil, err
	}
	return map[string]any{"cgsnapshot": cinderapi.Summary{ID: g.ID, Name: cinderapi.Text(g.Name)}}, nil
}

func (s *Surface) groupSnapshotDelete(c *rpc.Call, a *cinderapi.GroupSnapshotRef) (any, error) {
	if _, err := s.groupSnapshot(c, a.TenantID, a.ID); err != nil {
		return nil, err
	}
	return nil, s.vols.DeleteGroupSnapshot(a.ID, c.User)
}
