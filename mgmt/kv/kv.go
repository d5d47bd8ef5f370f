// Package kv keeps the management plane's small records (vPools, users,
// tokens, the node's identity) in a pebble database of their own, one key
// per record. A change writes its one key with a synced commit, so it costs
// one WAL append however many records exist, and concurrent changes share
// fsyncs (pebble's group commit); no change rewrites a file or waits on a
// lock another service holds.
package kv

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// DB is the records database.
type DB struct {
	// mu keeps Close from pulling the database from under a call still
	// running (pebble panics on use after close).
	mu     sync.RWMutex
	closed bool
	db     *pebble.DB
}

// ErrClosed is what every call gets once the database is closed.
var ErrClosed = errors.New("kv: closed")

func (d *DB) use() error {
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (d *DB) done() { d.mu.RUnlock() }

// Open opens (or creates) the database in dir. fs nil is the real file
// system.
func Open(dir string, fs vfs.FS) (*DB, error) {
	if fs == nil {
		fs = vfs.Default
	}
	cache := pebble.NewCache(1 << 20)
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{
		FS: fs, Cache: cache, MemTableSize: 1 << 20, Logger: quiet{},
	})
	if err != nil {
		return nil, fmt.Errorf("kv: open %s: %w", dir, err)
	}
	if fs == vfs.Default {
		// The records include password hashes: only the daemon reads them.
		if err := os.Chmod(dir, 0o700); err != nil {
			db.Close()
			return nil, fmt.Errorf("kv: %w", err)
		}
	}
	return &DB{db: db}, nil
}

// Close closes the database.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	return d.db.Close()
}

// Get decodes the record at key into v; false if there is none.
func (d *DB) Get(key string, v any) (bool, error) {
	if err := d.use(); err != nil {
		return false, err
	}
	defer d.done()
	b, closer, err := d.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("kv: get %s: %w", key, err)
	}
	defer closer.Close()
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("kv: record %s is corrupt: %w", key, err)
	}
	return true, nil
}

// Put stores v at key, durably.
func (d *DB) Put(key string, v any) error {
	b := d.NewBatch()
	b.Put(key, v)
	return b.Commit()
}

// Delete removes key, durably.
func (d *DB) Delete(key string) error {
	b := d.NewBatch()
	b.Delete(key)
	return b.Commit()
}

// Scan calls fn for every record whose key starts with prefix, in key
// order.
func (d *DB) Scan(prefix string, fn func(key string, val []byte) error) error {
	if err := d.use(); err != nil {
		return err
	}
	defer d.done()
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("kv: scan %s: %w", prefix, err)
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(string(it.Key()), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("kv: scan %s: %w", prefix, err)
	}
	return nil
}

// ScanRange calls fn for every record with lo <= key < hi, in key order,
// until fn answers false.
func (d *DB) ScanRange(lo, hi string, fn func(key string, val []byte) (bool, error)) error {
	if err := d.use(); err != nil {
		return err
	}
	defer d.done()
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte(lo), UpperBound: []byte(hi)})
	if err != nil {
		return fmt.Errorf("kv: scan [%s, %s): %w", lo, hi, err)
	}
	for it.First(); it.Valid(); it.Next() {
		more, err := fn(string(it.Key()), it.Value())
		if err != nil || !more {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("kv: scan [%s, %s): %w", lo, hi, err)
	}
	return nil
}

// ScanJSON decodes every record under prefix into a new T and calls fn.
func ScanJSON[T any](d *DB, prefix string, fn func(key string, v *T) error) error {
	return d.Scan(prefix, func(key string, val []byte) error {
		v := new(T)
		if err := json.Unmarshal(val, v); err != nil {
			return fmt.Errorf("kv: record %s is corrupt: %w", key, err)
		}
		return fn(key, v)
	})
}

func prefixEnd(p string) []byte {
	end := []byte(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Batch is several changes committed at once.
type Batch struct {
	d   *DB
	b   *pebble.Batch
	err error
}

// NewBatch starts a batch.
func (d *DB) NewBatch() *Batch {
	if err := d.use(); err != nil {
		return &Batch{d: d, err: err}
	}
	defer d.done()
	return &Batch{d: d, b: d.db.NewBatch()}
}

// Put adds a record to the batch.
func (b *Batch) Put(key string, v any) {
	if b.b == nil {
		return
	}
	buf, err := json.Marshal(v)
	if err != nil {
		b.err = errors.Join(b.err, fmt.Errorf("kv: encode %s: %w", key, err))
		return
	}
	_ = b.b.Set([]byte(key), buf, nil)
}

// Delete adds a removal to the batch.
func (b *Batch) Delete(key string) {
	if b.b != nil {
		_ = b.b.Delete([]byte(key), nil)
	}
}

// DeleteRange adds the removal of every key in [lo, hi) to the batch.
func (b *Batch) DeleteRange(lo, hi string) {
	if b.b != nil {
		_ = b.b.DeleteRange([]byte(lo), []byte(hi), nil)
	}
}

// Commit applies the batch durably.
func (b *Batch) Commit() error {
	if b.b == nil {
		return b.err
	}
	defer b.b.Close()
	if b.err != nil {
		return b.err
	}
	if err := b.d.use(); err != nil {
		return err
	}
	defer b.d.done()
	if err := b.b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("kv: commit: %w", err)
	}
	return nil
}

// quiet drops pebble's informational lines; errors still reach the
// caller through the calls that failed.
type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
