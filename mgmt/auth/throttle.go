package auth

import (
	"sync"
	"time"
)

// Password guessing is slowed per user name, known or not (treating
// unknown names alike tells nothing about which exist): after
// freeLoginFailures wrong passwords in a row, every login for that name,
// right or wrong, waits a delay that doubles with each further failure up
// to maxLoginDelay. Tokens already issued keep working, so an attacker
// hammering "admin" delays new logins, never running work.
const (
	freeLoginFailures = 5
	firstLoginDelay   = time.Second
	maxLoginDelay     = time.Minute
	// maxThrottled bounds the names remembered; past it, names whose
	// delay is over are forgotten first, then the table is cleared.
	maxThrottled = 10000
)

type loginFailures struct {
	n     int
	until time.Time // no login for the name before this
}

type loginThrottle struct {
	mu    sync.Mutex
	names map[string]*loginFailures
}

// wait reports how long logins for user must still wait.
func (l *loginThrottle) wait(user string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.names[user]
	if f == nil || !now.Before(f.until) {
		return 0
	}
	return f.until.Sub(now)
}

// failed records a wrong password for user.
func (l *loginThrottle) failed(user string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.names == nil {
		l.names = map[string]*loginFailures{}
	}
	f := l.names[user]
	if f == nil {
		if len(l.names) >= maxThrottled {
			l.forgetLocked(now)
		}
		f = &loginFailures{}
		l.names[user] = f
	}
	f.n++
	if over := f.n - freeLoginFailures; over >= 0 {
		d := maxLoginDelay
		if over < 6 { // 1s << 6 is past the cap already
			d = min(firstLoginDelay<<over, maxLoginDelay)
		}
		f.until = now.Add(d)
	}
}

// succeeded forgets user's failures.
func (l *loginThrottle) succeeded(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.names, user)
}

func (l *loginThrottle) forgetLocked(now time.Time) {
	for name, f := range l.names {
		if !now.Before(f.until) {
			delete(l.names, name)
		}
	}
	if len(l.names) >= maxThrottled {
		clear(l.names)
	}
}
