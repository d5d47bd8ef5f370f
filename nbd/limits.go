package nbd

import (
	"net"
	"sync"
	"time"
)

// rejectLogEvery spaces the log lines about turned-away clients: a flood
// of connections must not become a flood of log lines. The metric counts
// every one.
const rejectLogEvery = 10 * time.Second

// logLimiter lets one line through per period and counts the rest.
type logLimiter struct {
	mu     sync.Mutex
	next   time.Time
	silent int
}

// allow reports whether to log now, and how many were not logged since
// the last line.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.silent++
		return false, 0
	}
	n := l.silent
	l.next, l.silent = now.Add(rejectLogEvery), 0
	return true, n
}

// rejected counts a client turned away or cut off, and logs it unless a
// line went out recently.
func (s *Server) rejected(r Reason, remote net.Addr, msg string) {
	s.opts.Observer.ConnectionRejected(r)
	if ok, silent := s.rejectLog.allow(time.Now()); ok {
		s.log.Warn(msg, "reason", string(r), "remote", remote, "not_logged_since_last", silent)
	}
}

// overLimitLocked says which cap a new connection would break, if any.
// REQUIRES: s.mu held.
func (s *Server) overLimitLocked() Reason {
	switch {
	case s.opts.MaxConns > 0 && len(s.conns) >= s.opts.MaxConns:
		return ReasonMaxConnections
	case s.opts.MaxHandshakes > 0 && s.handshakes >= s.opts.MaxHandshakes:
		return ReasonMaxHandshakes
	}
	return ""
}

// handshakeDone frees the connection's negotiation slot.
func (s *Server) handshakeDone() {
	s.mu.Lock()
	s.handshakes--
	s.mu.Unlock()
}
