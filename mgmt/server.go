package mgmt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/metrics"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/cinder"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kv"
	"github.com/vdiskd/vdiskd/mgmt/kvol"
	"github.com/vdiskd/vdiskd/mgmt/peer"
	"github.com/vdiskd/vdiskd/mgmt/replication"
	"github.com/vdiskd/vdiskd/mgmt/stats"
	"github.com/vdiskd/vdiskd/mgmt/task"
	"github.com/vdiskd/vdiskd/mgmt/volume"
	"github.com/vdiskd/vdiskd/mgmt/vstats"
	"github.com/vdiskd/vdiskd/mgmt/xenapi"
	"github.com/vdiskd/vdiskd/mgmt/xenrest"
	"github.com/vdiskd/vdiskd/mgmt/zone"
	"golang.org/x/crypto/bcrypt"
)

// Options configure a Server. Store and DataDir are required.
type Options struct {
	Store   *blockstore.Store
	DataDir string // holds mgmt.db and, on first start, admin.password
	Logger  *slog.Logger
	Now     func() time.Time

	// AdminPassword is the first start's admin password
	// (VDISKD_ADMIN_PASSWORD). Empty: a random one is written to
	// <DataDir>/admin.password, mode 0600.
	AdminPassword string
	Zone          string // this daemon's zone (default "local")
	NodeName      string // this daemon's name (default the host name)
	Address       string // the address clients reach this daemon at
	TokenTTL      time.Duration
	BcryptCost    int // default bcrypt.DefaultCost; tests lower it
	// DetachGrace is how long a call that needs a VDI detached waits for
	// its attachments to go (volume.Options.DetachGrace).
	DetachGrace time.Duration

	// NBDInfo answers get_nbd_info for an export name, one record per
	// address the NBD server listens on; nil while no NBD server runs (the
	// answer is then an empty list, as XenServer's when no network has
	// an NBD purpose). NBDAuth says which export names work.
	NBDInfo func(exportName string) []api.NBDInfo
	NBDAuth NBDAuth
	// Counters are the vDisks' I/O counters (shared with the Prometheus
	// exposition); nil means a private registry.
	Counters *metrics.Registry
	// CinderNoAuth accepts Cinder's noauth tokens on the Cinder surface.
	CinderNoAuth bool
	// ZoneProbeInterval is how often every peer zone is asked whether it
	// answers (default 30 s; negative: only when registered).
	ZoneProbeInterval time.Duration
	// ReplicationTick is how often the replicator looks for relations due
	// a round (default 1 s; negative: never, tests run rounds themselves).
	ReplicationTick time.Duration
	// EventRescan is how often XenAPI's events reread every record
	// (0: xenapi.DefaultEventRescan).
	EventRescan time.Duration
	// StatsTick is how often the statistics sampler looks for specs due
	// a sample (default 1 s; negative: never, tests tick it themselves).
	StatsTick time.Duration
	// StatsRetention is how long sampled data points are kept (default
	// 24 h); StatsTombstones how long deleted specs are remembered for
	// cache syncs (default 7 days).
	StatsRetention, StatsTombstones time.Duration
	// NodeCounters answers the daemon's own counters for vStats (its NBD
	// latency quantiles since the previous call); nil: zeros.
	NodeCounters func() map[string]float64
	// ObserveCall hears of every answered REST request: the call's name
	// ("VDI.snapshot", "none" for unknown routes), status and duration.
	ObserveCall func(call string, status int, took time.Duration)
}

// Server is the management plane of one daemon: the services (volumes,
// users and tokens, tasks) and the API surfaces over them. Close it to
// stop its tasks.
type Server struct {
	opts  Options
	store *blockstore.Store
	log   *slog.Logger
	db    *kv.DB
	node  node

	auth         *auth.Service
	vols         *volume.Service
	tasks        *task.Table
	zones        *zone.Service
	replications *replication.Registry
	replicator   *replication.Replicator
	rest         *xenrest.Surface
	cinder       *cinder.Surface
	kvol         *kvol.Service
	stats        *stats.Service
	vstats       *vstats.Surface
	xenapi       *xenapi.Surface

	stopWatching context.CancelFunc // the zone prober and the replicator
	replicating  chan struct{}      // closed when the replicator stopped
	sampling     chan struct{}      // closed when the statistics sampler stopped
}

// node is this daemon's identity: its StorageRouter.
type node struct {
	GUID    string    `json:"guid"`
	Created time.Time `json:"created"`
}

