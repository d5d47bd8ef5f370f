package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
)

func TestRunStartsAndStopsOnSignal(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out vdiskdtest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0",
			"--pprof-addr", "127.0.0.1:0"}, func(string) string { return "" }, &out)
	}()
	out.WaitFor(t, "vdiskd ready", 20*time.Second)

	// The profiler answers on its own address only.
	m := regexp.MustCompile(`msg="profiler listening" addr=(\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no profiler address in the log:\n%s", out.String())
	}
	resp, err := vdiskdtest.HTTP.Get(m[1] + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("profiler: HTTP %d %.200q", resp.StatusCode, body)
	}

	// A second daemon on the same directory fails clearly.
	var out2 vdiskdtest.Buffer
	if code := run(context.Background(), []string{"--http-addr", "127.0.0.1:0"}, func(k string) string {
		if k == "VDISKD_DATA_DIR" {
			return dir
		}
		return ""
	}, &out2); code != 1 || !strings.Contains(out2.String(), "in use by another vdiskd") {
		t.Fatalf("second daemon: exit %d, output:\n%s", code, out2.String())
	}

	cancel()
	if code := testwait.RecvWithin(t, done, 30*time.Second, "vdiskd to stop"); code != 0 {
		t.Fatalf("exit %d after shutdown:\n%s", code, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); err != nil {
		t.Fatalf("store not created: %v", err)
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	var out vdiskdtest.Buffer
	if code := run(context.Background(), []string{"--no-such-flag"}, os.Getenv, &out); code != 2 {
		t.Fatalf("unknown flag: exit %d", code)
	}
	if code := run(context.Background(), []string{"extra"}, os.Getenv, &out); code != 2 {
		t.Fatalf("extra argument: exit %d", code)
	}
	for _, bad := range [][]string{
		{"--http-addr", "nonsense"}, {"--nbd-addr", "1.2.3.4"}, {"--nbd-auth", "maybe"},
		{"--tls-cert", "a.pem"}, {"--zone", "a b"}, {"--log-level", "loud"},
		{"--pprof-addr", "6060"},
	} {
		var out vdiskdtest.Buffer
		if code := run(context.Background(), bad, func(string) string { return "" }, &out); code != 2 || out.String() == "" {
			t.Errorf("%v: exit %d, output %q; want 2 and a message", bad, code, out.String())
		}
	}
	// Env twins are read like their flags.
	out = vdiskdtest.Buffer{}
	env := func(k string) string {
		if k == "VDISKD_NBD_AUTH" {
			return "sometimes"
		}
		return ""
	}
	if code := run(context.Background(), nil, env, &out); code != 2 || !strings.Contains(out.String(), "sometimes") {
		t.Errorf("VDISKD_NBD_AUTH=sometimes: exit %d, output %q", code, out.String())
	}
}
