package replication

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
)

// BlockSize is the unit shipped: CBT's 64 KiB block.
const BlockSize = 64 << 10

// ReplicaState is one VDI's replica as the last completed cycle left it.
// The replicator stores it after each cycle; a cycle that did not
// complete left it unchanged, and the next one starts from it again.
type ReplicaState struct {
	Seq     int    `json:"seq"`
	VDI     string `json:"vdi"`
	Replica string `json:"replica,omitempty"` // the replica VDI in the backup zone
	// Base is the last source snapshot whose contents the replica holds
	// (the base of the next cycle's changed blocks); "" before the first
	// sync.
	Base      string         `json:"base,omitempty"`
	Snapshots []SnapshotPair `json:"snapshots,omitempty"` // oldest first
	Shipped   uint64         `json:"shipped"`             // bytes shipped in all
}

// SnapshotPair maps a source snapshot to the replica snapshot holding the
// same contents.
type SnapshotPair struct {
	Source  string    `json:"source"`
	Replica string    `json:"replica"`
	At      time.Time `json:"at"`
	// Frozen: the source was the replicator's own snapshot, not a user's;
	// such replica snapshots are the ones retention thins.
	Frozen bool `json:"frozen,omitempty"`
}

// Source is this zone's side of a cycle.
type Source interface {
	// Freeze takes the snapshot of vdi this cycle ships (CBT on), and its
	// size.
	Freeze(seq int, vdi string) (snap string, size uint64, err error)
	// Between lists the snapshots users took of vdi after snapshot after
	// ("": any) and before snapshot before, oldest first, with their
	// sizes: each is shipped in order, so each has its replica snapshot.
	Between(vdi, after, before string) ([]Point, error)
	// Blocks lists snap's 64 KiB blocks to ship: those written after base,
	// or for base "" every block that holds data.
	Blocks(base, snap string) (*roaring.Bitmap, error)
	// Open reads snap.
	Open(snap string) (Reader, error)
	// Sweep removes every snapshot Freeze took of vdi for relation seq but
	// keep: the bases stored states no longer name, and those of cycles
	// cut short.
	Sweep(seq int, vdi, keep string) error
	// Forget removes snap if Freeze took it for relation seq (the base of
	// a VDI that is gone).
	Forget(seq int, snap string) error
}

// Reader reads a source snapshot.
type Reader interface {
	ReadAt(p []byte, off int64) (int, error)
	Close() error
}

// Target is the backup zone's side of a cycle.
type Target interface {
	// Replica makes the replica VDI of of.VDI (id "") or grows it to
	// size, and answers its id.
	Replica(ctx context.Context, id, name string, size uint64, of Origin) (string, error)
	// Open connects one writer to the replica.
	Open(ctx context.Context, replica string) (Writer, error)
	// Snapshot freezes the replica once every write is durable, tagged
	// with the source snapshot it holds (the backup zone finds it by
	// that, without the origin).
	Snapshot(ctx context.Context, replica string, of Origin) (string, error)
	// Destroy removes a replica or replica snapshot.
	Destroy(ctx context.Context, id string) error
}

// Point is a source snapshot a cycle ships.
type Point struct {
	Snapshot string
	Size     uint64
}

// Writer writes a replica.
type Writer interface {
	WriteAt(ctx context.Context, p []byte, off uint64) error
	Flush(ctx context.Context) error
	Close() error
}

// CycleStats are what one cycle did.
type CycleStats struct {
	Blocks int
	Bytes  uint64
	Full   bool // a first sync
}