// New opens the management database (importing a mgmt.json an earlier
// version left), then starts the services.
func New(opts Options) (*Server, error) {
	if opts.Store == nil || opts.DataDir == "" {
		return nil, errors.New("mgmt: Store and DataDir are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Zone == "" {
		opts.Zone = "local"
	}
	if opts.NodeName == "" {
		opts.NodeName, _ = os.Hostname()
	}
	if opts.Counters == nil {
		opts.Counters = metrics.NewRegistry()
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = bcrypt.DefaultCost
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 24 * time.Hour
	}
	db, err := kv.Open(filepath.Join(opts.DataDir, "mgmt.db"), nil)
	if err != nil {
		return nil, fmt.Errorf("mgmt: %w", err)
	}
	s := &Server{opts: opts, store: opts.Store, log: opts.Logger, db: db}
	if err := s.open(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) open() error {
	opts := s.opts
	if err := importLegacyState(s.db, opts.DataDir, s.log); err != nil {
		return err
	}
	ok, err := s.db.Get("node", &s.node)
	if err != nil {
		return err
	}
	if !ok {
		s.node = node{GUID: uuid.NewString(), Created: opts.Now().UTC()}
		if err := s.db.Put("node", s.node); err != nil {
			return fmt.Errorf("mgmt: saving the node's identity: %w", err)
		}
	}
	s.auth, err = auth.New(auth.Options{DB: s.db, Logger: s.log, Now: opts.Now, AdminPassword: opts.AdminPassword,
		DataDir: opts.DataDir, TokenTTL: opts.TokenTTL, BcryptCost: opts.BcryptCost, NBDRole: nbdRole})
	if err != nil {
		return err
	}
	s.vols, err = volume.New(volume.Options{Store: s.store, DB: s.db, Logger: s.log, Now: opts.Now,
		DetachGrace: opts.DetachGrace, Destroyed: s.forgetCounters})
	if err != nil {
		return err
	}
	s.zones, err = zone.New(zone.Options{DB: s.db, SecretsDir: filepath.Join(opts.DataDir, "zones"), Self: opts.Zone,
		Logger: s.log, Now: opts.Now, Probe: probePeer})
	if err != nil {
		return err
	}
	s.replications, err = replication.New(replication.Options{DB: s.db, Logger: s.log, Now: opts.Now,
		Pool: func(ref string) (string, error) {
			p, err := s.vols.Pool(ref, "vPool")
			if err != nil {
				return "", err
			}
			return p.GUID, nil
		},
		Zone: func(name string) error {
			if _, err := s.zones.Get(name); err != nil {
				return err
			}
			return nil
		}})
	if err != nil {
		return err
	}
	s.zones.GuardDelete(func(name string) *fault.Error {
		if seq, ok := s.replications.UsingZone(name); ok {
			return fault.Conflicts(fault.CodeOperationNotAllowed, []string{fmt.Sprintf("replication %d uses zone %s", seq, name)},
				"replication %d replicates to zone %s; delete it first", seq, name)
		}
		return nil
	})
	s.vols.GuardPoolDelete(func(guid string) *fault.Error {
		if seq, ok := s.replications.UsingPool(guid); ok {
			return fault.Conflicts(fault.CodeOperationNotAllowed, []string{fmt.Sprintf("replication %d replicates the vPool", seq)},
				"replication %d replicates this vPool; delete it first", seq)
		}
		return nil
	})
	s.replicator = replication.NewReplicator(replication.ReplicatorOptions{Registry: s.replications, DB: s.db,
		Logger: s.log, Now: opts.Now, Members: s.poolVDIs, Zone: opts.Zone,
		PoolName: func(guid string) string {
			p, _ := s.vols.Pool(guid, "vPool")
			return p.Name
		},
		Ends: func(rel replication.Relation) (replication.Source, replication.Target, error) {
			dst, err := s.newPeerTarget(rel.DstZone, rel.DstVPool)
			if err != nil {
				return nil, nil, err
			}
			return localSource{s.vols}, dst, nil
		}})
	s.tasks = task.New(task.Options{Now: opts.Now, Logger: s.log, ResidentOn: s.node.GUID,
		Failed: func(err error, object, name string) *fault.Error { return volume.StoreError(err, object, name) }})
	s.rest = xenrest.New(xenrest.Options{Volumes: s.vols, Tasks: s.tasks, Auth: s.auth, Store: s.store,
		Logger: s.log, Now: opts.Now, DataDir: opts.DataDir, NodeGUID: s.node.GUID, NodeName: opts.NodeName,
		Zone: opts.Zone, Address: opts.Address, NBDInfo: opts.NBDInfo, TokenExports: opts.NBDAuth == NBDAuthToken,
		Sample: s.sampleOf, Zones: s.zones, Replications: s.replications, Replicator: s.replicator, PeerState: s.peerState})
	s.kvol, err = kvol.New(kvol.Options{Volumes: s.vols, Auth: s.auth, DB: s.db, Zone: opts.Zone, Zones: s.kvolZones,
		Logger: s.log.With("surface", "kvol"), Now: opts.Now})
	if err != nil {
		return err
	}
	s.stats, err = stats.New(stats.Options{DB: s.db, Logger: s.log.With("service", "stats"), Now: opts.Now,
		Resources: s.statsResources, Read: s.statsRead, Metrics: statsMetrics(),
		Retention: opts.StatsRetention, TombstoneRetention: opts.StatsTombstones})
	if err != nil {
		return err
	}
	s.vstats = vstats.New(vstats.Options{Stats: s.stats, Auth: s.auth, NodeGUID: s.node.GUID, NodeName: opts.NodeName,
		Zone: opts.Zone})
	s.xenapi = xenapi.New(xenapi.Options{Auth: s.auth, Volumes: s.vols, Tasks: s.tasks, Logger: s.log.With("surface", "xenapi"),
		NodeGUID: s.node.GUID, NodeName: opts.NodeName, Zone: opts.Zone, Address: opts.Address,
		NBDInfo: opts.NBDInfo, TokenExports: opts.NBDAuth == NBDAuthToken, EventRescan: opts.EventRescan})
	s.cinder = cinder.New(cinder.Options{Volumes: s.vols, Auth: s.auth, Logger: s.log.With("surface", "cinder"),
		Zone: opts.Zone, NoAuth: opts.CinderNoAuth})
	ctx, cancel := context.WithCancel(context.Background())
	s.stopWatching = cancel
	if interval := opts.ZoneProbeInterval; interval >= 0 {
		if interval == 0 {
			interval = 30 * time.Second
		}
		go s.zones.Watch(ctx, interval)
	}
	s.replicating = make(chan struct{})
	if tick := opts.ReplicationTick; tick >= 0 {
		if tick == 0 {
			tick = time.Second
		}
		go func() {
			defer close(s.replicating)
			s.replicator.Run(ctx, tick)
		}()
	} else {
		close(s.replicating)
	}
	s.sampling = make(chan struct{})
	if tick := opts.StatsTick; tick >= 0 {
		if tick == 0 {
			tick = time.Second
		}
		go func() {
			defer close(s.sampling)
			s.stats.Run(ctx, tick)
		}()
	} else {
		close(s.sampling)
	}
	return nil
}

// Close cancels running tasks, waits for them to clean up, and closes the
// management database.
func (s *Server) Close() error {
	s.stopWatching()
	<-s.replicating
	<-s.sampling
	s.kvol.Close()
	s.tasks.Close()
	return s.db.Close()
}

// NodeGUID is this daemon's StorageRouter guid.
func (s *Server) NodeGUID() string { return s.node.GUID }

// probePeer asks a peer zone who it is, through its REST API.
func probePeer(ctx context.Context, p zone.Peer, password string) (zone.Facts, error) {
	c, err := peer.New(p.BaseURL(), p.Username, password, p.CAPEM)
	if err != nil {
		return zone.Facts{}, err
	}
	n, err := c.Node(ctx)
	if err != nil {
		return zone.Facts{}, err
	}
	f := zone.Facts{Zone: n.Zone, Node: n.Name, NodeGUID: n.GUID}
	for _, i := range n.NBD {
		f.NBD = append(f.NBD, net.JoinHostPort(i.Address, strconv.Itoa(i.Port)))
		f.NBDTLS = f.NBDTLS || i.Cert != ""
	}
	return f, nil
}

// poolVDIs are the live VDIs of a vPool, with their names: what a
// replication relation replicates.
func (s *Server) poolVDIs(pool string) map[string]string {
	out := map[string]string{}
	s.vols.Each(func(v *volume.Volume) {
		if v.Info.Pool == pool && !v.Info.IsSnapshot() {
			out[v.Info.ID] = v.Attrs.Xen.NameLabel
		}
	})
	return out
}

// peerState is whether a zone answered its last probe.
func (s *Server) peerState(name string) (bool, string) {
	z, err := s.zones.Get(name)
	if err != nil {
		return false, "not registered"
	}
	return z.Reachable, z.Error
}
