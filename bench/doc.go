// Package bench holds vdiskd's performance harnesses and their results.
//
//   - The block-store micro-benchmarks live beside the code
//     (blockstore/bench_test.go): the store next to bare pebble doing the
//     same key writes and reads.
//   - bench/e2e is the end-to-end harness (SPEC §7): the real daemon over
//     NBD under fio, beside nbdkit (file and memory plugins) and qemu-nbd.
//
// `make bench` runs both (go test -bench with medians over BENCHCOUNT runs,
// then go run ./bench/e2e) and prints one report; RESULTS.md keeps the
// latest, its command, the machine it ran on, and what each target needs.
package bench
