package mgmt

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/kvol"
	"github.com/vdiskd/vdiskd/mgmt/zone"
	"github.com/vdiskd/vdiskd/nbd/client"
)

// The zones kvol asks: this one over the services here, each peer over
// its REST API and NBD exports.

// kvolZones lists this zone first, then every registered peer.
func (s *Server) kvolZones() []kvol.Zone {
	zs := []kvol.Zone{localZone{s}}
	for _, st := range s.zones.List() {
		zs = append(zs, &peerZone{s: s, st: st})
	}
	return zs
}

// localZone is this daemon.
type localZone struct{ s *Server }

func (l localZone) Name() string                           { return l.s.opts.Zone }
func (l localZone) Local() bool                            { return true }
func (l localZone) Reachable() bool                        { return true }
func (l localZone) Node(context.Context) (api.Node, error) { return l.s.rest.Node(), nil }
func (l localZone) Relations(context.Context) ([]api.Replication, error) {
	return l.s.rest.Relations(), nil
}

func (l localZone) Replicas(_ context.Context, q api.ReplicaListArgs) ([]api.Replica, error) {
	return l.s.rest.Replicas(q), nil
}

func (l localZone) Open(_ context.Context, snap string) (kvol.Source, error) {
	vbd, err := l.s.vols.Attach(snap, "kvol", false)
	if err != nil {
		return nil, err
	}
	return localSnapshot{vbdReader{vbd}, l.s, snap}, nil
}

// localSnapshot reads a snapshot here; its allocation is known.
type localSnapshot struct {
	vbdReader
	s    *Server
	snap string
}

func (l localSnapshot) Size() uint64 { return l.Disk.Size() }

func (l localSnapshot) Allocated() (*roaring.Bitmap, error) {
	bm, _, err := l.s.vols.AllocatedBlocks(l.snap)
	return bm, err
}

func (l localSnapshot) ReadAt(_ context.Context, p []byte, off uint64) error {
	_, err := l.vbdReader.ReadAt(p, int64(off))
	return err
}

// peerZone is a registered peer, as its last probe left it.
type peerZone struct {
	s    *Server
	st   zone.State
	link *peerLink
}

func (p *peerZone) Name() string    { return p.st.Name }
func (p *peerZone) Local() bool     { return false }
func (p *peerZone) Reachable() bool { return p.st.Reachable }

func (p *peerZone) connect() (*peerLink, error) {
	if p.link == nil {
		l, err := p.s.linkTo(p.st.Name)
		if err != nil {
			return nil, err
		}
		p.link = &l
	}
	return p.link, nil
}

// Node asks the peer; one that does not answer is what it said at its
// last probe.
func (p *peerZone) Node(ctx context.Context) (api.Node, error) {
	if p.st.Reachable {
		if l, err := p.connect(); err == nil {
			if n, err := l.c.Node(ctx); err == nil {
				return n, nil
			}
		}
	}
	n := api.Node{Zone: p.st.Name, Address: p.st.URL}
	if f := p.st.Facts; f != nil {
		n.Name = f.Node
		for _, hp := range f.NBD {
			host, port, err := net.SplitHostPort(hp)
			if err != nil {
				continue
			}
			i := api.NBDInfo{Address: host}
			i.Port, _ = strconv.Atoi(port)
			if f.NBDTLS {
				i.Cert = "(the peer's)" // only whether it speaks TLS is known
			}
			n.NBD = append(n.NBD, i)
		}
	}
	return n, nil
}

func (p *peerZone) Relations(ctx context.Context) ([]api.Replication, error) {
	l, err := p.connect()
	if err != nil {
		return nil, err
	}
	var out api.List[api.Replication]
	err = l.c.Call(ctx, http.MethodGet, "/api/replications", nil, &out)
	return out.Data, err
}

func (p *peerZone) Replicas(ctx context.Context, q api.ReplicaListArgs) ([]api.Replica, error) {
	l, err := p.connect()
	if err != nil {
		return nil, err
	}
	v := url.Values{}
	for k, s := range map[string]string{"origin_zone": q.OriginZone, "origin_vpool": q.OriginVPool,
		"origin_vdi": q.OriginVDI, "origin_snapshot": q.OriginSnapshot} {
		if s != "" {
			v.Set(k, s)
		}
	}
	var out api.List[api.Replica]
	err = l.c.Call(ctx, http.MethodGet, "/api/replicas?"+v.Encode(), nil, &out)
	return out.Data, err
}

func (p *peerZone) Open(ctx context.Context, snap string) (kvol.Source, error) {
	l, err := p.connect()
	if err != nil {
		return nil, err
	}
	c, err := l.dial(ctx, snap)
	if err != nil {
		return nil, err
	}
	return peerSnapshot{c}, nil
}

// peerSnapshot reads a peer's snapshot over NBD; its allocation is not
// asked (every block is read, zero ones are not written).
type peerSnapshot struct{ *client.Client }

func (peerSnapshot) Allocated() (*roaring.Bitmap, error) { return nil, nil }
