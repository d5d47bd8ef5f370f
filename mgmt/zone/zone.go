// Package zone is the registry of peer zones: the other vdiskd daemons this
// one replicates to and recovers from (issue 18; seed 001 calls them
// zones). A peer is a name, the URL of its API, the credentials of a user
// there and the CA to trust when it speaks TLS. What the peer says of
// itself (its zone, its node, its NBD address) and whether it answers are
// learnt by a Probe the composition root supplies, so this service speaks
// no HTTP itself.
//
// Credentials: the password is kept apart from the records, one file per
// peer in the secrets directory (mode 0600, in a 0700 directory); it is
// never logged and never part of a record callers read.
package zone

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kv"
)

// Peer is a registered zone, as stored (without its password).
type Peer struct {
	Name     string    `json:"name"`
	URL      string    `json:"url"`
	Username string    `json:"username"`
	CAPEM    string    `json:"ca_pem,omitempty"`
	Created  time.Time `json:"created"`
}

// Facts are what a peer says of itself.
type Facts struct {
	Zone     string   // its --zone
	Node     string   // its node name
	NodeGUID string   // its StorageRouter guid
	NBD      []string // host:port of its NBD listener(s)
	NBDTLS   bool     // its NBD speaks TLS
}

// State is a peer with what the last probe learnt.
type State struct {
	Peer
	Reachable bool
	CheckedAt time.Time // zero: never probed
	Error     string    // the last probe's failure
	Facts     *Facts    // nil until a probe succeeded
}

// Probe asks a peer for its facts, with the peer's password.
type Probe func(ctx context.Context, p Peer, password string) (Facts, error)

// Options configure a Service. DB, SecretsDir and Probe are required.
type Options struct {
	DB         *kv.DB
	SecretsDir string // one 0600 file per peer's password
	Probe      Probe
	Self       string // this daemon's zone: no peer may bear its name
	Logger     *slog.Logger
	Now        func() time.Time
	// ProbeTimeout bounds one probe (default 5 s).
	ProbeTimeout time.Duration
}

// Service is the zone registry.
type Service struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex // guards states; never held across a probe or I/O
	states map[string]*State
	// changing serialises creates and deletes (each writes a secret file
	// and a record), held across their I/O.
	changing sync.Mutex
	inUse    func(name string) *fault.Error // set by GuardDelete
}

// GuardDelete makes Delete refuse a zone for which inUse answers an error
// (a replication relation needs it).
func (s *Service) GuardDelete(inUse func(name string) *fault.Error) { s.inUse = inUse }

const keyPrefix = "zone/"

