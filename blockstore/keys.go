package blockstore

import (
	"encoding/binary"
	"fmt"
)

// Key space. Every key starts with a tag byte; fixed-width big-endian
// fields keep the default bytewise comparer ordering them correctly (the
// design note measured it 15-25% faster on seeks than a Split comparer).
//
//	'd' lineage block ^gen           data version of one 4 KiB block (25 bytes)
//	'c' lineage start end            live-interval change marker, 64 KiB blocks [start,end) (u64 each)
//	'i' lineage end                  sealed interval bitmap (roaring), generations (prev,end]
//	'l' lineage                      lineage record (JSON)
//	'v' volume-id                    volume record (JSON)
//	'g' lineage lo hi                pending garbage collection of generations (lo,hi]
//	'r' seg(4) slot(4)               the data key a run of slots from here was written for (25 or 29 bytes)
//	'M' name                         store-wide metadata
//	'x' key                          a caller's record, committed with volume changes (Change.Records)
//
// The generation is stored inverted so that newer versions of a block sort
// first: SeekGE(d|L|b|^g) lands on the newest version at or below g.
const (
	tagData      = 'd'
	tagMarker    = 'c'
	tagInterval  = 'i'
	tagLineage   = 'l'
	tagVolume    = 'v'
	tagGC        = 'g'
	tagStoreMeta = 'M'
	tagReverse   = 'r'
	tagRecord    = 'x'
)

func recordKey(key string) []byte { return append([]byte{tagRecord}, key...) }

const dataKeyLen = 25

func dataKey(dst []byte, lin, block, gen uint64) []byte {
	dst = append(dst[:0], tagData)
	dst = binary.BigEndian.AppendUint64(dst, lin)
	dst = binary.BigEndian.AppendUint64(dst, block)
	return binary.BigEndian.AppendUint64(dst, ^gen)
}

// decodeDataKey returns the block and generation of a data key of lineage lin;
// ok is false for any other key.
func decodeDataKey(k []byte, lin uint64) (block, gen uint64, ok bool) {
	if len(k) != dataKeyLen || k[0] != tagData || binary.BigEndian.Uint64(k[1:]) != lin {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(k[9:]), ^binary.BigEndian.Uint64(k[17:]), true
}

// lineageSpan returns [start, end) covering every key with the given tag of
// lineage lin.
func lineageSpan(tag byte, lin uint64) (start, end []byte) {
	start = binary.BigEndian.AppendUint64([]byte{tag}, lin)
	end = binary.BigEndian.AppendUint64([]byte{tag}, lin+1)
	if lin == ^uint64(0) {
		end = []byte{tag + 1}
	}
	return start, end
}

// blockSpan returns [start, end) covering every version of blocks [first, last)
// of lineage lin.
func blockSpan(lin, first, last uint64) (start, end []byte) {
	return dataKey(nil, lin, first, ^uint64(0)), dataKey(nil, lin, last, ^uint64(0))
}

// markerKey names 64 KiB blocks [start, end). end can be 2^32 (the last
// block of a MaxSize volume), so both are 64-bit.
func markerKey(lin, start, end uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{tagMarker}, lin)
	k = binary.BigEndian.AppendUint64(k, start)
	return binary.BigEndian.AppendUint64(k, end)
}

func decodeMarkerKey(k []byte) (lin, start, end uint64, err error) {
	if len(k) != 25 || k[0] != tagMarker {
		return 0, 0, 0, fmt.Errorf("%w: bad marker key %x", ErrCorrupt, k)
	}
	lin, start, end = binary.BigEndian.Uint64(k[1:]), binary.BigEndian.Uint64(k[9:]), binary.BigEndian.Uint64(k[17:])
	if start >= end || end > 1<<32 {
		return 0, 0, 0, fmt.Errorf("%w: marker [%d,%d) of lineage %d", ErrCorrupt, start, end, lin)
	}
	return lin, start, end, nil
}

func intervalKey(lin, end uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{tagInterval}, lin)
	return binary.BigEndian.AppendUint64(k, end)
}

func decodeIntervalKey(k []byte) (lin, end uint64, err error) {
	if len(k) != 17 || k[0] != tagInterval {
		return 0, 0, fmt.Errorf("%w: bad interval key %x", ErrCorrupt, k)
	}
	return binary.BigEndian.Uint64(k[1:]), binary.BigEndian.Uint64(k[9:]), nil
}

