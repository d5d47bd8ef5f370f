package blockstore

import (
	"sync/atomic"
	"time"
)

// BlockSize is the unit of data storage: a 4 KiB write is one key, with no
// read-modify-write. Smaller or unaligned writes read the block first.
const BlockSize = 4096

const blockShift = 12

// SizeAlign is the granularity of virtual sizes: 2 MiB, so every XenAPI
// changed-block bitmap is a whole number of 32-bit words (Xen Orchestra
// reads it that way).
const SizeAlign = 2 << 20

// MaxSize is the largest virtual size: 2^32 CBT blocks of 64 KiB, the reach
// of a 32-bit roaring bitmap.
const MaxSize = 1 << 48

// Kind says what a volume is.
type Kind string

const (
	// KindLive is a writable volume (unless ReadOnly is set).
	KindLive Kind = "live"
	// KindSnapshot is a read-only volume frozen at one generation.
	KindSnapshot Kind = "snapshot"
	// KindCBTMetadata is a snapshot whose data was destroyed; only its
	// changed-block history remains (XenAPI type cbt_metadata).
	KindCBTMetadata Kind = "cbt_metadata"
)

// VolumeInfo describes a volume at one moment. It is a copy: changing it
// changes nothing in the store.
type VolumeInfo struct {
	ID         string
	Pool       string
	Kind       Kind
	Size       uint64 // virtual size in bytes, a multiple of SizeAlign
	ReadOnly   bool   // snapshots and metadata-only volumes are always read-only
	SnapshotOf string // for snapshots: the volume they froze
	CloneOf    string // for clones: the volume they were cloned from
	Created    time.Time
	CBTEnabled bool
	// Gen orders the snapshots of one volume: a later snapshot has a
	// higher one (clocks may tie or step back; this does not).
	Gen      uint64
	Attrs    []byte // opaque to the store; the caller's record fields
	Attached int    // open Disk handles
}

// IsSnapshot reports whether v is frozen (a snapshot or its metadata).
func (v VolumeInfo) IsSnapshot() bool { return v.Kind != KindLive }

// volumeRecord is what the store persists for a volume (JSON under 'v').
type volumeRecord struct {
	ID         string    `json:"id"`
	Pool       string    `json:"pool"`
	Kind       Kind      `json:"kind"`
	Lineage    uint64    `json:"lineage"`
	Gen        uint64    `json:"gen,omitempty"` // frozen generation; 0 for live
	Size       uint64    `json:"size"`
	ReadOnly   bool      `json:"read_only,omitempty"`
	SnapshotOf string    `json:"snapshot_of,omitempty"`
	CloneOf    string    `json:"clone_of,omitempty"`
	Created    time.Time `json:"created"`
	CBTEnabled bool      `json:"cbt_enabled,omitempty"`
	CBTEpoch   uint64    `json:"cbt_epoch,omitempty"`
	Attrs      []byte    `json:"attrs,omitempty"`
}

// volume is the in-memory state of one volume. rec is guarded by Store.mu;
// the atomics are read by the data path without it.
type volume struct {
	rec      volumeRecord
	lin      *lineage
	size     atomic.Uint64
	readOnly atomic.Bool
	attached atomic.Int32
	stats    ioStats
}

func newVolume(rec volumeRecord, lin *lineage) *volume {
	v := &volume{rec: rec, lin: lin}
	v.size.Store(rec.Size)
	v.readOnly.Store(rec.ReadOnly || rec.Kind != KindLive)
	return v
}

func (v *volume) info() VolumeInfo {
	r := v.rec
	return VolumeInfo{
		ID: r.ID, Pool: r.Pool, Kind: r.Kind, Size: r.Size,
		ReadOnly:   r.ReadOnly || r.Kind != KindLive,
		SnapshotOf: r.SnapshotOf, CloneOf: r.CloneOf, Created: r.Created,
		CBTEnabled: r.CBTEnabled, Gen: r.Gen, Attrs: append([]byte(nil), r.Attrs...),
		Attached: int(v.attached.Load()),
	}
}

// roundSize rounds a requested virtual size up to SizeAlign.
func roundSize(size uint64) (uint64, bool) {
	if size > MaxSize {
		return 0, false
	}
	return (size + SizeAlign - 1) / SizeAlign * SizeAlign, true
}
