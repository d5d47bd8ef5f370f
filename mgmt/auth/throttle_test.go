package mgmt

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"golang.org/x/crypto/bcrypt"
)

// Five wrong passwords are free; then every login for that name waits,
// right password or not, the wait doubling per failure; a token issued
// before keeps working, other names are not slowed, and a success after
// the wait clears the count.
func TestLoginThrottle(t *testing.T) {
	e := newEnv(t)
	tok := e.login("admin", adminPassword)
	for i := 0; i < freeLoginFailures; i++ {
		e.fails(401, api.CodeAuthFailed, "POST", "/api/token", "basic:admin:wrong", nil)
	}
	// The sixth try waits, even with the right password.
	got := e.fails(http.StatusTooManyRequests, api.CodeAuthFailed, "POST", "/api/token", "basic:admin:"+adminPassword, nil)
	t.Logf("throttled: %s", got.Message)
	e.must(200, "GET", "/api/vdis", tok, nil, nil)
	e.fails(401, api.CodeAuthFailed, "POST", "/api/token", "basic:nobody:x", nil) // another name: not throttled

	e.advance(firstLoginDelay)
	e.fails(401, api.CodeAuthFailed, "POST", "/api/token", "basic:admin:wrong", nil) // the 6th failure: 2s
	e.advance(time.Second)
	e.fails(http.StatusTooManyRequests, api.CodeAuthFailed, "POST", "/api/token", "basic:admin:"+adminPassword, nil)
	e.advance(time.Second)
	e.login("admin", adminPassword)
	for i := 0; i < freeLoginFailures; i++ { // the count started again
		e.fails(401, api.CodeAuthFailed, "POST", "/api/token", "basic:admin:wrong", nil)
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
	e := newEnv(t)
	e.must(201, "POST", "/api/users", e.admin, map[string]any{"username": "bob", "password": "bob-password-1", "role": "vm-admin"}, nil)
	dummy, err := bcrypt.Cost(e.s.dummy)
	if err != nil {
		t.Fatalf("the dummy hash is not a bcrypt hash: %v", err)
	}
	for _, name := range []string{"admin", "bob"} {
		e.s.mu.Lock()
		u := e.s.st.user(name)
		e.s.mu.Unlock()
		cost, err := bcrypt.Cost([]byte(u.Hash))
		if err != nil || cost != dummy {
			t.Fatalf("%s's hash has cost %d (%v), the dummy %d", name, cost, err, dummy)
		}
	}
	e.fails(401, api.CodeAuthFailed, "POST", "/api/token", "basic:nobody:bob-password-1", nil)
}
