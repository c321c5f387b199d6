# The front door: `make` builds, `make test` builds and runs every test,
# `make demo` sets a fresh Debian machine up and runs the main job.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all build setup test demo clean sanitize

all: build

build:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

setup:
	@bash scripts/setup.sh

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: setup build
	@bash scripts/demo.sh $(BUILD)/relprop

clean:
	rm -rf $(BUILD)
