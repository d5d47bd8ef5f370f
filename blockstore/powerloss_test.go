package blockstore

import (
	"bytes"
	"flag"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var (
	powerLossRounds = flag.Int("powerloss.rounds", 0, "rounds of TestPowerLoss per mode (0: 300, 60 under -short)")
	powerLossSeed   = flag.Uint64("powerloss.seed", 0, "run only the round of this seed (a failure names it)")
)

// TestPowerLoss cuts the power under a random sequence of writes, zeroes,
// trims, flushes and snapshots: pebble's crashable in-memory file system
// keeps everything synced and a random share of the 4 KiB pages that were
// not (its CrashClone), in the WAL, the tables and the segments alike. The
// store reopened on that image must show, for every block, its last
// durable content (as of the last FLUSH, FUA write or snapshot covering
// it) or the content of a write acknowledged after that: never anything
// else. Every snapshot whose call returned must exist with exactly the
// contents it froze. SIGKILL tests (crash_test.go) cannot see this: the
// page cache survives a killed process.
func TestPowerLoss(t *testing.T) {
	rounds := *powerLossRounds
	if rounds <= 0 {
		// A collector that deletes before it syncs (gc.go) first failed
		// at round 245 of 400.
		rounds = 300
		if testing.Short() {
			rounds = 60
		}
	}
	for _, form := range plForms {
		name, segs := form.name, form.opts.Segments
		t.Run(name, func(t *testing.T) {
			fellBack := 0
			for r := range rounds {
				if *powerLossSeed != 0 && uint64(r+1) != *powerLossSeed {
					continue
				}
				fellBack += powerLossRound(t, form.opts, uint64(r+1))
				if t.Failed() {
					t.Logf("replay with -run 'TestPowerLoss/%s' -powerloss.rounds=%d -powerloss.seed=%d", name, r+1, r+1)
					return
				}
			}
			t.Logf("%d rounds, %d pointers fell back to their prev", rounds, fellBack)
			if segs && fellBack == 0 && *powerLossSeed == 0 {
				t.Errorf("no round lost a slot its pointer kept: the rounds never reached the case recovery is for")
			}
		})
	}
}

const (
	plBlocks = 256 // a 1 MiB volume
	plSize   = plBlocks * BlockSize
)

// plBlock is what the checker knows of one block: the digests it may
// legitimately read as after a power cut.
type plBlock struct {
	durable uint32   // content as of the last sync covering it
	since   []uint32 // acknowledged after that, any of which may survive
	cur     uint32   // what it reads now
}

// powerLossRound runs one round and returns how many pointers recovery
// undid.
func powerLossRound(t *testing.T, form Options, seed uint64) (fellBack int) {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b9))
	fs := vfs.NewCrashableMem()
	segs := form.Segments
	opts := Options{FS: fs, Segments: segs, tiles: form.tiles, GCInterval: -1, MemTableSize: 256 << 10, CacheSize: 8 << 20,
		Logf: func(string, ...any) {}, segmentSlots: 16}
	s, err := Open("store", opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(CreateRequest{ID: "v", Pool: "p", Size: plSize}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	d, err := s.Attach("v")
	if err != nil {
		t.Fatal(err)
	}
	zero := crc32.ChecksumIEEE(make([]byte, BlockSize))
	blocks := make([]plBlock, plBlocks)
	for i := range blocks {
		blocks[i] = plBlock{durable: zero, cur: zero}
	}
	image := make([]byte, plSize) // the volume as acknowledged
	snaps := map[string]uint32{}  // snapshot -> digest of its whole image
	ops := 30 + rng.IntN(150)
	var log []string
	for i := range ops {
		off := uint64(rng.IntN(plBlocks)) * BlockSize
		n := uint64(1+rng.IntN(16)) * BlockSize
		if rng.IntN(4) == 0 { // sub-block: read-modify-write
			off += uint64(rng.IntN(BlockSize))
			n = uint64(1 + rng.IntN(3*BlockSize))
		}
		n = min(n, plSize-off)
		var flags Flags
		if rng.IntN(10) == 0 {
			flags |= FUA
		}
		switch k := rng.IntN(23); {
		case k < 13:
			p := make([]byte, n)
			for j := range p {
				p[j] = byte(rng.Uint32())
			}
			if rng.IntN(8) == 0 {
				clear(p[:min(n, BlockSize)]) // zero blocks take the marker path
			}
			if err := d.Write(off, p, flags); err != nil {
				t.Fatal(err)
			}
			copy(image[off:], p)
			log = append(log, fmt.Sprintf("write [%d,+%d) %d", off, n, flags))
		case k < 15:
			noHole := rng.IntN(2) == 0
			f := flags
			if noHole {
				f |= NoHole
			}
			if err := d.Zero(off, n, f); err != nil {
				t.Fatal(err)
			}
			clear(image[off : off+n])
			log = append(log, fmt.Sprintf("zero [%d,+%d) %d", off, n, f))
		case k < 16:
			if err := d.Trim(off, n, flags); err != nil {
				t.Fatal(err)
			}
			clear(image[off : off+n])
			log = append(log, fmt.Sprintf("trim [%d,+%d) %d", off, n, flags))
		case k < 18:
			if err := d.Flush(); err != nil {
				t.Fatal(err)
			}
			for b := range blocks {
				blocks[b].durable, blocks[b].since = blocks[b].cur, nil
			}
			log = append(log, "flush")
			continue
		case k < 19:
			id := fmt.Sprintf("s%d", i)
			if _, err := s.Snapshot(SnapshotRequest{Source: "v", ID: id}); err != nil {
				t.Fatal(err)
			}
			// A snapshot holds every acknowledged write, durably.
			snaps[id] = crc32.ChecksumIEEE(image)
			for b := range blocks {
				blocks[b].durable, blocks[b].since = blocks[b].cur, nil
			}
			log = append(log, "snapshot "+id)
			continue
		case k < 20 && len(snaps) > 0:
			// Versions only that snapshot saw become garbage, and so do
			// versions only the head sees once the head replaces them.
			ids := make([]string, 0, len(snaps))
			for id := range snaps {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			id := ids[rng.IntN(len(ids))]
			if err := s.Destroy(id); err != nil {
				t.Fatal(err)
			}
			delete(snaps, id)
			log = append(log, "destroy "+id)
			continue
		case k < 21:
			if err := s.CollectGarbage(); err != nil {
				t.Fatal(err)
			}
			log = append(log, "gc")
			if segs {
				maxLive := []float64{0.5, 1.0}[rng.IntN(2)]
				st, err := s.ReclaimSegments(maxLive)
				if err != nil {
					t.Fatal(err)
				}
				log = append(log, fmt.Sprintf("reclaim %.1f: %+v", maxLive, st))
			}
			continue
		default:
			// pebble writes its memtable out on its own schedule: the
			// pointers become durable with no FLUSH from the client, their
			// slots maybe not.
			if err := s.db.Flush(); err != nil {
				t.Fatal(err)
			}
			log = append(log, "pebble memtable flush")
			continue
		}
		for b := off / BlockSize; b <= (off+n-1)/BlockSize; b++ {
			c := crc32.ChecksumIEEE(image[b*BlockSize : (b+1)*BlockSize])
			bl := &blocks[b]
			bl.cur = c
			if flags&FUA != 0 {
				bl.durable, bl.since = c, nil
			} else {
				bl.since = append(bl.since, c)
			}
		}
	}

	// The power goes: keep a random share of what was never synced.
	keep := rng.IntN(101)
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: keep, RNG: rng})
	log = append(log, fmt.Sprintf("power cut keeping %d%% of unsynced pages", keep))
	d.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	opts.FS = crashed
	opts.Warnf = func(format string, args ...any) {
		var n int
		if _, err := fmt.Sscanf(fmt.Sprintf(format, args...), "blockstore: power-loss recovery: %d", &n); err == nil {
			fellBack += n
		}
	}
	s2, err := Open("store", opts)
	if err != nil {
		t.Fatalf("seed %d: open after the power cut: %v\n%s", seed, err, joinLog(log))
	}
	defer func() {
		if err := s2.Close(); err != nil {
			t.Error(err)
		}
	}()
	d2, err := s2.Attach("v")
	if err != nil {
		t.Fatalf("seed %d: attach after the power cut: %v", seed, err)
	}
	got := make([]byte, plSize)
	if _, err := d2.ReadAt(got, 0); err != nil {
		d2.Close()
		t.Fatalf("seed %d: read after the power cut: %v\n%s", seed, err, joinLog(log))
	}
	d2.Close()
	for b := range blocks {
		c := crc32.ChecksumIEEE(got[b*BlockSize : (b+1)*BlockSize])
		bl := blocks[b]
		if c == bl.durable {
			continue
		}
		ok := false
		for _, x := range bl.since {
			ok = ok || x == c
		}
		if !ok {
			t.Errorf("seed %d: block %d reads %08x after the power cut: neither its durable %08x nor one of the %d writes acknowledged since %08x%s",
				seed, b, c, bl.durable, len(bl.since), bl.since, zeroNote(c, zero))
		}
	}
	for id, want := range snaps {
		sd, err := s2.Attach(id)
		if err != nil {
			t.Errorf("seed %d: snapshot %s returned before the cut but: %v", seed, id, err)
			continue
		}
		img := make([]byte, plSize)
		if _, err := sd.ReadAt(img, 0); err != nil {
			t.Errorf("seed %d: read snapshot %s: %v", seed, id, err)
		} else if crc32.ChecksumIEEE(img) != want {
			t.Errorf("seed %d: snapshot %s differs from what it froze", seed, id)
		}
		sd.Close()
	}
	if t.Failed() {
		t.Logf("operations:\n%s", joinLog(log))
	}
	return fellBack
}

