// Package bench holds vdiskd's performance harnesses. The block-store
// micro-benchmarks live beside the code (blockstore/bench_test.go) and run
// with `make bench`; RESULTS.md keeps the latest table, its command and the
// machine it ran on.
package bench
