# hookctl: `make demo` runs the main job, `make test` runs the tests.
GO ?= go
BIN := bin/hookctl
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: build test vet demo bench bench-e2e fuzz man clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/hookctl

# The test command of the README and CI: vet, gofmt, every test with the
# race detector (integration tests start their own Prosody). Fuzz targets
# only replay their checked-in corpora (testdata/fuzz) here, so the gate is
# deterministic; `make fuzz` explores with random inputs.
test:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) test -race -timeout 20m ./...

# One command on a fresh machine: a private Prosody, the backend watching
# examples/, an item published, the hook's effect and its run shown.
demo: build
	./scripts/demo.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# End to end through a private Prosody: each hook type side by side with a
# bare subscriber in the same run, exec also against a plain fork/exec loop;
# each prints its ratios (see BENCHMARKS.md). Prosody keeps items in memory
# unless BENCH_STORE=file (its file store rewrites the node on every publish).
BENCH_STORE ?= memory
bench-e2e:
	$(GO) build -o bin/hookctl-bench ./cmd/hookctl-bench
	./bin/hookctl-bench -store $(BENCH_STORE) -type expr -items 2000
	./bin/hookctl-bench -store $(BENCH_STORE) -type python_file -items 2000
	./bin/hookctl-bench -store $(BENCH_STORE) -type exec -items 2000

# Each fuzz target for a bounded time (FUZZTIME, default 10s each).
fuzz:
	./.ci/fuzz.sh

# Man pages, one per command, from the CLI itself.
man:
	$(GO) run ./cmd/hookctl man man

clean:
	rm -rf bin man
