// Package systest holds vdiskd's system tests: each runs the real vdiskd
// binary as a process (internal/vdiskdtest builds it once per run, with
// -race when the tests have it) and drives it the way its users do, with
// real clients: qemu-img, qemu-io, nbdinfo, nbdcopy, nbdsh scripts
// (testdata/nbdsh), fio, Prometheus and promtool, and nbd/nbdtest's raw
// NBD client for what no real client does (hostile bytes, exact
// durability bookkeeping). Among them: every NBD command and option
// against the protocol, TLS, token revocation, SIGKILL under load and
// during every metadata operation, a full disk, thousands of idle
// connections, and minutes of load on 1,000 VDIs with leak checks.
//
// The package has no code of its own; its tests are the point. Run them
// with
//
//	go test ./cmd/vdiskd/systest                      # all, about 4 minutes
//	go test ./cmd/vdiskd/systest -run TestNBDProtocol -v
//	go test -race -short ./cmd/vdiskd/systest         # fewer crash rounds, a race-enabled daemon
//	VDISKD_SOAK=1 go test -timeout 120m ./cmd/vdiskd/systest   # make soak: the long variants
//
// with the module's GOFLAGS (the Makefile's -tags=pebblegozstd). The
// client programs are Debian packages that make tools installs
// (scripts/ensure-tools.sh); a test whose program is missing fails, it
// does not skip. A crash test logs its seed; VDISKD_CRASH_SEED=<n>
// replays its kill schedule.
package systest
