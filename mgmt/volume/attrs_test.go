package volume

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// Attributes written before namespaces (one flat object) read as the same
// fields; namespaced ones keep other surfaces' values untouched.
func TestAttrsEncoding(t *testing.T) {
	flat := []byte(`{"name_label":"web","tags":["a"],"on_boot":"reset","on_boot_base":"b1","building":"t1"}`)
	a, err := decodeAttrs(flat)
	if err != nil {
		t.Fatal(err)
	}
	if a.Xen.NameLabel != "web" || len(a.Xen.Tags) != 1 || a.Xen.OnBoot != "reset" ||
		a.Lifecycle.OnBootBase != "b1" || a.Lifecycle.Building != "t1" || a.Surfaces != nil {
		t.Fatalf("flat attributes read as %+v", a)
	}
	a = a.withSurface("cinder", []byte(`{"name":"vol1","consistencygroup_id":"cg"}`))
	a.Xen.SnapshotTime = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	b, err := decodeAttrs(a.encode())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.encode(), a.encode()) || string(b.Surfaces["cinder"]) != `{"name":"vol1","consistencygroup_id":"cg"}` {
		t.Fatalf("round trip: %s, want %s", b.encode(), a.encode())
	}
	if c := b.withSurface("cinder", nil); c.Surfaces["cinder"] != nil || b.Surfaces["cinder"] == nil {
		t.Fatal("removing a namespace changed the original or kept the value")
	}
}

// FuzzDecodeAttrs: any stored bytes decode or fail cleanly, and what
// decodes re-encodes to something that decodes to the same.
func FuzzDecodeAttrs(f *testing.F) {
	f.Add([]byte(`{"name_label":"web","building":"t"}`))
	f.Add([]byte(`{"xen":{"name_label":"x","tags":["a"]},"vdiskd":{"forgotten":true},"kvol":[1,2]}`))
	f.Add([]byte(`{"xen":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := decodeAttrs(in)
		if err != nil {
			return
		}
		enc := a.encode()
		if !json.Valid(enc) {
			t.Fatalf("encoded %q is not JSON", enc)
		}
		b, err := decodeAttrs(enc)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", enc, err)
		}
		if again := b.encode(); !bytes.Equal(again, enc) {
			t.Fatalf("not stable: %q then %q", enc, again)
		}
	})
}
