# The two commands of the README: `make run` (the quick regime study, ending with the
# regimes table) and `make test` (the whole test suite). Both install missing system
# packages and build first.
export PATH := /opt/swift/usr/bin:$(PATH)
SWIFT ?= swift
BIN := .build/release/moerec
# BLAS threads per run and parallel runs for the study (2 cores: 2 runs of 1 thread).
THREADS ?= 1
JOBS ?= 2

.PHONY: deps build run test test-slurm bench clean

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build -c release --product moerec

run: build
	$(BIN) run --preset quick --threads $(THREADS) --jobs $(JOBS)

# Tests are built with optimisation: the numeric tests run many times slower in debug.
# Every test is XCTest; Swift Testing's runner is switched off so it does not close the
# output with an empty "0 tests" run.
test: deps
	$(SWIFT) build -c release --build-tests
	$(SWIFT) test -c release --skip-build --disable-swift-testing

# The Slurm launcher's test on a single-node Slurm started (as root) for the purpose and
# stopped after; `make test` runs it only when a Slurm controller already answers.
test-slurm:
	scripts/test-slurm.sh

bench: build
	$(BIN) bench model --model bench-small --threads 1 --steps 20 --format json
	$(BIN) bench model --model bench-small --threads 2 --steps 20 --format json
	$(BIN) bench model --model bench-small --threads 1 --steps 20 --capacity-factor 4 --format json
	$(BIN) bench model --model bench-small --threads 2 --steps 20 --capacity-factor 4 --format json
	for r in attention ffn moe non-moe; do $(BIN) bench model --regime $$r --steps 20 --format json; done
	$(BIN) bench store --format json
	$(BIN) bench report --runs 1000 --points 10000000 --format json

clean:
	rm -rf .build