// Cycle ships st.VDI once, from the zone, vPool and relation from names: it freezes the source, then ships, in order, each
// snapshot users took since st.Base and the frozen one: for each, the
// blocks written since the previous (or, the first time, every block
// holding data) over conns writers, flushed, then a replica snapshot
// tagged with its origin. It answers the state to store, advanced as far
// as it got even when it fails part way. Until that state is stored the
// old one stands, and shipping the same blocks of a later snapshot again
// is harmless, so a cycle cut at any point is repeated, never resynced in
// full.
func Cycle(ctx context.Context, st ReplicaState, from Origin, name string, src Source, dst Target, conns int) (ReplicaState, CycleStats, error) {
	from.VDI, from.Snapshot = st.VDI, ""

	var stats CycleStats
	snap, size, err := src.Freeze(st.Seq, st.VDI)
	if err != nil {
		return st, stats, fmt.Errorf("freezing %s: %w", st.VDI, err)
	}
	points, err := src.Between(st.VDI, st.Base, snap)
	if err != nil {
		return st, stats, fmt.Errorf("the snapshots of %s: %w", st.VDI, err)
	}
	points = append(points, Point{Snapshot: snap, Size: size})
	replica, err := dst.Replica(ctx, st.Replica, name, slices.MaxFunc(points, func(a, b Point) int { return cmp.Compare(a.Size, b.Size) }).Size,
		from)
	if err != nil {
		return st, stats, fmt.Errorf("the replica of %s: %w", st.VDI, err)
	}
	if replica != st.Replica {
		// A new replica holds nothing: ship everything.
		st.Base, st.Replica = "", replica
	}
	for _, p := range points {
		blocks, err := src.Blocks(st.Base, p.Snapshot)
		if err != nil {
			return st, stats, fmt.Errorf("the blocks of %s to ship: %w", p.Snapshot, err)
		}
		stats.Full = stats.Full || st.Base == ""
		stats.Blocks += int(blocks.GetCardinality())
		n, err := ship(ctx, src, p.Snapshot, p.Size, blocks, dst, replica, conns)
		stats.Bytes += n
		if err != nil {
			return st, stats, fmt.Errorf("shipping %s to %s: %w", p.Snapshot, replica, err)
		}
		at := from
		at.Snapshot = p.Snapshot
		rsnap, err := dst.Snapshot(ctx, replica, at)
		if err != nil {
			return st, stats, fmt.Errorf("snapshotting the replica %s: %w", replica, err)
		}
		st.Base, st.Shipped = p.Snapshot, st.Shipped+n
		st.Snapshots = append(slices.Clip(st.Snapshots), SnapshotPair{Source: p.Snapshot, Replica: rsnap,
			At: time.Now().UTC(), Frozen: p.Snapshot == snap})
	}
	return st, stats, nil
}

// ship writes the blocks of snap to the replica over conns writers, each
// flushed at the end, and answers the bytes shipped.
func ship(ctx context.Context, src Source, snap string, size uint64, blocks *roaring.Bitmap,
	dst Target, replica string, conns int) (uint64, error) {
	r, err := src.Open(snap)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	conns = max(1, min(conns, int(blocks.GetCardinality())))
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan uint32)
	var shipped atomic.Uint64
	var firstErr error
	var once sync.Once
	failed := func(err error) {
		once.Do(func() { firstErr = err; cancel() })
	}
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		w, err := dst.Open(ctx, replica)
		if err != nil {
			failed(err)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			buf := make([]byte, BlockSize)
			for b := range work {
				off := uint64(b) * BlockSize
				n := min(uint64(BlockSize), size-off)
				if _, err := r.ReadAt(buf[:n], int64(off)); err != nil {
					failed(fmt.Errorf("reading block %d: %w", b, err))
					return
				}
				if err := w.WriteAt(ctx, buf[:n], off); err != nil {
					failed(fmt.Errorf("writing block %d: %w", b, err))
					return
				}
				shipped.Add(n)
			}
			// Every write of this connection is durable before the
			// replica is frozen.
			if err := w.Flush(ctx); err != nil {
				failed(fmt.Errorf("flushing: %w", err))
			}
		}()
	}
	it := blocks.Iterator()
feed:
	for it.HasNext() {
		b := it.Next()
		if uint64(b)*BlockSize >= size {
			break
		}
		select {
		case work <- b:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr == nil {
		firstErr = parent.Err()
	}
	return shipped.Load(), firstErr
}

// Expired are the replica snapshots of frozen points past the newest keep
// of them (retention): what Prune removes. Users' snapshots' replicas stay.
func Expired(st ReplicaState, keep int) []SnapshotPair {
	var frozen []SnapshotPair
	for _, p := range st.Snapshots {
		if p.Frozen {
			frozen = append(frozen, p)
		}
	}
	if len(frozen) <= keep {
		return nil
	}
	return frozen[:len(frozen)-keep]
}

// Prune destroys the expired replica snapshots at the backup zone and
// answers the state without those it destroyed.
func Prune(ctx context.Context, st ReplicaState, keep int, dst Target) (ReplicaState, error) {
	gone := map[string]bool{}
	var errs []error
	for _, p := range Expired(st, keep) {
		if err := dst.Destroy(ctx, p.Replica); err != nil {
			errs = append(errs, err)
			continue
		}
		gone[p.Replica] = true
	}
	st.Snapshots = slices.DeleteFunc(slices.Clone(st.Snapshots), func(p SnapshotPair) bool { return gone[p.Replica] })
	return st, errors.Join(errs...)
}
