package main

import (
	"os"
	"runtime/debug"
)

// goMemoryLimit is the Go runtime's soft limit unless GOMEMLIMIT says
// otherwise. vdiskd's live Go heap is small (tens of MiB: requests in
// flight, bitmaps, records); most of what it holds is pebble's block cache
// and memtables, allocated outside the Go heap. Without a limit the heap
// grows to twice its peak after every burst of 1 MiB writes and keeps
// those pages; with it the collector and scavenger hand them back, which
// keeps the daemon's RSS inside SPEC §7's 512 MiB.
const goMemoryLimit = 128 << 20

func limitGoMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(goMemoryLimit)
	}
}
