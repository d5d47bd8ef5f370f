package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/internal/datadir"
	"github.com/vdiskd/vdiskd/mgmt/kv"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// BenchmarkStart starts the real daemon on a data directory holding n idle
// VDIs and measures the time until it says it is ready (the store opened,
// the volume index built, both listeners up), then its resident memory
// (rss-MiB). SPEC §7: start-up with 10,000 VDIs < 5 s.
//
//	go test -run '^$' -bench BenchmarkStart -benchtime 5x ./cmd/vdiskd
func BenchmarkStart(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "vdiskd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("vdis=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			stop, _ := startDaemon(b, bin, dir) // first start: the default vPool and admin
			stop()
			seedStore(b, dir, n)
			var rss float64
			for b.Loop() {
				stop, pid := startDaemon(b, bin, dir)
				b.StopTimer()
				rss = residentMiB(b, pid)
				stop()
				b.StartTimer()
			}
			b.ReportMetric(rss, "rss-MiB")
		})
	}
}

// startDaemon runs vdiskd on dir until it logs that it is ready; stop
// sends SIGTERM and waits for a clean exit.
func startDaemon(b *testing.B, bin, dir string) (stop func(), pid int) {
	cmd := exec.Command(bin, "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "VDISKD_ADMIN_PASSWORD=bench-password")
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(errPipe)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), "vdiskd ready") {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				b.Fatalf("vdiskd exited: %v", err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			b.Fatal("vdiskd did not stop within 30 s of SIGTERM")
		}
	}
	select {
	case ok := <-ready:
		if !ok {
			stop()
			b.Fatal("vdiskd exited before it was ready")
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		b.Fatal("vdiskd was not ready within 60 s")
	}
	return stop, cmd.Process.Pid
}

// seedStore adds n VDIs to the default vPool of a stopped daemon's data
// directory, as n VDI.create calls would.
func seedStore(b *testing.B, dir string, n int) {
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
func residentMiB(b *testing.B, pid int) float64 {
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
