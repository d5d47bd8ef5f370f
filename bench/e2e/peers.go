package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The copy-on-write peers: qemu-nbd on qcow2 images whose writes copy,
// as vdiskd's do with a snapshot present (nbdkit-file and qemu-nbd on the
// raw file write in place).
//
//   - qcow2-snapshot: a qcow2 copy of the raw file with an internal
//     snapshot, deleted and taken again before each round, so each round's
//     first write to a cluster copies it, as in the round before;
//   - qcow2-overlay: a fresh qcow2 overlay over a raw backing file (a copy
//     of the raw file nothing writes) before each round.
//
// Each round restarts qemu-nbd, since qemu-img may not change an image a
// server holds open.

// startCOW makes the image of a copy-on-write peer and a server whose
// prepare (re)starts qemu-nbd on a fresh snapshot or overlay.
func (h *harness) startCOW(ctx context.Context, name, raw string) (*server, error) {
	s := &server{name: name}
	img := filepath.Join(h.work, name+".qcow2")
	var fresh []string // the qemu-img command run before each round
	switch name {
	case "qcow2-snapshot":
		h.logf("%s: converting the raw file to qcow2", name)
		// -U: the qemu-nbd anchor holds the raw file's write lock.
		if err := runCmd(ctx, "qemu-img", "convert", "-U", "-f", "raw", "-O", "qcow2", raw, img); err != nil {
			return nil, err
		}
		s.note = "qemu-nbd on a qcow2 copy with an internal snapshot taken again before each round (COW), --cache=writeback --aio=threads"
		fresh = []string{"snapshot", "-c", "round", img}
	case "qcow2-overlay":
		base := filepath.Join(h.work, name+"-base.raw")
		h.logf("%s: copying the raw file as the backing file", name)
		if err := runCmd(ctx, "cp", "--sparse=never", raw, base); err != nil {
			return nil, err
		}
		s.note = "qemu-nbd on a fresh qcow2 overlay over a raw backing file before each round (COW), --cache=writeback --aio=threads"
		fresh = []string{"create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", img}
	default:
		return nil, fmt.Errorf("unknown copy-on-write peer %s", name)
	}
	s.prepare = func(ctx context.Context) error {
		if s.proc != nil {
			if io1, err := readProcIO(s.proc.pid()); err == nil {
				s.diskBefore += io1.WriteBytes - s.io0.WriteBytes
			}
			if err := s.proc.stop(10 * time.Second); err != nil {
				return err
			}
		}
		if name == "qcow2-snapshot" {
			_ = runCmd(ctx, "qemu-img", "snapshot", "-d", "round", img) // none the first time
		} else if err := os.Remove(img); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := runCmd(ctx, "qemu-img", fresh...); err != nil {
			return err
		}
		started, err := h.startServer(ctx, name, []string{"qemu-nbd", "-f", "qcow2", "-t", "-e", "16", "-x", "",
			"-b", "127.0.0.1", "-p", "PORT", "--cache=writeback", "--aio=threads", img})
		if err != nil {
			return err
		}
		s.proc, s.uri = started.proc, started.uri
		s.io0, err = readProcIO(s.proc.pid())
		return err
	}
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// directPhase is the second table: every server with the page cache out
// of the way (what a server whose data outgrows RAM sees), the page cache
// of its files dropped before each run, and the disk's own direct rates as
// the limit row.
func (h *harness) directPhase(ctx context.Context) error {
	ch, api, err := h.launchVdiskd(ctx, h.bin, "vdiskd-direct", filepath.Join(h.work, "vdiskd-direct-data"), "--direct-io-min", "4K")
	if err != nil {
		return err
	}
	vd := &server{name: "vdiskd-direct", proc: ch, cached: []string{filepath.Join(h.work, "vdiskd-direct-data")}}
	var bw float64
	if _, vd.uri, bw, err = h.prefilledVDI(ctx, api, "e2e-direct"); err != nil {
		return err
	}
	vd.note = fmt.Sprintf("--direct-io-min 4K (segment writes and uncached reads O_DIRECT), CBT on, 1 snapshot, prefilled (nbdcopy %.0f MiB/s)", bw/float64(mib))
	h.direct = append(h.direct, vd)
	// The direct anchors serve a copy of the raw file: the qemu-nbd
	// anchor of the first table still holds the raw file's write lock.
	raw := filepath.Join(h.work, "anchor-direct.raw")
	if err := runCmd(ctx, "cp", "--sparse=never", h.raw, raw); err != nil {
		return err
	}
	for _, a := range h.cfg.anchors {
		var argv []string
		var note string
		switch a {
		case "nbdkit-file":
			argv = []string{"nbdkit", "--exit-with-parent", "-f", "-i", "127.0.0.1", "-p", "PORT", "file", raw, "cache=none"}
			note = "nbdkit file plugin, cache=none (nbdkit 1.32 has no O_DIRECT: it drops the pages it wrote)"
		case "qemu-nbd":
			argv = []string{"qemu-nbd", "-f", "raw", "-t", "-e", "16", "-x", "", "-b", "127.0.0.1", "-p", "PORT",
				"--cache=none", "--aio=native", raw}
			note = "--cache=none --aio=native (O_DIRECT)"
		default:
			continue
		}
		s, err := h.startServer(ctx, a+"-direct", argv)
		if err != nil {
			return err
		}
		s.note, s.cached = note, []string{raw}
		h.direct = append(h.direct, s)
	}
	disk := filepath.Join(h.work, "disk-direct.raw")
	if err := runCmd(ctx, "cp", "--sparse=never", h.raw, disk); err != nil {
		return err
	}
	h.direct = append(h.direct, &server{name: "disk", file: disk, cached: []string{disk},
		note: "fio's libaio engine, direct=1, on a file of the same size in the same filesystem: the limit"})
	return h.runIO(ctx, h.direct, h.ioDirect, true)
}

// startServer starts an NBD server on a free loopback port (PORT in argv)
// and waits until it listens.
func (h *harness) startServer(ctx context.Context, name string, argv []string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p := strconv.Itoa(port)
	for i, a := range argv {
		if a == "PORT" {
			argv[i] = p
		}
	}
	ch, err := startChild(name, filepath.Join(h.work, name+".log"), nil, syscall.SIGKILL, argv...)
	if err != nil {
		return nil, err
	}
	h.children = append(h.children, ch)
	addr := "127.0.0.1:" + p
	if err := ch.waitTCP(ctx, addr, 30*time.Second); err != nil {
		return nil, err
	}
	h.logf("%s serving on nbd://%s/", name, addr)
	return &server{name: name, uri: "nbd://" + addr + "/", proc: ch}, nil
}

// dropPageCache asks the kernel to drop the cached pages of files (and of
// every file under directories): what a run reads then comes from the
// disk. Dirty pages are written first (fdatasync), as DONTNEED skips them.
func dropPageCache(paths ...string) {
	for _, p := range paths {
		_ = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			f, err := os.Open(path)
			if err != nil {
				return nil
			}
			defer f.Close()
			_ = unix.Fdatasync(int(f.Fd()))
			_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
			return nil
		})
	}
}

// runCmd runs a command to its end, its output in the error.
func runCmd(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %v: %v\n%s", name, args, err, out)
	}
	return nil
}
