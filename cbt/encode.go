package cbt

import (
	"encoding/base64"
	"fmt"
	"math/bits"
	"strings"

	"github.com/RoaringBitmap/roaring/v2"
)

// Blocks returns how many 64 KiB blocks cover a disk of size bytes.
func Blocks(size uint64) uint64 { return (size + BlockSize - 1) / BlockSize }

// EncodedLen returns the length in bytes of the XenAPI bitmap for a disk of
// size bytes: one bit per 64 KiB block, rounded up to whole bytes.
func EncodedLen(size uint64) uint64 { return (Blocks(size) + 7) / 8 }

// Encode renders changed as VDI.list_changed_blocks does: block i is at byte
// i>>3 under mask 0x80>>(i&7) (most significant bit first), the whole
// bitmap in standard base64 with padding. Blocks at or past the end of a disk
// of size bytes are dropped, so the result always has EncodedLen(size) bytes.
func Encode(changed *roaring.Bitmap, size uint64) string {
	return base64.StdEncoding.EncodeToString(Raw(changed, size))
}

// Raw is Encode without the base64 step. It goes through the bitmap's dense
// 64-bit words rather than bit by bit: a nearly full interval of a 2 GiB disk
// took 150 µs bit by bit, most of a list_changed_blocks call.
func Raw(changed *roaring.Bitmap, size uint64) []byte {
	out := make([]byte, EncodedLen(size))
	limit := Blocks(size)
	if changed.IsEmpty() || limit == 0 {
		return out
	}
	if uint64(changed.Maximum()) >= limit {
		changed = changed.Clone()
		changed.RemoveRange(limit, uint64(1)<<32)
	}
	words := make([]uint64, changed.DenseSize())
	changed.WriteDenseTo(words)
	// Word w holds blocks 64w.. least significant bit first; XenAPI wants
	// each byte most significant bit first.
	for w, x := range words {
		for k := 0; x != 0; k++ {
			if i := w*8 + k; byte(x) != 0 && i < len(out) {
				out[i] = bits.Reverse8(byte(x))
			}
			x >>= 8
		}
	}
	return out
}

// Decode parses a XenAPI changed-block bitmap for a disk of size bytes. It
// refuses anything Encode would not produce: bad base64, a wrong length, or
// bits set past the last block.
func Decode(s string, size uint64) (*roaring.Bitmap, error) {
	// NB: even Strict base64 skips CR and LF; XenAPI's answer has none.
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return nil, fmt.Errorf("cbt: decode bitmap: line break at byte %d", i)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("cbt: decode bitmap: %w", err)
	}
	if uint64(len(raw)) != EncodedLen(size) {
		return nil, fmt.Errorf("cbt: decode bitmap: %d bytes, want %d for a %d-byte disk",
			len(raw), EncodedLen(size), size)
	}
	bm := roaring.New()
	limit := Blocks(size)
	for i, b := range raw {
		for bit := uint64(0); b != 0 && bit < 8; bit++ {
			if b&(0x80>>bit) == 0 {
				continue
			}
			blk := uint64(i)*8 + bit
			if blk >= limit {
				return nil, fmt.Errorf("cbt: decode bitmap: block %d set past the end (%d blocks)", blk, limit)
			}
			bm.Add(uint32(blk))
			b &^= 0x80 >> bit
		}
	}
	return bm, nil
}
