//go:build race

package main

// Under -race the interop tests run a race-enabled daemon, so real
// clients hunt for data races in the whole process.
const raceEnabled = true
