//go:build !race

package vdiskdtest

// Race is true in a test binary built with -race: the binaries Binary
// builds then have the race detector too, so real clients hunt for data
// races in the whole daemon.
const Race = false
