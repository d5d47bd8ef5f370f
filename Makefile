# vdiskd: see README.md. `make run` starts the daemon, `make test` runs every test.

GO       ?= go
# Pure-Go zstd in pebble: no cgo allocations hidden from Go's memory accounting.
export GOFLAGS := -tags=pebblegozstd
DATA_DIR ?= ./data
FUZZTIME ?= 10s
# Fuzz targets, as package:Target.
FUZZ     := ./cbt:FuzzDecode ./mgmt:FuzzCalls ./nbd:FuzzHandshake ./nbd:FuzzRequests
BENCH    ?= .
BENCHTIME ?= 2s

.PHONY: all build run test tools lint vet fmt-check unit race fuzz bench clean

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

## bench: the block-store benchmarks with their bare-pebble baselines.
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -timeout 60m ./blockstore | tee bench/latest.txt

clean:
	rm -rf bin
