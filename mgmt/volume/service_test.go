package volume

import (
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
)

// Calls on different VDIs never wait on each other: with VDI a's lock held
// (as a call holds it across its store commit), every call on VDI b
// answers, and a call on a waits until a is free.
func TestCallsOnOtherVDIsDoNotWait(t *testing.T) {
	h := newHarness(t)
	a, err := h.s.Create(CreateRequest{Size: 4 << 20, Xen: XenAttrs{NameLabel: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.s.Create(CreateRequest{Size: 4 << 20, Xen: XenAttrs{NameLabel: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	ea := h.s.entry(a.Info.ID)
	ea.mu.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			ea.mu.Unlock()
		}
	}
	t.Cleanup(unlock)

	onB := make(chan error, 1)
	go func() {
		if _, err := h.s.Get(b.Info.ID); err != nil {
			onB <- err
			return
		}
		snap, err := h.s.Snapshot(b.Info.ID, nil, "")
		if err == nil {
			err = h.s.Destroy(snap.Info.ID, "")
		}
		onB <- err
	}()
	select {
	case err := <-onB:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("calls on VDI b waited for VDI a's lock")
	}

	onA := make(chan error, 1)
	go func() {
		_, err := h.s.Get(a.Info.ID)
		onA <- err
	}()
	select {
	case err := <-onA:
		t.Fatalf("a call on VDI a answered (%v) while a was locked", err)
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-onA:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call on VDI a never answered after a was unlocked")
	}
}

// Two calls wait for the same VDI's attachment to go, one destroys and
// one forgets: exactly one wins, and the loser sees the VDI gone, so a
// destroy never takes a forgotten VDI's data.
func TestWaitersSeeWhatHappenedMeanwhile(t *testing.T) {
	for round := range 20 {
		h := newHarness(t)
		h.s.SetDetachGrace(10 * time.Second)
		v, err := h.s.Create(CreateRequest{Size: 4 << 20})
		if err != nil {
			t.Fatal(err)
		}
		id := v.Info.ID
		b, err := h.s.Attach(id, "u", true)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		destroyed, forgot := make(chan error, 1), make(chan error, 1)
		go func() { destroyed <- h.s.Destroy(id, "") }()
		go func() { forgot <- h.s.Forget(id, "") }()
		time.Sleep(time.Duration(round%4) * time.Millisecond)
		b.Close()
		derr := testwait.Recv(t, destroyed, "the destroy")
		ferr := testwait.Recv(t, forgot, "the forget")
		if (derr == nil) == (ferr == nil) {
			t.Fatalf("round %d: destroy %v, forget %v: want exactly one to succeed", round, derr, ferr)
		}
		_, serr := h.store.Volume(id)
		if ferr == nil && serr != nil {
			t.Fatalf("round %d: the destroy took a forgotten VDI's data (%v)", round, derr)
		}
	}
}
