// Package cbt holds changed-block tracking: which 64 KiB blocks of a disk
// changed between two points in its history.
//
// The block store keeps one roaring bitmap per snapshot interval (the blocks
// written between two generations). A diff between two snapshots is the union
// of the intervals after the older one up to and including the newer one.
// Nothing here does I/O: the store persists what this package computes, and
// rebuilds the live interval after a crash from its own versioned keys, so a
// crash can over-report a block but never under-report one.
//
// This package owns three things:
//   - the XenAPI wire encoding of a changed-block bitmap (Encode, Decode);
//   - the interval set and its planning functions (Intervals);
//   - the XenAPI chain rules for list_changed_blocks (CheckChain).
package cbt

// BlockSize is the granularity of changed-block tracking in bytes. XenAPI
// clients assume it (SMAPIv3 drops the granularity field on the way out).
const BlockSize = 64 << 10

// BlockShift is log2(BlockSize).
const BlockShift = 16
