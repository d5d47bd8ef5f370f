package blockstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// A data version's value is one of:
//
//	4096 bytes                 the block itself, inline in pebble
//	'p' seg(4) slot(4) crc(4)  the block is slot of segment seg, with
//	                           this CRC-32C (segment.go)
//	""                         discarded: reads zero, unallocated
//	"z"                        zeroed, allocated
//
// Both data forms may sit side by side: a store that turns segments on or
// off keeps reading what it wrote before.
const pointerLen = 13

const tagPointer = 'p'

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func blockCRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

type pointer struct {
	seg, slot, crc uint32
}

func (p pointer) append(dst []byte) []byte {
	dst = append(dst, tagPointer)
	dst = binary.BigEndian.AppendUint32(dst, p.seg)
	dst = binary.BigEndian.AppendUint32(dst, p.slot)
	return binary.BigEndian.AppendUint32(dst, p.crc)
}

func isPointer(val []byte) bool { return len(val) == pointerLen && val[0] == tagPointer }

func decodePointer(val []byte) pointer {
	return pointer{
		seg:  binary.BigEndian.Uint32(val[1:]),
		slot: binary.BigEndian.Uint32(val[5:]),
		crc:  binary.BigEndian.Uint32(val[9:]),
	}
}

// isData reports whether a version's value holds data (inline or in a
// segment) rather than a hole or zero marker.
func isData(val []byte) bool { return len(val) == BlockSize || isPointer(val) }

// versionBytes is what a version's value accounts for in space figures: a
// block for data wherever it lives, the value's length otherwise.
func versionBytes(valueLen int) uint64 {
	if valueLen == pointerLen {
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
