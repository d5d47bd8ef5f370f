// Command vdiskd is the vdiskd daemon: virtual disks in storage pools,
// stored copy-on-write with changed-block tracking.
//
// At this stage it opens the block store in --data-dir and serves nothing
// else; the NBD server and the REST API attach to the same store.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/internal/datadir"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

// run is main with its inputs injected, so tests drive it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("vdiskd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", envOr(getenv, "VDISKD_DATA_DIR", "./data"),
		"where vdiskd keeps its data (env VDISKD_DATA_DIR)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vdiskd: unexpected arguments %q\n", fs.Args())
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	dir, err := datadir.Open(*dataDir)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer dir.Close()
	store, err := blockstore.Open(dir.Store(), blockstore.Options{
		Logf: func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		log.Error("cannot open the block store", "dir", dir.Store(), "err", err)
		return 1
	}
	log.Info("vdiskd ready", "data_dir", dir.Path, "volumes", len(store.Volumes()))

	<-ctx.Done()
	log.Info("shutting down")
	if err := store.Close(); err != nil {
		log.Error("closing the block store", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
