package xenrest

import (
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/zone"
)

func (s *Surface) nodeGet(c *rpc.Call, _ *api.NoArgs) (any, error) { return s.Node(), nil }

// Node is this daemon as GET /api/node answers it.
func (s *Surface) Node() api.Node {
	n := api.Node{GUID: s.opts.NodeGUID, Name: s.opts.NodeName, Zone: s.opts.Zone, Address: s.opts.Address,
		NBD: []api.NBDInfo{}}
	if s.opts.NBDInfo != nil {
		n.NBD = append(n.NBD, s.opts.NBDInfo("")...)
	}
	return n
}

// zoneRecord is a peer as callers see it: never its password.
func zoneRecord(st zone.State) api.Zone {
	z := api.Zone{Name: st.Name, URL: st.URL, Username: st.Username, CAPEM: st.CAPEM,
		Created: st.Created.UTC().Format(time.RFC3339), Reachable: st.Reachable, LastError: st.Error}
	if !st.CheckedAt.IsZero() {
		z.CheckedAt = st.CheckedAt.UTC().Format(time.RFC3339)
	}
	if f := st.Facts; f != nil {
		z.PeerNode, z.PeerGUID, z.NBD, z.NBDTLS = f.Node, f.NodeGUID, f.NBD, f.NBDTLS
	}
	return z
}

func (s *Surface) zoneList(c *rpc.Call, a *api.ZoneListArgs) (any, error) {
	var out []api.Zone
	for _, st := range s.opts.Zones.List() {
		out = append(out, zoneRecord(st))
	}
	return page(orSlice(out), a.PageArgs, "name")
}

func (s *Surface) zoneGet(c *rpc.Call, a *api.ZoneRef) (any, error) {
	st, err := s.opts.Zones.Get(a.Name)
	if err != nil {
		return nil, err
	}
	return zoneRecord(st), nil
}

func (s *Surface) zoneCreate(c *rpc.Call, a *api.ZoneCreateArgs) (any, error) {
	st, err := s.opts.Zones.Create(zone.NewPeer{Name: a.Name, URL: a.URL, Username: a.Username, Password: a.Password,
		CAPEM: a.CAPEM, By: c.User})
	if err != nil {
		return nil, err
	}
	return rpc.Created{Location: "/api/zones/" + st.Name, Body: zoneRecord(st)}, nil
}

func (s *Surface) zoneDelete(c *rpc.Call, a *api.ZoneRef) (any, error) {
	return nil, s.opts.Zones.Delete(a.Name, c.User)
}
