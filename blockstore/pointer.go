package blockstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// A data version's value is one of:
//
//	4096 bytes       the block itself, inline in pebble
//	'p' cur prev     the block is in a segment (segment.go)
//	""               discarded: reads zero, unallocated
//	"z"              zeroed, allocated
//
// Both data forms may sit side by side: a store that turns segments on or
// off keeps reading what it wrote before.
//
// A segment pointer is
//
//	'p' seg(4) slot(4) crc(4) epoch(4) prevKind(1) [seg(4) slot(4) crc(4)]
//
// cur names the slot and the CRC-32C of its 4 KiB; epoch is the segment
// sync count when its pwrite was done, which tells a later write whether
// the slot was durable yet. prev is what the key held when that was last
// true, for power-loss recovery: pebble may make a pointer durable before
// the page cache has written its slot (a memtable flush, the kernel's
// writeback of the WAL), and a write that overwrote a durable block at the
// same key must then fall back to it, not to zeros (recover.go).
const (
	pointerLen     = 18
	pointerPrevLen = pointerLen + 12
)

const tagPointer = 'p'

// What prev is.
const (
	prevNone    byte = iota // the key did not exist: recovery deletes it
	prevHole                // a discard marker
	prevZero                // a zero marker
	prevPointer             // a durable slot
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func blockCRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// pointer names a slot holding a block with the given CRC.
type pointer struct {
	seg, slot, crc uint32
}

// segValue is a decoded segment pointer value.
type segValue struct {
	cur      pointer
	epoch    uint32
	prevKind byte
	prev     pointer // when prevKind is prevPointer
}

func (v segValue) append(dst []byte) []byte {
	dst = append(dst, tagPointer)
	dst = binary.BigEndian.AppendUint32(dst, v.cur.seg)
	dst = binary.BigEndian.AppendUint32(dst, v.cur.slot)
	dst = binary.BigEndian.AppendUint32(dst, v.cur.crc)
	dst = binary.BigEndian.AppendUint32(dst, v.epoch)
	dst = append(dst, v.prevKind)
	if v.prevKind == prevPointer {
		dst = binary.BigEndian.AppendUint32(dst, v.prev.seg)
		dst = binary.BigEndian.AppendUint32(dst, v.prev.slot)
		dst = binary.BigEndian.AppendUint32(dst, v.prev.crc)
	}
	return dst
}

func isPointer(val []byte) bool {
	switch {
	case len(val) == pointerLen:
		return val[0] == tagPointer && val[17] < prevPointer
	case len(val) == pointerPrevLen:
		return val[0] == tagPointer && val[17] == prevPointer
	}
	return false
}

// decodeSegValue decodes a value isPointer accepted.
func decodeSegValue(val []byte) segValue {
	v := segValue{
		cur:      pointer{binary.BigEndian.Uint32(val[1:]), binary.BigEndian.Uint32(val[5:]), binary.BigEndian.Uint32(val[9:])},
		epoch:    binary.BigEndian.Uint32(val[13:]),
		prevKind: val[17],
	}
	if len(val) == pointerPrevLen {
		v.prev = pointer{binary.BigEndian.Uint32(val[18:]), binary.BigEndian.Uint32(val[22:]), binary.BigEndian.Uint32(val[26:])}
	}
	return v
}

// decodePointer returns the slot a pointer value names.
func decodePointer(val []byte) pointer { return decodeSegValue(val).cur }

// pointerIn returns the slot a version's value names, if it is a pointer.
func pointerIn(val []byte) (pointer, bool) {
	if !isPointer(val) {
		return pointer{}, false
	}
	return decodePointer(val), true
}

// names reports whether p is slot slot of segment seg.
func (p pointer) names(seg, slot uint32) bool { return p.seg == seg && p.slot == slot }

// isData reports whether a version's value holds data (inline or in a
// segment) rather than a hole or zero marker.
func isData(val []byte) bool { return len(val) == BlockSize || isPointer(val) }

// versionBytes is what a version's value accounts for in space figures: a
// block for data wherever it lives, the value's length otherwise.
func versionBytes(valueLen int) uint64 {
	if valueLen == pointerLen || valueLen == pointerPrevLen {
		return BlockSize
	}
	return uint64(valueLen)
}

func checkMarker(id string, blk uint64, val []byte) error {
	if len(val) == 0 || (len(val) == 1 && val[0] == 'z') {
		return nil
	}
	return fmt.Errorf("blockstore: %s block %d: %w: value of %d bytes", id, blk, ErrCorrupt, len(val))
}
