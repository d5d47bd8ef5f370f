//go:build cgo && linux

package main

/*
#include <malloc.h>
#include <stdlib.h>

// Runs when the binary is loaded, before the Go runtime starts threads:
// glibc binds each thread to the arena it first allocates from, so a
// limit set later (from Go's init) leaves the early arenas in place.
__attribute__((constructor)) static void vdiskd_limit_arenas(void) {
	if (getenv("MALLOC_ARENA_MAX") == NULL) {
		mallopt(M_ARENA_MAX, 1);
	}
}
*/
import "C"

// pebble allocates its block cache and memtables with C malloc when cgo is
// on. glibc gives threads their own arenas (up to 8 per core), and every
// arena keeps the cache blocks freed into it: with 4 KiB blocks churning on
// all of pebble's threads that was 200 MiB of RSS beyond the cache's size
// (measured: 508 MiB RSS after 2 GiB of reads with a 128 MiB cache, 320 MiB
// with one arena). One arena shares the free space; MALLOC_ARENA_MAX in the
// environment still wins.
