package volume

import (
	"testing"
	"time"
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
