package kv

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

type rec struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

// Records are written durably one key at a time or in batches, read back
// by key and by prefix (and only that prefix), survive a reopen, and every
// call after Close fails with ErrClosed instead of reaching pebble.
func TestRecords(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open("db", fs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := db.Put(fmt.Sprintf("user/u%d", i), rec{Name: fmt.Sprint("u", i), N: i}); err != nil {
			t.Fatal(err)
		}
	}
	b := db.NewBatch()
	b.Put("userx", rec{Name: "not under user/"})
	b.Put("token/t1", rec{Name: "t1"})
	b.Delete("user/u1")
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open("db", fs); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got []string
	if err := ScanJSON(db, "user/", func(key string, r *rec) error {
		got = append(got, fmt.Sprintf("%s=%s/%d", key, r.Name, r.N))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[user/u0=u0/0 user/u2=u2/2]" {
		t.Fatalf("scan user/ = %v", got)
	}
	var r rec
	if ok, err := db.Get("token/t1", &r); !ok || err != nil || r.Name != "t1" {
		t.Fatalf("get token/t1 = %v %v %+v", ok, err, r)
	}
	if ok, err := db.Get("user/u1", &r); ok || err != nil {
		t.Fatalf("get of a deleted key = %v %v", ok, err)
	}
	db.Close()
	if err := db.Put("user/u3", rec{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v", err)
	}
	if _, err := db.Get("user/u0", &r); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}
	if err := db.Scan("", func(string, []byte) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("scan after close: %v", err)
	}
}

func TestPrefixEnd(t *testing.T) {
	for in, want := range map[string]string{"user/": "user0", "a\xff": "b", "\xff\xff": ""} {
		if got := string(prefixEnd(in)); got != want {
			t.Errorf("prefixEnd(%q) = %q, want %q", in, got, want)
		}
	}
}
