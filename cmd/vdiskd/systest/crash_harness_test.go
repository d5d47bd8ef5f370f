package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
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
	case raceEnabled || testing.Short():
		return short
	}
	return normal
}

func crashRand(seed, round uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, round)) }

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("vdiskd still runs 10s after SIGKILL")
	}
}

// relaunch starts vdiskd again on the data dir of a dead daemon and logs
// in (tokens survive a restart, but a fresh one proves login works).
func (d *daemon) relaunch(t *testing.T) *daemon {
	t.Helper()
	nd := launchVdiskd(t, d.DataDir)
	nd.Token = nd.login(t, "admin", testAdminPassword)
	return nd
}

// tryCall is a REST call that may meet a dying daemon: a transport error is
// returned, never fatal. out is decoded from a 2xx answer with a body; an
// error body goes into the returned *api.ErrorBody.
func (d *daemon) tryCall(method, path string, body, out any) (int, *api.ErrorBody, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.API+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+d.Token)
	resp, err := restClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode >= 300 {
		eb := &api.ErrorBody{}
		json.Unmarshal(b, eb)
		return resp.StatusCode, eb, nil
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, nil, fmt.Errorf("decoding %q: %w", b, err)
		}
	}
	return resp.StatusCode, nil, nil
}

// destroy destroys a VDI and fails the test unless that worked.
func (d *daemon) destroy(t *testing.T, vdi string) {
	t.Helper()
	st, eb, err := d.tryCall(http.MethodDelete, "/vdis/"+vdi, nil, nil)
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

// dialExport opens a VDI's export with the admin token.
func (d *daemon) dialExport(t *testing.T, vdi string) *nbdWire {
	t.Helper()
	c, err := dialNBD(d.NBDHost, d.ExportName(t, vdi))
	if err != nil {
		t.Fatalf("NBD export of %s: %v", vdi, err)
	}
	return c
}

// readExport reads a whole VDI over NBD and waits until the connection's
// VBD is gone (detaching follows the disconnect asynchronously, and an
// attached VDI refuses destroy, resize and, attached writable, copy).
func (d *daemon) readExport(t *testing.T, vdi string) []byte {
	t.Helper()
	c := d.dialExport(t, vdi)
	buf := make([]byte, c.Size)
	err := c.ReadAt(buf, 0)
	c.Close()
	if err != nil {
		t.Fatalf("reading the export of %s: %v", vdi, err)
	}
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
