package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kv"
	"golang.org/x/crypto/bcrypt"
)

const adminPassword = "admin-password"

// clock is a test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newService opens a Service on an in-memory database.
func newService(t *testing.T, c *clock) *Service {
	t.Helper()
	db, err := kv.Open("db", vfs.NewMem())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(Options{DB: db, Now: c.Now, AdminPassword: adminPassword, BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func kindOf(err error) fault.Kind {
	if f, ok := fault.As(err); ok {
		return f.Kind
	}
	return -1
}

// Five wrong passwords are free; then every login for that name waits,
// right password or not, the wait doubling per failure; a token issued
// before keeps working, other names are not slowed, and a success after
// the wait clears the count.
func TestLoginThrottle(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	s := newService(t, c)
	login := func(user, pw string) error {
		p, err := s.CheckLogin(user, pw)
		if err == nil {
			_, err = s.IssueToken(p)
		}
		return err
	}
	p, err := s.CheckLogin("admin", adminPassword)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.IssueToken(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < freeLoginFailures; i++ {
		if k := kindOf(login("admin", "wrong")); k != fault.Unauthenticated {
			t.Fatalf("failure %d: kind %v", i, k)
		}
	}
	// The sixth try waits, even with the right password.
	err = login("admin", adminPassword)
	if f, ok := fault.As(err); !ok || f.Kind != fault.TooMany || f.Code != fault.CodeAuthFailed || f.RetryAfter != time.Second {
		t.Fatalf("sixth try: %v", err)
	}
	if _, err := s.Authenticate(tok.Token, ""); err != nil {
		t.Fatalf("a token issued before stopped working: %v", err)
	}
	if k := kindOf(login("nobody", "x-password")); k != fault.Unauthenticated { // another name: not throttled
		t.Fatalf("another name: kind %v", k)
	}
	c.advance(firstLoginDelay)
	if k := kindOf(login("admin", "wrong")); k != fault.Unauthenticated { // the 6th failure: 2s
		t.Fatalf("after the wait: kind %v", k)
	}
	c.advance(time.Second)
	if k := kindOf(login("admin", adminPassword)); k != fault.TooMany {
		t.Fatalf("within the doubled wait: kind %v", k)
	}
	c.advance(time.Second)
	if err := login("admin", adminPassword); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < freeLoginFailures; i++ { // the count started again
		if k := kindOf(login("admin", "wrong")); k != fault.Unauthenticated {
			t.Fatalf("after success, failure %d: kind %v", i, k)
		}
	}
}

func TestLoginThrottleDelaysAndBound(t *testing.T) {
	var l loginThrottle
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	var waits []time.Duration
	for i := 0; i < 14; i++ {
		l.failed("u", now)
		waits = append(waits, l.wait("u", now))
	}
	want := "[0s 0s 0s 0s 1s 2s 4s 8s 16s 32s 1m0s 1m0s 1m0s 1m0s]"
	if got := fmt.Sprint(waits); got != want {
		t.Fatalf("waits %s, want %s", got, want)
	}
	for i := 0; i < 3*maxThrottled; i++ {
		l.failed(fmt.Sprintf("name-%d", i), now)
	}
	if n := len(l.names); n > maxThrottled {
		t.Fatalf("%d names remembered, bound %d", n, maxThrottled)
	}
}

// An unknown user name costs a login what a known one does: its password
// is checked against a dummy bcrypt hash of the same cost as every stored
// one, so the answer's timing does not tell which names exist. (The
// property is checked on the hashes, not with a stopwatch.)
func TestUnknownUserCostsAFullBcrypt(t *testing.T) {
	s := newService(t, &clock{now: time.Now()})
	if _, err := s.CreateUser("bob", "bob-password-1", VMAdmin); err != nil {
		t.Fatal(err)
	}
	dummy, err := bcrypt.Cost(s.dummy)
	if err != nil {
		t.Fatalf("the dummy hash is not a bcrypt hash: %v", err)
	}
	for _, name := range []string{"admin", "bob"} {
		s.mu.RLock()
		u := s.users[name]
		s.mu.RUnlock()
		cost, err := bcrypt.Cost([]byte(u.Hash))
		if err != nil || cost != dummy {
			t.Fatalf("%s's hash has cost %d (%v), the dummy %d", name, cost, err, dummy)
		}
	}
	if k := kindOf(func() error { _, err := s.CheckLogin("nobody", "bob-password-1"); return err }()); k != fault.Unauthenticated {
		t.Fatalf("unknown user: kind %v", k)
	}
}
