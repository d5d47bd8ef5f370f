package systest

import (
	"testing"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
)

// The system tests drive the real vdiskd binary (internal/vdiskdtest
// builds, starts and stops it) with real clients: qemu-img, qemu-io,
// nbdinfo, nbdcopy, nbdsh, fio, Prometheus, and nbd/nbdtest's raw client.

func TestMain(m *testing.M) { vdiskdtest.Main(m) }

// daemon is one running vdiskd, with the helpers these tests add to it.
type daemon struct{ *vdiskdtest.Daemon }

// testAdminPassword is the admin password every daemon here starts with.
const testAdminPassword = vdiskdtest.DefaultAdminPassword

// startVdiskd runs vdiskd on free loopback ports with a fresh data dir and
// logs in as admin; extra flags are appended. The test's cleanup stops it
// with SIGTERM and fails the test if it does not exit 0.
func startVdiskd(t *testing.T, extra ...string) *daemon {
	t.Helper()
	return &daemon{vdiskdtest.Start(t, vdiskdtest.Options{Args: extra})}
}

// launchVdiskd starts vdiskd on dataDir (which may hold an earlier run's
// data) without logging in, for daemons startVdiskd cannot give (HTTPS, a
// restart on the same data).
func launchVdiskd(t *testing.T, dataDir string, extra ...string) *daemon {
	t.Helper()
	return &daemon{vdiskdtest.Start(t, vdiskdtest.Options{DataDir: dataDir, Args: extra, NoLogin: true})}
}

// relaunch starts vdiskd again, logged in, on the data dir of a daemon
// that stopped or died, with its flags.
func (d *daemon) relaunch(t *testing.T) *daemon {
	t.Helper()
	return &daemon{d.Relaunch(t)}
}
