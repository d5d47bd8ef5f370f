package vdiskdtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The client programs the system tests drive (qemu-img, qemu-io, nbdinfo,
// nbdcopy, nbdsh, fio, prometheus, ...).

// ToolTimeout bounds every client program a test runs (the longest run
// for about a minute): a peer that hangs is killed and fails its test
// instead of hanging it.
const ToolTimeout = 5 * time.Minute

// RequireTool fails (never skips) when a program the test needs is
// missing: make test installs them (scripts/ensure-tools.sh).
func RequireTool(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s is not installed: run `make tools` (scripts/ensure-tools.sh)", n)
		}
	}
}

// ToolCmd builds a client command, killed after ToolTimeout or when the
// test ends. nbdsh runs under the system python, which has the nbd module.
func ToolCmd(t testing.TB, name string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), ToolTimeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:"+os.Getenv("PATH"))
	// Bounds the wait for output pipes a killed program's children hold;
	// it also bounds reading what an exited program left in its pipe,
	// which for nbdcopy's 64 MiB under -race on a loaded machine took
	// over 5 s once.
	cmd.WaitDelay = 20 * time.Second
	return cmd
}

// RunTool runs a client program and returns its combined output; it fails
// the test on a non-zero exit.
func RunTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := ToolCmd(t, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ExecTool runs a client program and returns its exit code (-1 when it
// did not run or was killed) and combined output.
func ExecTool(t testing.TB, name string, args ...string) (int, string) {
	out, err := ToolCmd(t, name, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	return -1, err.Error() + "\n" + string(out)
}