func lineageKey(lin uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{tagLineage}, lin)
}

func volumeKey(id string) []byte { return append([]byte{tagVolume}, id...) }

func gcKey(lin, lo, hi uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{tagGC}, lin)
	k = binary.BigEndian.AppendUint64(k, lo)
	return binary.BigEndian.AppendUint64(k, hi)
}

func decodeGCKey(k []byte) (lin, lo, hi uint64, err error) {
	if len(k) != 25 || k[0] != tagGC {
		return 0, 0, 0, fmt.Errorf("%w: bad gc key %x", ErrCorrupt, k)
	}
	return binary.BigEndian.Uint64(k[1:]), binary.BigEndian.Uint64(k[9:]), binary.BigEndian.Uint64(k[17:]), nil
}

func storeMetaKey(name string) []byte { return append([]byte{tagStoreMeta}, name...) }

// tagSpan returns [start, end) covering every key with the tag.
func tagSpan(tag byte) (start, end []byte) { return []byte{tag}, []byte{tag + 1} }

// reverseKey names the first slot of a run: consecutive slots of one
// segment that one write filled with consecutive blocks of one lineage at
// one generation. Its value (reverseValue) is the data key of the run's
// first block and the run's length: recovery walks the slots of segments
// that may have lost pages, and segment reclaim the slots of a segment,
// without a scan of every data key. One key per run rather than per slot
// halves the keys a large write adds to pebble.
func reverseKey(dst []byte, seg, slot uint32) []byte {
	dst = append(dst[:0], tagReverse)
	dst = binary.BigEndian.AppendUint32(dst, seg)
	return binary.BigEndian.AppendUint32(dst, slot)
}

func decodeReverseKey(k []byte) (seg, slot uint32, err error) {
	if len(k) != 9 || k[0] != tagReverse {
		return 0, 0, fmt.Errorf("%w: bad reverse key %x", ErrCorrupt, k)
	}
	return binary.BigEndian.Uint32(k[1:]), binary.BigEndian.Uint32(k[5:]), nil
}

// slotRun is what a reverse key says: slots [slot, slot+n) hold blocks
// [block, block+n) of first's lineage at first's generation.
type slotRun struct {
	first []byte // data key of the run's first block
	n     uint32
}

// reverseValue encodes a run: the first block's data key, then the
// length unless it is 1 (the form of every reverse key before runs, which
// therefore still reads).
func reverseValue(dst, first []byte, n uint32) []byte {
	dst = append(dst[:0], first...)
	if n != 1 {
		dst = binary.BigEndian.AppendUint32(dst, n)
	}
	return dst
}

// decodeReverse reads a reverse key and its value. The run's first key
// aliases v.
func decodeReverse(k, v []byte) (seg, slot uint32, run slotRun, err error) {
	if seg, slot, err = decodeReverseKey(k); err != nil {
		return 0, 0, slotRun{}, err
	}
	switch {
	case len(v) == dataKeyLen:
		run = slotRun{first: v, n: 1}
	case len(v) == dataKeyLen+4:
		run = slotRun{first: v[:dataKeyLen], n: binary.BigEndian.Uint32(v[dataKeyLen:])}
	default:
		return 0, 0, slotRun{}, fmt.Errorf("%w: reverse key %x holds %d bytes", ErrCorrupt, k, len(v))
	}
	blk := binary.BigEndian.Uint64(run.first[9:])
	if run.first[0] != tagData || run.n < 2 && len(v) != dataKeyLen ||
		uint64(slot)+uint64(run.n) > 1<<32 || blk+uint64(run.n) < blk {
		return 0, 0, slotRun{}, fmt.Errorf("%w: reverse key %x holds %x", ErrCorrupt, k, v)
	}
	return seg, slot, run, nil
}

// keyAt is the data key of the run's i-th block.
func (r slotRun) keyAt(dst []byte, i uint32) []byte {
	dst = append(dst[:0], r.first...)
	binary.BigEndian.PutUint64(dst[9:], binary.BigEndian.Uint64(r.first[9:])+uint64(i))
	return dst
}
