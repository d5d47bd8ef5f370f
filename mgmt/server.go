package mgmt

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/metrics"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"golang.org/x/crypto/bcrypt"
)

// Options configure a Server. Store and DataDir are required.
type Options struct {
	Store   *blockstore.Store
	DataDir string // holds mgmt.json and, on first start, admin.password
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
	// its attachments to go before answering VDI_IN_USE (default 2 s,
	// negative: not at all). An NBD client's hang-up is not acknowledged,
	// so the VBD of a client that has just exited outlives it by a moment,
	// and the next call of a script should not trip over it.
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
	// ObserveCall hears of every answered REST request: the call's name
	// ("VDI.snapshot", "none" for unknown routes), status and duration.
	ObserveCall func(call string, status int, took time.Duration)
}

// Server serves the management API. Close it to stop its tasks.
type Server struct {
	opts  Options
	store *blockstore.Store
	log   *slog.Logger
	file  stateFile

	// mu guards st, tokens, vbds and ops, and serialises metadata changes
	// (they are quick: one durable store batch each). Long work (copy) runs
	// outside it.
	mu          sync.Mutex
	st          *state
	tokens      map[string]*tokenState       // by SHA-256 of the token
	logins      loginThrottle                // failed logins per user name
	vbds        map[string]map[string]*VBD   // VDI -> VBD uuid -> attachment
	ops         map[string]map[string]string // VDI -> task uuid -> operation
	copyTargets map[string]string            // VDI a copy writes into -> task
	tasks       *taskTable
	rates       *metrics.Rates // OVS *_ps history per vDisk and vPool
	dummy       []byte         // bcrypt hash compared against for unknown users

	copyHook atomic.Pointer[func(ctx context.Context)] // tests: runs before each chunk a copy moves
}

// New loads (or on first start creates) the API's state: the node, the
// default vPool "local" and the admin user. It then removes what tasks
// interrupted by a crash left behind.
func New(opts Options) (*Server, error) {
	if opts.Store == nil || opts.DataDir == "" {
		return nil, fmt.Errorf("mgmt: Store and DataDir are required")
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
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 24 * time.Hour
	}
	if opts.Counters == nil {
		opts.Counters = metrics.NewRegistry()
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = bcrypt.DefaultCost
	}
	if opts.DetachGrace == 0 {
		opts.DetachGrace = defaultDetachGrace
	}
	s := &Server{
		opts: opts, store: opts.Store, log: opts.Logger,
		file:        stateFile{path: filepath.Join(opts.DataDir, "mgmt.json")},
		tokens:      map[string]*tokenState{},
		vbds:        map[string]map[string]*VBD{},
		ops:         map[string]map[string]string{},
		copyTargets: map[string]string{},
		rates:       metrics.NewRates(opts.Now),
	}
	s.tasks = newTaskTable(s)
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a password of anyone"), opts.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("mgmt: %w", err)
	}
	s.dummy = dummy
	st, existed, err := s.file.load()
	if err != nil {
		return nil, err
	}
	s.st = st
	if err := s.bootstrap(existed); err != nil {
		return nil, err
	}
	now := s.opts.Now()
	for _, t := range st.Tokens {
		if now.Before(t.Expires) {
			s.tokens[t.Hash] = t
		}
	}
	s.cleanUpInterrupted()
	return s, nil
}

// bootstrap fills what a first start needs: node identity, default pool,
// admin user.
func (s *Server) bootstrap(existed bool) error {
	now := s.opts.Now().UTC()
	changed := false
	if s.st.Node.GUID == "" {
		s.st.Node = nodeState{GUID: uuid.NewString(), Created: now}
		changed = true
	}
	if s.st.defaultPool() == nil {
		s.st.Pools = append(s.st.Pools, &poolState{
			GUID: uuid.NewString(), Name: "local", Description: "LOCAL local",
			StorageDriver: uuid.NewString(), Default: true, Created: now,
		})
		changed = true
	}
	if len(s.st.Users) == 0 {
		pw, where := s.opts.AdminPassword, "VDISKD_ADMIN_PASSWORD"
		if pw == "" {
			pw = randomSecret(18)
			where = filepath.Join(s.opts.DataDir, "admin.password")
			if err := writeFileSync(where, []byte(pw+"\n"), 0o600); err != nil {
				return fmt.Errorf("mgmt: write the admin password: %w", err)
			}
		} else if e := api.CheckPassword(pw); e != nil {
			return fmt.Errorf("mgmt: VDISKD_ADMIN_PASSWORD: %s", e.Message)
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(pw), s.opts.BcryptCost)
		if err != nil {
			return fmt.Errorf("mgmt: hash the admin password: %w", err)
		}
		s.st.Users = append(s.st.Users, &userState{Username: "admin", Hash: string(hash), Role: api.PoolAdmin, Created: now})
		s.log.Info("created user admin (pool-admin)", "password_from", where)
		changed = true
	} else if s.opts.AdminPassword != "" && existed {
		s.log.Info("users exist already; VDISKD_ADMIN_PASSWORD only applies on first start")
	}
	if changed {
		return s.file.save(s.st)
	}
	return nil
}

// saveLocked persists the state. REQUIRES: s.mu held.
func (s *Server) saveLocked() error {
	if err := s.file.save(s.st); err != nil {
		s.log.Error("saving API state failed", "err", err)
		return api.Errorf(http.StatusInternalServerError, api.CodeInternal, nil, "saving state: %v", err)
	}
	return nil
}

// Close cancels running tasks and waits for them to clean up.
func (s *Server) Close() error {
	s.tasks.closeAll()
	return nil
}

// NodeGUID is this daemon's StorageRouter guid.
func (s *Server) NodeGUID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Node.GUID
}

func randomSecret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
