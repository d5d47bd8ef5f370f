package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// dirStats is one direction (read or write) of a fio run.
type dirStats struct {
	IOBytes  int64         // bytes moved in the measured period
	IOs      int64         // requests completed
	IOPS     float64       // requests per second
	BW       float64       // bytes per second
	Runtime  time.Duration // fio's runtime for this direction
	P50, P99 time.Duration // completion latency percentiles
}

// fioResult is what the harness keeps of fio's JSON report.
type fioResult struct {
	Read, Write dirStats
	Jobs        int // job entries in the report (1 with group_reporting)
}

// IOPS and BW are both directions together.
func (r fioResult) IOPS() float64 { return r.Read.IOPS + r.Write.IOPS }
func (r fioResult) BW() float64   { return r.Read.BW + r.Write.BW }

// fioJSON mirrors the part of `fio --output-format=json` the harness reads.
type fioJSON struct {
	Jobs []struct {
		Name  string     `json:"jobname"`
		Error int        `json:"error"`
		Read  fioDirJSON `json:"read"`
		Write fioDirJSON `json:"write"`
	} `json:"jobs"`
}

type fioDirJSON struct {
	IOBytes  int64   `json:"io_bytes"`
	BWBytes  float64 `json:"bw_bytes"`
	IOPS     float64 `json:"iops"`
	Runtime  int64   `json:"runtime"` // ms
	TotalIOs int64   `json:"total_ios"`
	ClatNS   struct {
		Percentile map[string]float64 `json:"percentile"`
	} `json:"clat_ns"`
}

// parseFio reads fio's JSON report. Anything before the first '{' is
// skipped: fio's nbd engine prints "fio: connected to NBD server" on
// stdout ahead of the report. Several job entries (numjobs without
// group_reporting) are summed; their latency percentiles cannot be merged,
// so the largest of each is kept (the harness always groups, so this is a
// fallback).
func parseFio(b []byte) (fioResult, error) {
	i := bytes.IndexByte(b, '{')
	if i < 0 {
		return fioResult{}, errors.New("fio: no JSON report in the output")
	}
	var doc fioJSON
	if err := json.Unmarshal(b[i:], &doc); err != nil {
		return fioResult{}, fmt.Errorf("fio: decoding the JSON report: %w", err)
	}
	if len(doc.Jobs) == 0 {
		return fioResult{}, errors.New("fio: the report holds no jobs")
	}
	var r fioResult
	r.Jobs = len(doc.Jobs)
	for _, j := range doc.Jobs {
		if j.Error != 0 {
			return fioResult{}, fmt.Errorf("fio: job %s failed with error %d", j.Name, j.Error)
		}
		addDir(&r.Read, j.Read)
		addDir(&r.Write, j.Write)
	}
	if r.Read.IOs == 0 && r.Write.IOs == 0 {
		return fioResult{}, errors.New("fio: no I/O completed")
	}
	return r, nil
}

func addDir(d *dirStats, j fioDirJSON) {
	if j.TotalIOs == 0 && j.IOBytes == 0 {
		return
	}
	d.IOBytes += j.IOBytes
	d.IOs += j.TotalIOs
	d.IOPS += j.IOPS
	bw := j.BWBytes
	if bw == 0 && j.Runtime > 0 {
		bw = float64(j.IOBytes) / (float64(j.Runtime) / 1e3)
	}
	d.BW += bw
	if rt := time.Duration(j.Runtime) * time.Millisecond; rt > d.Runtime {
		d.Runtime = rt
	}
	if p := percentile(j.ClatNS.Percentile, 50); p > d.P50 {
		d.P50 = p
	}
	if p := percentile(j.ClatNS.Percentile, 99); p > d.P99 {
		d.P99 = p
	}
}

// percentile finds fio's key for p ("50.000000"), tolerating other
// formatting of the same number.
func percentile(m map[string]float64, p float64) time.Duration {
	for k, v := range m {
		var f float64
		if _, err := fmt.Sscanf(k, "%g", &f); err == nil && f == p {
			return time.Duration(v)
		}
	}
	return 0
}

// fioJob is one fio invocation against one NBD URI, or a local file
// with direct I/O (the disk's own rates).
type fioJob struct {
	Name string
	URI  string
	File string   // instead of URI: fio's libaio engine, direct=1
	Args []string // workload options, without ioengine, uri and output
}

// runFio runs one job with JSON output into a file under dir (fio's nbd
// engine writes a banner to stdout, so the report goes to its own file) and
// parses it. The raw report stays in dir for inspection.
func runFio(ctx context.Context, dir string, j fioJob) (fioResult, error) {
	out := filepath.Join(dir, "fio-"+safeName(j.Name)+".json")
	target := []string{"--ioengine=nbd", "--uri=" + j.URI}
	if j.File != "" {
		target = []string{"--ioengine=libaio", "--direct=1", "--filename=" + j.File}
	}
	args := append(append([]string{"--name=" + j.Name}, target...), append([]string{"--output-format=json", "--output=" + out}, j.Args...)...)
	cmd := exec.CommandContext(ctx, "fio", args...)
	// On cancel, SIGINT: fio stops its job processes (numjobs forks them)
	// and exits; SIGKILL 5 s later if it has not.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	var combined bytes.Buffer
	cmd.Stdout, cmd.Stderr = &combined, &combined
	err := cmd.Run()
	b, _ := os.ReadFile(out)
	if err != nil {
		if ctx.Err() != nil {
			return fioResult{}, ctx.Err()
		}
		return fioResult{}, fmt.Errorf("fio %s: %v\n%s%s", j.Name, err, lastLines(combined.String(), 10), lastLines(string(b), 5))
	}
	return parseFio(b)
}

// safeName makes a file name of a job name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, s)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}
