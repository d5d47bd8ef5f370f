// Package kvol is vdiskd's kvol surface (seed 001): cross-zone disaster
// recovery over the replicas relations ship (package replication). list
// and show say which backup zones replicate a (zone, vPool); create makes
// a volume in this zone from the replica of a snapshot of another zone,
// recovery from the newest replica of a volume of a failed zone, without
// asking that zone. Both queue a job whose row persists.
//
// Any daemon answers list and show, for any zone: the origin answers for
// its relations, or when it does not, the zones that answer say which
// replicas of it they hold. create and recovery make the volume in the
// daemon asked (dst-zone must be its zone), where the job row then lives.
package kvol

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/kv"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// Options are what the service works with.
type Options struct {
	Volumes *volume.Service
	Auth    *auth.Service
	DB      *kv.DB
	Zone    string // this daemon's zone
	// Zones lists the zones kvol may ask: this one first, then every
	// registered peer.
	Zones  func() []Zone
	Logger *slog.Logger
	Now    func() time.Time
	// Workers bounds the jobs running at once (default 2); Conns the
	// reads in flight per copy (default 4).
	Workers, Conns int
}

// askTimeout bounds one question to one zone: a zone that does not
// answer in time is taken as down.
const askTimeout = 10 * time.Second

// Service is the kvol surface and its jobs.
type Service struct {
	opts Options
	log  *slog.Logger
	vols *volume.Service

	mu   sync.Mutex // guards next across a job's first commit
	next int64

	ctx    context.Context // ends at Close: running jobs stop, to run again at the next start
	cancel context.CancelFunc
	wg     sync.WaitGroup
	slots  chan struct{}
}

// New loads the job rows and starts the jobs a stop left unfinished.
func New(opts Options) (*Service, error) {
	if opts.Volumes == nil || opts.Auth == nil || opts.DB == nil || opts.Zones == nil {
		return nil, errors.New("kvol: Volumes, Auth, DB and Zones are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.Conns <= 0 {
		opts.Conns = 4
	}
	s := &Service{opts: opts, log: opts.Logger, vols: opts.Volumes, next: 1, slots: make(chan struct{}, opts.Workers)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if _, err := opts.DB.Get(keyNextJob, &s.next); err != nil {
		return nil, fmt.Errorf("kvol: %w", err)
	}
	if err := s.resume(); err != nil {
		return nil, err
	}
	return s, nil
}

// Close stops the running jobs (they stay RUNNING, and run again at the
// next start) and waits for them.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}
