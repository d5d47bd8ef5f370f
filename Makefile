# vdiskd: see README.md. `make run` starts the daemon, `make test` runs every test.

GO       ?= go
# Pure-Go zstd in pebble: no cgo allocations hidden from Go's memory accounting.
export GOFLAGS := -tags=pebblegozstd
DATA_DIR ?= ./data
# Fuzz budgets are execution counts: with a duration, Go 1.26's fuzz coordinator can fail a clean
# run with a bare "context deadline exceeded" at the deadline when the machine is busy
# (golang/go#75804, fixed in Go 1.27). 20000x is 1 to 12 s per target here.
FUZZTIME ?= 20000x
# make soak: each fuzz target's longer run.
SOAK_FUZZTIME ?= 2000000x
# Fuzz targets, as package:Target.
FUZZ     := ./blockstore:FuzzDecodeReverse ./blockstore:FuzzDecodeTile ./cbt:FuzzDecode ./mgmt:FuzzCalls ./mgmt:FuzzCinderCalls ./mgmt:FuzzKvolCalls ./mgmt:FuzzVStatsCalls ./mgmt:FuzzXenAPICalls ./mgmt/xenapi/wire:FuzzXMLRPC ./mgmt/xenapi/wire:FuzzJSONRPC ./mgmt/volume:FuzzDecodeAttrs ./nbd:FuzzHandshake ./nbd:FuzzRequests
BENCH    ?= .
BENCHTIME ?= 1s
BENCHCOUNT ?= 3
# Packages with Go benchmarks (grep -l 'func Benchmark'): the data path, then the management
# plane (one VDI's calls, NBD connect, 16 clients while logins run, at 100 to 10,000 VDIs; the
# real daemon's start and RSS with 10,000 VDIs).
BENCHPKGS ?= ./blockstore ./metrics ./mgmt ./cmd/vdiskd
# E2E=0 skips the end-to-end harness; E2E_ARGS are its flags (go run ./bench/e2e -h),
# e.g. make bench BENCHCOUNT=1 E2E_ARGS='--runtime 3s --size 512M'.
E2E      ?= 1
E2E_ARGS ?=

.PHONY: all build run test tools lint vet fmt-check unit race fuzz soak bench clean

all: build

build:
	$(GO) build -o bin/ ./cmd/...

## run: start vdiskd on ./data (stop it with Ctrl-C).
run: build
	./bin/vdiskd --data-dir $(DATA_DIR)

## test: every test: lint, unit and model tests, crash tests, race detector, fuzz seeds and a short fuzz run.
test: tools lint unit race fuzz

tools:
	@bash scripts/ensure-tools.sh

lint: fmt-check vet

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout 20m ./...

# -short trims the model and crash tests, which the unit run covers in full.
race:
	$(GO) test -race -short -count=1 -timeout 20m ./...

fuzz:
	@set -e; for t in $(FUZZ); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

## soak: the long variants (VDISKD_SOAK=1): SIGKILL crash rounds, minutes of load on 1,000 VDIs
## with leak checks, hostile clients; then each fuzz target for SOAK_FUZZTIME (about an hour in all).
soak: tools
	VDISKD_SOAK=1 $(GO) test -count=1 -timeout 120m -v ./cmd/vdiskd/systest
	$(MAKE) fuzz FUZZTIME=$(SOAK_FUZZTIME)

## bench: the Go benchmarks (block store beside bare pebble; medians of BENCHCOUNT runs), then the
## end-to-end harness: vdiskd over NBD with fio beside nbdkit and qemu-nbd (bench/e2e; about 12 minutes).
## Raw go test output: bench/latest.txt; both tables: stdout and bench/e2e/latest.md.
bench: tools
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -count $(BENCHCOUNT) -timeout 60m $(BENCHPKGS) | tee bench/latest.txt
ifeq ($(E2E),0)
	$(GO) run ./bench/e2e benchsum bench/latest.txt
else
	$(GO) run ./bench/e2e --gobench bench/latest.txt --out bench/e2e/latest.md $(E2E_ARGS)
endif

clean:
	rm -rf bin