// New loads the registry.
func New(opts Options) (*Service, error) {
	if opts.DB == nil || opts.SecretsDir == "" || opts.Probe == nil {
		return nil, errors.New("zone: DB, SecretsDir and Probe are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = 5 * time.Second
	}
	s := &Service{opts: opts, log: opts.Logger, states: map[string]*State{}}
	err := kv.ScanJSON(opts.DB, keyPrefix, func(_ string, p *Peer) error {
		s.states[p.Name] = &State{Peer: *p}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("zone: loading peers: %w", err)
	}
	return s, nil
}

// NewPeer is a zone to register.
type NewPeer struct {
	Name, URL, Username, Password, CAPEM string
	By                                   string // who asked, for the log
}

// nameRE is a zone name, as vdiskd's --zone takes them (and a safe file
// name).
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// check validates a new peer on its own.
func (n NewPeer) check() *fault.Error {
	if !nameRE.MatchString(n.Name) {
		return fault.InvalidValue("name", n.Name, "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	u, err := url.Parse(n.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" && strings.Trim(u.Path, "/") != "api" {
		return fault.InvalidValue("url", n.URL, "must be http://host:port or https://host:port (the peer's API, as its log says)")
	}
	if n.Username == "" || n.Password == "" {
		return fault.InvalidValue("username", n.Username, "a user of the peer and its password are required")
	}
	if n.CAPEM != "" {
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(n.CAPEM)) {
			return fault.InvalidValue("ca_pem", "", "holds no PEM certificate")
		}
		if u.Scheme != "https" {
			return fault.InvalidValue("ca_pem", "", "a CA is for an https URL")
		}
	}
	return nil
}

// BaseURL is the peer's URL without a trailing /api.
func (p Peer) BaseURL() string {
	return strings.TrimSuffix(strings.TrimRight(p.URL, "/"), "/api")
}

// Create registers a peer. The peer is probed first: if it answers, it
// must call itself by the name given (a mistyped URL must not pass for
// another zone); if it does not answer, it is registered unreachable,
// since a peer may be down when it is added.
func (s *Service) Create(n NewPeer) (State, error) {
	if err := n.check(); err != nil {
		return State{}, err
	}
	if n.Name == s.opts.Self {
		return State{}, fault.InvalidValue("name", n.Name, "is this daemon's own zone")
	}
	s.changing.Lock()
	defer s.changing.Unlock()
	if _, ok := s.Get(n.Name); ok == nil {
		return State{}, fault.Conflicts(fault.CodeNameTaken, []string{"zone", n.Name}, "zone %s is registered already", n.Name)
	}
	p := Peer{Name: n.Name, URL: strings.TrimRight(n.URL, "/"), Username: n.Username, CAPEM: n.CAPEM,
		Created: s.opts.Now().UTC()}
	st, err := s.probe(p, n.Password)
	if f, ok := fault.As(err); ok && (f.Kind == fault.Unauthenticated || f.Kind == fault.Forbidden) {
		return State{}, fault.InvalidValue("username", n.Username, "the daemon at %s refused these credentials: %s", p.URL, f.Message)
	}
	if st.Facts != nil && st.Facts.Zone != p.Name {
		return State{}, fault.InvalidValue("name", n.Name, "the daemon at %s is zone %q", p.URL, st.Facts.Zone)
	}
	if err := s.writeSecret(p.Name, n.Password); err != nil {
		return State{}, fault.Internalf(nil, "zone %s: storing its credentials: %v", p.Name, err)
	}
	if err := s.opts.DB.Put(keyPrefix+p.Name, p); err != nil {
		_ = os.Remove(s.secretPath(p.Name))
		return State{}, fault.Internalf(nil, "zone %s: %v", p.Name, err)
	}
	s.mu.Lock()
	s.states[p.Name] = &st
	s.mu.Unlock()
	s.log.Info("zone registered", "zone", p.Name, "url", p.URL, "user", p.Username, "reachable", st.Reachable, "by", n.By)
	return st, nil
}

// Get reads one peer's state.
func (s *Service) Get(name string) (State, *fault.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.states[name]
	if st == nil {
		return State{}, fault.Missing("zone", name)
	}
	return *st, nil
}

// List reads every peer's state, by name.
func (s *Service) List() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]State, 0, len(s.states))
	for _, st := range s.states {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b State) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Delete forgets a peer and its credentials.
func (s *Service) Delete(name, by string) error {
	s.changing.Lock()
	defer s.changing.Unlock()
	if _, err := s.Get(name); err != nil {
		return err
	}
	if s.inUse != nil {
		if err := s.inUse(name); err != nil {
			return err
		}
	}
	if err := s.opts.DB.Delete(keyPrefix + name); err != nil {
		return fault.Internalf(nil, "zone %s: %v", name, err)
	}
	if err := os.Remove(s.secretPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("removing a deleted zone's credentials failed", "zone", name, "err", err)
	}
	s.mu.Lock()
	delete(s.states, name)
	s.mu.Unlock()
	s.log.Info("zone deleted", "zone", name, "by", by)
	return nil
}

// Credentials are what this daemon logs in to a peer with.
func (s *Service) Credentials(name string) (Peer, string, error) {
	st, ferr := s.Get(name)
	if ferr != nil {
		return Peer{}, "", ferr
	}
	pw, err := os.ReadFile(s.secretPath(name))
	if err != nil {
		return Peer{}, "", fault.Internalf(nil, "zone %s: reading its credentials: %v", name, err)
	}
	return st.Peer, string(pw), nil
}

// ProbeAll asks every peer for its facts now, one after another, and
// records what it learnt.
func (s *Service) ProbeAll() {
	for _, st := range s.List() {
		p, pw, err := s.Credentials(st.Name)
		if err != nil {
			s.record(st.Name, State{Peer: st.Peer, CheckedAt: s.opts.Now().UTC(), Error: err.Error()})
			continue
		}
		st, _ := s.probe(p, pw) // a failure is in the state
		s.record(p.Name, st)
	}
}

// Watch probes every peer each interval until ctx ends.
func (s *Service) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.ProbeAll()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// record keeps a probe's result, unless the peer went meanwhile.
func (s *Service) record(name string, st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.states[name]; old != nil && old.Created.Equal(st.Created) {
		if st.Facts == nil && old.Facts != nil {
			st.Facts = old.Facts // what it said last stays known while it is away
		}
		s.states[name] = &st
	}
}

// probe asks p for its facts: the state it learnt, and why it failed.
func (s *Service) probe(p Peer, password string) (State, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ProbeTimeout)
	defer cancel()
	st := State{Peer: p, CheckedAt: s.opts.Now().UTC()}
	f, err := s.opts.Probe(ctx, p, password)
	if err != nil {
		st.Error = err.Error()
		return st, err
	}
	st.Reachable, st.Facts = true, &f
	return st, nil
}

func (s *Service) secretPath(name string) string {
	return filepath.Join(s.opts.SecretsDir, name+".password")
}

// writeSecret stores a password, mode 0600, replacing it whole.
func (s *Service) writeSecret(name, password string) error {
	if err := os.MkdirAll(s.opts.SecretsDir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.opts.SecretsDir, name+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(password); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.secretPath(name))
}
