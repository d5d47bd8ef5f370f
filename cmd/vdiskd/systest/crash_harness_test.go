package systest

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"testing"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// What the SIGKILL tests (crash_data_test.go, crash_ops_test.go) share:
// the seed and round counts, killing and restarting the daemon, REST calls
// that may meet a dying daemon, and whole-export reads.

// crashSeed is the base seed of a crash test: VDISKD_CRASH_SEED or a fixed
// default, so a failure is replayed with the same kill schedule (the
// goroutines' timing still varies).
func crashSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(20260107)
	if s := os.Getenv("VDISKD_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("VDISKD_CRASH_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with VDISKD_CRASH_SEED=%d)", seed, seed)
	return seed
}

// crashRounds picks a round count: more under VDISKD_SOAK=1, fewer under
// -race or -short (the race detector slows the daemon several times).
func crashRounds(normal, soak, short int) int {
	switch {
	case os.Getenv("VDISKD_SOAK") == "1":
		return soak
	case vdiskdtest.Race || testing.Short():
		return short
	}
	return normal
}

func crashRand(seed, round uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, round)) }

// destroy destroys a VDI and fails the test unless that worked.
func (d *daemon) destroy(t *testing.T, vdi string) {
	t.Helper()
	st, eb, err := d.TryCall(http.MethodDelete, "/vdis/"+vdi, nil, nil)
	if err != nil || st >= 300 {
		t.Fatalf("destroy %s: HTTP %d %+v %v", vdi, st, eb, err)
	}
}

// vdis lists every VDI the API shows.
func (d *daemon) vdis(t *testing.T) map[string]api.VDI {
	t.Helper()
	var page struct{ Data []api.VDI }
	d.MustCall(t, http.MethodGet, "/vdis", nil, &page)
	out := map[string]api.VDI{}
	for _, v := range page.Data {
		out[v.UUID] = v
	}
	return out
}

// dialExport opens a VDI's export with the admin token: GO, simple
// replies.
func (d *daemon) dialExport(t *testing.T, vdi string) *nbdtest.Client {
	t.Helper()
	return nbdtest.Connect(t, "tcp", d.NBDHost, nbdtest.Negotiation{Export: d.ExportName(t, vdi)})
}

// readExport reads a whole VDI over NBD and waits until the connection's
// VBD is gone (detaching follows the disconnect asynchronously, and an
// attached VDI refuses destroy, resize and, attached writable, copy).
func (d *daemon) readExport(t *testing.T, vdi string) []byte {
	t.Helper()
	c := d.dialExport(t, vdi)
	buf := c.ReadAll()
	c.Close()
	protoWaitVBDs(t, d, vdi, 0)
	return buf
}

// changedBlocks is list_changed_blocks(from -> to) as a set of 64 KiB block
// indexes (the bitmap is XenAPI's: block i at byte i>>3, mask 0x80>>(i&7)).
func (d *daemon) changedBlocks(t *testing.T, from, to string) map[int]bool {
	t.Helper()
	var cb api.ChangedBlocks
	d.MustCall(t, http.MethodGet, "/vdis/"+to+"/list_changed_blocks?vdi_from="+from, nil, &cb)
	raw, err := base64.StdEncoding.DecodeString(cb.Bitmap)
	if err != nil {
		t.Fatalf("list_changed_blocks %s -> %s: %v", from, to, err)
	}
	out := map[int]bool{}
	for i := 0; i < len(raw)*8; i++ {
		if raw[i>>3]&(0x80>>(i&7)) != 0 {
			out[i] = true
		}
	}
	return out
}

// checkCBTCovers fails the test for every 64 KiB block that differs
// between the exports of from and to but is not in list_changed_blocks:
// CBT may over-report after a crash, never under-report. It returns how
// many blocks differ and how many list_changed_blocks marks.
func (d *daemon) checkCBTCovers(t *testing.T, what, from, to string, fromData, toData []byte) (differ, marked int) {
	t.Helper()
	const cbtBlock = 64 << 10
	changed := d.changedBlocks(t, from, to)
	var missed []int
	for off := 0; off < len(toData) && off < len(fromData); off += cbtBlock {
		end := min(off+cbtBlock, len(toData))
		if !bytes.Equal(fromData[off:end], toData[off:end]) {
			differ++
			if !changed[off/cbtBlock] {
				missed = append(missed, off/cbtBlock)
			}
		}
	}
	if len(missed) > 0 {
		t.Errorf("%s: list_changed_blocks(%s -> %s) under-reports: %d of %d differing 64 KiB blocks are not marked, first %v",
			what, from, to, len(missed), differ, missed[:min(len(missed), 10)])
	}
	return differ, len(changed)
}
