// Package vdiskdtest runs the real vdiskd binary for system tests: it
// builds cmd/vdiskd (and cmd/vdiskctl) once per test binary, with -race
// when the test binary has it; starts the daemon on free loopback ports
// and a data directory in t.TempDir(), waits until it is ready and logs in
// as admin; stops it with SIGTERM (checking for exit 0), kills it with
// SIGKILL, starts it again on the same data; talks REST to it, decoding
// answers or api.ErrorBody; and runs the client programs the tests drive,
// each with a time limit.
//
// Everything is tied to the test: a daemon is stopped by t.Cleanup, and
// the tail of its log is shown when the test failed. No wait is unbounded
// (ReadyTimeout, StopTimeout, KillTimeout, ToolTimeout, and the REST
// client's timeout).
//
//	func TestMain(m *testing.M) { vdiskdtest.Main(m) } // removes the binaries
//
//	d := vdiskdtest.Start(t, vdiskdtest.Options{})
//	v := d.CreateVDI(t, "disk", 4<<20)
//	vdiskdtest.RunTool(t, "nbdinfo", d.URI(t, v.UUID))
//	d.Kill(t)
//	d = d.Relaunch(t)
//
// The NBD side of the tests is nbd/nbdtest's client.
package vdiskdtest
