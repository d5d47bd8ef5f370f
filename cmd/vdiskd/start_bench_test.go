package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/internal/datadir"
	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/kv"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// TestMain removes the binaries vdiskdtest built for BenchmarkStart.
func TestMain(m *testing.M) { vdiskdtest.Main(m) }

// BenchmarkStart starts the real daemon on a data directory holding n idle
// VDIs and measures the time until it says it is ready (the store opened,
// the volume index built, both listeners up), then its resident memory
// (rss-MiB). SPEC §7: start-up with 10,000 VDIs < 5 s.
//
//	go test -run '^$' -bench BenchmarkStart -benchtime 5x ./cmd/vdiskd
func BenchmarkStart(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("vdis=%d", n), func(b *testing.B) {
			opts := vdiskdtest.Options{DataDir: b.TempDir(), NoLogin: true}
			// The first start makes the default vPool and the admin.
			vdiskdtest.Start(b, opts).Stop(b)
			seedStore(b, opts.DataDir, n)
			var rss float64
			for b.Loop() {
				d := vdiskdtest.Launch(b, opts)
				if err := d.WaitReady(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				rss = residentMiB(b, d.PID())
				d.Stop(b)
				b.StartTimer()
			}
			b.ReportMetric(rss, "rss-MiB")
		})
	}
}

// seedStore adds n VDIs to the default vPool of a stopped daemon's data
// directory, as n VDI.create calls would.
func seedStore(b testing.TB, dir string, n int) {
	db, err := kv.Open(filepath.Join(dir, "mgmt.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	pool := ""
	kv.ScanJSON(db, "vpool/", func(_ string, p *volume.Pool) error {
		if p.Default {
			pool = p.GUID
		}
		return nil
	})
	db.Close()
	if pool == "" {
		b.Fatal("no default vPool")
	}
	d, err := datadir.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	st, err := blockstore.Open(d.Store(), blockstore.Options{Logf: func(string, ...any) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := range n {
		a := volume.Attrs{Xen: volume.XenAttrs{NameLabel: fmt.Sprint("vdi-", i)}}
		if _, err := st.Create(blockstore.CreateRequest{ID: uuid.NewString(), Pool: pool, Size: 1 << 30, Attrs: a.Encode()}); err != nil {
			b.Fatal(err)
		}
	}
}

// residentMiB reads a process's VmRSS.
func residentMiB(b testing.TB, pid int) float64 {
	buf, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(buf), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
