package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Options configure a Server. Zero values mean the defaults noted.
type Options struct {
	Exports Exports
	// TLS, when set, makes the server FORCEDTLS: every option but STARTTLS
	// and ABORT is refused with ERR_TLS_REQD until STARTTLS succeeds.
	// Without it STARTTLS gets ERR_POLICY.
	TLS    *tls.Config
	Logger *slog.Logger // default: discard
	// Observer hears of connections and requests (metrics); nil: nothing.
	Observer Observer

	// MinBlock, PreferredBlock and MaxPayload are INFO_BLOCK_SIZE
	// (defaults 512, 64 KiB, 32 MiB). Clients that ask for them in GO
	// must align to MinBlock; others may send any alignment.
	MinBlock, PreferredBlock, MaxPayload uint32
	// MaxInFlight bounds the requests a connection has in progress
	// (default 128) and MaxInFlightBytes the payload and read buffers
	// they hold (default 128 MiB); at the bound the server stops reading
	// that client's socket until replies drain.
	MaxInFlight      int
	MaxInFlightBytes int64
	// MaxTotalInFlightBytes bounds the same buffers across every
	// connection together (default 256 MiB): a connection that would go
	// over waits, as at its own bound, rather than failing.
	MaxTotalInFlightBytes int64

	// MaxConns caps the connections open at once (default 1024) and
	// MaxHandshakes those still negotiating (default 128); a connection
	// over either cap is closed as soon as it is accepted. Negative: no
	// cap.
	MaxConns, MaxHandshakes int
	// HandshakeTimeout bounds the whole negotiation, TLS included
	// (default 30 s; qemu's NBD server allows 10 s).
	HandshakeTimeout time.Duration
	// IdleTimeout, when positive, hangs up on a client in transmission
	// that has sent nothing for that long and has no request in flight.
	// Zero (the default) never does: qemu keeps a guest's disk connected
	// for as long as the guest runs, idle or not, as qemu-nbd and nbdkit
	// expect.
	IdleTimeout time.Duration
	// StallTimeout cuts a client that stops halfway through a request's
	// payload, or stops reading its replies, for that long (default
	// 2 min): either way it pins buffers of the server-wide budget.
	StallTimeout time.Duration
}

func (o *Options) fill() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.MinBlock == 0 {
		o.MinBlock = 512
	}
	if o.PreferredBlock == 0 {
		o.PreferredBlock = 64 << 10
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = 32 << 20
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 128
	}
	if o.MaxInFlightBytes == 0 {
		o.MaxInFlightBytes = 128 << 20
	}
	if o.MaxTotalInFlightBytes == 0 {
		o.MaxTotalInFlightBytes = 256 << 20
	}
	if o.MaxConns == 0 {
		o.MaxConns = 1024
	}
	if o.MaxHandshakes == 0 {
		o.MaxHandshakes = 128
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 30 * time.Second
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = 2 * time.Minute
	}
}

// Server speaks NBD on the listeners given to Serve.
type Server struct {
	opts Options
	log  *slog.Logger

	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[*conn]struct{}
	handshakes int           // conns still negotiating
	stopping   chan struct{} // closed by Shutdown
	stopOnce   sync.Once
	wg         sync.WaitGroup // connections

	budget    sharedBudget // bytes in flight, every connection together
	rejectLog logLimiter
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("nbd: server closed")

// NewServer checks the options and returns a server that serves nothing
// until Serve is called.
func NewServer(o Options) (*Server, error) {
	o.fill()
	if o.Exports == nil {
		return nil, errors.New("nbd: Options.Exports is required")
	}
	pow2 := func(v uint32) bool { return v&(v-1) == 0 }
	switch {
	case !pow2(o.MinBlock) || o.MinBlock > 64<<10:
		return nil, errors.New("nbd: MinBlock must be a power of 2 up to 64 KiB")
	case !pow2(o.PreferredBlock) || o.PreferredBlock < max(o.MinBlock, 512):
		return nil, errors.New("nbd: PreferredBlock must be a power of 2 at least max(MinBlock, 512)")
	case o.MaxPayload < o.PreferredBlock:
		return nil, errors.New("nbd: MaxPayload must be at least PreferredBlock")
	case o.MaxInFlightBytes < int64(o.MaxPayload)+(1<<20):
		return nil, errors.New("nbd: MaxInFlightBytes must hold at least one MaxPayload request")
	case o.MaxTotalInFlightBytes < int64(o.MaxPayload)+(1<<20):
		return nil, errors.New("nbd: MaxTotalInFlightBytes must hold at least one MaxPayload request")
	case o.HandshakeTimeout < 0 || o.IdleTimeout < 0 || o.StallTimeout < 0:
		return nil, errors.New("nbd: HandshakeTimeout, IdleTimeout and StallTimeout cannot be negative")
	}
	s := &Server{opts: o, log: o.Logger, listeners: map[net.Listener]struct{}{},
		conns: map[*conn]struct{}{}, stopping: make(chan struct{})}
	s.budget.max = o.MaxTotalInFlightBytes
	return s, nil
}

// Serve accepts connections on ln until Shutdown, then returns
// ErrServerClosed. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.isStopping() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isStopping() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				// Out of file descriptors and the like: back off, as
				// net/http does, instead of spinning or quitting.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("nbd accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.mu.Lock()
		if s.isStopping() {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		if r := s.overLimitLocked(); r != "" {
			// Closed before the greeting: NBD has no way to say why, and
			// a client that retries finds the answer in the metric,
			// counted before the close so it is there when the client
			// sees the hang-up.
			s.mu.Unlock()
			s.rejected(r, nc.RemoteAddr(), "nbd connection refused")
			nc.Close()
			continue
		}
		c := newConn(s, nc)
		s.conns[c] = struct{}{}
		s.handshakes++
		s.wg.Add(1)
		s.mu.Unlock()
		s.opts.Observer.Connections(1)
		go func() {
			defer s.wg.Done()
			defer s.opts.Observer.Connections(-1)
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

func (s *Server) isStopping() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// Shutdown stops accepting, answers options in negotiation with
// ERR_SHUTDOWN and new requests with ESHUTDOWN, lets requests in flight
// finish, and waits for clients to disconnect. When ctx ends first it cuts
// the remaining connections and returns ctx's error, once the backend
// calls still in flight have returned: an export is never closed under a
// running call.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.mu.Lock()
		for ln := range s.listeners {
			ln.Close()
		}
		for c := range s.conns {
			c.wakeForShutdown()
		}
		s.mu.Unlock()
	})
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// Connections reports how many clients are connected.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
