package main

import (
	"os"
	"runtime/debug"

	"github.com/vdiskd/vdiskd/blockstore"
)

// goMemoryLimit is the Go runtime's soft limit unless GOMEMLIMIT says
// otherwise. vdiskd's live Go heap is small (tens of MiB: requests in
// flight, bitmaps, records); most of what it holds is pebble's block cache
// and memtables, allocated outside the Go heap. Without a limit the heap
// grows to twice its peak after every burst of 1 MiB writes and keeps
// those pages; with it the collector and scavenger hand them back, which
// keeps the daemon's RSS inside SPEC §7's 512 MiB. The store's newest
// cache is one array in the Go heap for the store's life, so the limit
// leaves room for it on top (a cache past the limit kept the collector
// running without pause).
const goMemoryLimit = 128<<20 + blockstore.DefaultNewestCacheBlocks*blockstore.NewestCacheEntryBytes

func limitGoMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(goMemoryLimit))
	}
}
