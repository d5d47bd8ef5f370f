package cbt

import (
	"encoding/binary"
	"math/rand"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

func TestEncodeXenVectors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    uint64
		changed []uint32
		want    string
	}{
		// The vector from reference/xen_cbt.md: 4 MiB, blocks {0, 33}.
		{"xen vector", 4 << 20, []uint32{0, 33}, "gAAAAEAAAAA="},
		{"nothing changed", 4 << 20, nil, "AAAAAAAAAAA="},
		{"last block", 4 << 20, []uint32{63}, "AAAAAAAAAAE="},
		{"past the end is dropped", 4 << 20, []uint32{64, 1000}, "AAAAAAAAAAA="},
		{"partial byte", 3 * BlockSize, []uint32{0, 1, 2}, "4A=="},
		{"empty disk", 0, []uint32{0}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Encode(roaring.BitmapOf(tc.changed...), tc.size)
			if got != tc.want {
				t.Fatalf("Encode = %q, want %q", got, tc.want)
			}
		})
	}
}

// XO reads the bitmap four bytes at a time as big-endian words, one word per
// 2 MiB; a set bit anywhere in a word must mark that 2 MiB block.
func TestEncodeMatchesXenOrchestraWords(t *testing.T) {
	size := uint64(64 << 20)
	bm := roaring.BitmapOf(31, 32, 1000%1024)
	raw := Raw(bm, size)
	if len(raw)%4 != 0 {
		t.Fatalf("bitmap of a 2 MiB-multiple disk has %d bytes, not a multiple of 4", len(raw))
	}
	for k := 0; k < len(raw)/4; k++ {
		want := bm.IntersectsWithInterval(uint64(k)*32, uint64(k+1)*32)
		got := binary.BigEndian.Uint32(raw[4*k:]) != 0
		if got != want {
			t.Errorf("2 MiB block %d: XO sees %v, want %v", k, got, want)
		}
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		size := uint64(rng.Intn(1<<12)) * BlockSize / 2
		bm := roaring.New()
		for j := 0; j < rng.Intn(50); j++ {
			if n := Blocks(size); n > 0 {
				bm.Add(uint32(rng.Int63n(int64(n))))
			}
		}
		got, err := Decode(Encode(bm, size), size)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !got.Equals(bm) {
			t.Fatalf("size %d: round trip %v, want %v", size, got.ToArray(), bm.ToArray())
		}
	}
}

// Raw reads the bitmap word by word; check it against the definition, bit
// by bit, on every container kind roaring picks (arrays, dense bitmaps,
// runs), across 64 Ki-block container edges and with bits past the end.
func TestRawMatchesBitByBit(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 300; i++ {
		size := uint64(rng.Intn(3<<16)) * BlockSize / uint64(1+rng.Intn(3))
		n := Blocks(size) + uint64(rng.Intn(100))
		bm := roaring.New()
		if n > 0 {
			switch rng.Intn(3) {
			case 0: // sparse
				for j := 0; j < rng.Intn(200); j++ {
					bm.Add(uint32(rng.Int63n(int64(n))))
				}
			case 1: // dense
				for j := uint64(0); j < n; j++ {
					if rng.Intn(3) > 0 {
						bm.Add(uint32(j))
					}
				}
			case 2: // runs
				for j := 0; j < rng.Intn(20); j++ {
					lo := uint64(rng.Int63n(int64(n)))
					bm.AddRange(lo, min(n, lo+uint64(rng.Intn(70000))))
				}
				bm.RunOptimize()
			}
		}
		want := make([]byte, EncodedLen(size))
		for _, b := range bm.ToArray() {
			if uint64(b) < Blocks(size) {
				want[b>>3] |= 0x80 >> (b & 7)
			}
		}
		if got := Raw(bm, size); string(got) != string(want) {
			t.Fatalf("size %d, %d blocks set: Raw differs from the bit-by-bit bitmap", size, bm.GetCardinality())
		}
	}
}

func TestDecodeRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		size     uint64
	}{
		{"not base64", "!!!!", 4 << 20},
		{"no padding", "gAAAAEAAAAA", 4 << 20},
		{"too short", "gAAA", 4 << 20},
		{"too long", "gAAAAEAAAAAA", 4 << 20},
		{"bit past the end", "4Q==", 3 * BlockSize},
		{"line break", "gAAAAEAA\nAAA=", 4 << 20},
		{"carriage return only", "\r", 0},
	} {
		if _, err := Decode(tc.in, tc.size); err == nil {
			t.Errorf("%s: Decode(%q) succeeded", tc.name, tc.in)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("gAAAAEAAAAA=", uint32(64))
	f.Add("", uint32(0))
	f.Fuzz(func(t *testing.T, s string, blocks uint32) {
		size := uint64(blocks%(1<<20)) * BlockSize
		bm, err := Decode(s, size)
		if err != nil {
			return
		}
		if again := Encode(bm, size); again != s {
			t.Fatalf("Decode then Encode: %q, want %q", again, s)
		}
	})
}
