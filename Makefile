# The front door: `make` builds, `make test` builds and runs every test,
# `make demo` sets a fresh Debian machine up and runs the main job.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all build build-cli setup setup-tests test test-fast test-python test-sanitize test-valgrind demo install bench-eval bench fuzz clean

all: build

build:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Only the command and the library it links: what `make demo` waits for.
build-cli:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target relprop

setup:
	@bash scripts/setup.sh

# The whole suite three ways: a normal build, built with AddressSanitizer and
# UndefinedBehaviorSanitizer, and a subset under valgrind's memcheck; the
# Python package (python/) is built and tested each way too.
test: setup-tests test-fast test-python test-sanitize test-valgrind

# What only the tests need (PyTorch, for from_torch), installed if missing.
setup-tests:
	@bash scripts/setup.sh --tests

test-fast: build
	@bash tests/run_ctest.sh $(BUILD) --output-on-failure -j $(JOBS)

# The Python package built against $(BUILD)'s librelprop.a into
# $(BUILD)/python; its pytest tests and examples/python/notebook.py.
test-python: build
	@bash tests/python/run.sh $(abspath $(BUILD))

test-sanitize:
	@cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DRELPROP_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD)-asan -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 bash tests/run_ctest.sh $(BUILD)-asan --output-on-failure -j $(JOBS)
	@bash tests/python/run.sh $(abspath $(BUILD))-asan asan

test-valgrind: build
	@bash tests/valgrind.sh $(abspath $(BUILD))
	@bash tests/python/run.sh $(abspath $(BUILD)) build
	@bash tests/python/valgrind.sh $(abspath $(BUILD))

demo: setup build-cli
	@bash scripts/demo.sh $(BUILD)/relprop

# Installs the CLI, librelprop (.a and .so), the headers and relprop.pc
# (PREFIX=/some/where to choose; default /usr/local).
install: build
	@cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

# The evaluation benchmark of the README: regenerates the canvases, runs
# relprop eval for all seven methods, writes docs/eval/.
bench-eval: build
	@bash scripts/bench_eval.sh $(abspath $(BUILD))/relprop

# Speed against the authors' PyTorch code and ONNX Runtime (README, "Speed"):
# BENCH_ARGS="--reference ~/Transformer-Explainability --coretype-both" to add them.
BENCH_ARGS ?=
bench: build
	@tools/bench --relprop $(abspath $(BUILD))/relprop $(BENCH_ARGS)

# Coverage-guided fuzzing of the loader and readers (clang, libFuzzer):
# FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 600
fuzz:
	@bash fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) $(BUILD)-asan