func zeroNote(c, zero uint32) string {
	if c == zero {
		return " (zeros)"
	}
	return ""
}

func joinLog(log []string) string {
	var b bytes.Buffer
	for i, l := range log {
		fmt.Fprintf(&b, "  %3d %s\n", i, l)
	}
	return b.String()
}

// plForms are the store's forms the power-loss tests cut the power under:
// data in pebble, in segments with a pointer per block, in segments with
// tiles.
var plForms = []struct {
	name string
	opts Options
}{
	{"inline", Options{}},
	{"segments", Options{Segments: true}},
	{"tiles", Options{Segments: true, tiles: true}},
}

// TestFUATrimOfTrimmedBlocks: a FUA trim over blocks an unsynced trim
// already discarded changes nothing, and pebble syncs nothing for an empty
// batch; the FUA must still make the first trim durable. TestPowerLoss
// found this at round 2,325 of 3,000.
func TestFUATrimOfTrimmedBlocks(t *testing.T) {
	for _, form := range plForms {
		fs := vfs.NewCrashableMem()
		segs := form.opts.Segments
		opts := Options{FS: fs, Segments: segs, tiles: form.opts.tiles, GCInterval: -1, Logf: func(string, ...any) {}}
		s, err := Open("store", opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(CreateRequest{ID: "v", Pool: "p", Size: plSize}); err != nil {
			t.Fatal(err)
		}
		d, err := s.Attach("v")
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Write(0, fill(7, 8*BlockSize), FUA); err != nil {
			t.Fatal(err)
		}
		// A snapshot makes the lineage shared: trims write discard markers.
		if _, err := s.Snapshot(SnapshotRequest{Source: "v", ID: "s"}); err != nil {
			t.Fatal(err)
		}
		if err := d.Trim(0, 8*BlockSize, 0); err != nil {
			t.Fatal(err)
		}
		if err := d.Trim(0, 8*BlockSize, FUA); err != nil {
			t.Fatal(err)
		}
		crashed := fs.CrashClone(vfs.CrashCloneCfg{}) // only what was synced
		d.Close()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		opts.FS = crashed
		s2, err := Open("store", opts)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := s2.Attach("v")
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 8*BlockSize)
		if _, err := d2.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, make([]byte, len(got))) {
			t.Errorf("%s: blocks a FUA trim covered read their old data after a power cut", form.name)
		}
		d2.Close()
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
