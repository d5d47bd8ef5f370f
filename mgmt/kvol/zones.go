package kvol

import (
	"context"
	"net"
	"net/url"
	"strconv"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// Zone is a daemon kvol can ask: this one, or a registered peer. The
// composition root implements it (over the services here, over a peer's
// REST API and NBD exports there), so this package holds only kvol's
// rules.
type Zone interface {
	Name() string
	// Local is true for this daemon's own zone.
	Local() bool
	// Reachable is false for a peer whose last probe failed: kvol does
	// not wait on it.
	Reachable() bool
	// Node is who the zone's daemon is: for a peer that does not answer,
	// what it said at its last probe.
	Node(ctx context.Context) (api.Node, error)
	// Relations are the zone's replication relations, with their status.
	Relations(ctx context.Context) ([]api.Replication, error)
	// Replicas are the replica snapshots the zone holds that pass q.
	Replicas(ctx context.Context, q api.ReplicaListArgs) ([]api.Replica, error)
	// Open reads one of the zone's snapshots.
	Open(ctx context.Context, snapshot string) (Source, error)
}

// Source reads a snapshot to copy.
type Source interface {
	Size() uint64
	// Allocated lists the 64 KiB blocks holding data, or nil when the
	// zone cannot say (then every block is read, and zero ones skipped).
	Allocated() (*roaring.Bitmap, error)
	ReadAt(ctx context.Context, p []byte, off uint64) error
	Close() error
}

// nodeFacts are what rows show of a zone's daemon.
type nodeFacts struct {
	name, apiHost, nbdHost, nbdPath string
}

// factsOf reads a node's name and addresses.
func factsOf(n api.Node) nodeFacts {
	f := nodeFacts{name: n.Name}
	// The API address is a URL or host:port.
	if u, err := url.Parse(n.Address); err == nil && u.Host != "" {
		f.apiHost = u.Hostname()
	} else if host, _, err := net.SplitHostPort(n.Address); err == nil {
		f.apiHost = host
	}
	if len(n.NBD) > 0 {
		i := n.NBD[0]
		f.nbdHost = i.Address
		scheme := "nbd"
		if i.Cert != "" {
			scheme = "nbds"
		}
		// A VDI's export is this path followed by its uuid.
		f.nbdPath = scheme + "://" + net.JoinHostPort(i.Address, strconv.Itoa(i.Port)) + "/"
	}
	return f
}

// asked is one call's view of the zones: each asked at most once per
// question.
type asked struct {
	s     *Service
	ctx   context.Context
	zones []Zone
	nodes map[string]nodeFacts
}

func (s *Service) ask(ctx context.Context) *asked {
	return &asked{s: s, ctx: ctx, zones: s.opts.Zones(), nodes: map[string]nodeFacts{}}
}

// zone finds a zone by name (nil: neither this one nor a peer).
func (a *asked) zone(name string) Zone {
	for _, z := range a.zones {
		if z.Name() == name {
			return z
		}
	}
	return nil
}

// node is what is known of zone name's daemon ("" fields when nothing).
func (a *asked) node(name string) nodeFacts {
	if f, ok := a.nodes[name]; ok {
		return f
	}
	var f nodeFacts
	if z := a.zone(name); z != nil {
		ctx, cancel := context.WithTimeout(a.ctx, askTimeout)
		n, err := z.Node(ctx)
		cancel()
		if err == nil {
			f = factsOf(n)
		}
	}
	a.nodes[name] = f
	return f
}

// replicas are the replica snapshots passing q in every zone that answers
// but skip (the origin, which kvol never needs); this zone's first.
func (a *asked) replicas(q api.ReplicaListArgs, skip string) ([]held, error) {
	var out []held
	var firstErr error
	for _, z := range a.zones {
		if z.Name() == skip || !z.Reachable() {
			continue
		}
		ctx, cancel := context.WithTimeout(a.ctx, askTimeout)
		rs, err := z.Replicas(ctx, q)
		cancel()
		if err != nil {
			a.s.log.Warn("kvol: a zone did not answer for its replicas", "zone", z.Name(), "err", err)
			if firstErr == nil && z.Local() {
				firstErr = err
			}
			continue
		}
		for _, r := range rs {
			out = append(out, held{zone: z, Replica: r})
		}
	}
	return out, firstErr
}

// held is a replica snapshot and the zone holding it.
type held struct {
	zone Zone
	api.Replica
}
