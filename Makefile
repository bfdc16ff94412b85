# The two set-up commands of the README:
#   make test   builds weft and runs the whole suite (debug, ASan+UBSan, TSan,
#               -O2 with -flto (the thread-local hazard check, and -O2's
#               warnings), the aarch64 context test under qemu, formatting,
#               install check)
#   make demo   builds a release and runs the showcase, the weighted queues, the
#               HTTP server under load on every CPU next to a background queue
#               of CPU work (throughput, per-worker and per-queue stats), and
#               the benchmarks
# Each installs the Debian packages it needs when run as root, and prints the
# apt-get line otherwise.

JOBS ?= $(shell nproc)
TEST_PRESETS ?= debug asan tsan lto
# Under TSan: the unit tests (each with one worker and with two); the smoke,
# fuzz and install checks run in the other presets.
TSAN_EXCLUDE := install|fuzz|smoke|corpus

# Needed to build and test weft (locales: a test compiles a decimal-comma locale).
TEST_PKGS := cmake make gcc pkg-config liburing-dev libuv1-dev clang-format \
             gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user valgrind \
             clang libclang-rt-14-dev locales
# Needed by the benchmark peers (../shared/peers) that `make demo` runs.
DEMO_PKGS := cmake make gcc g++ pkg-config liburing-dev libuv1-dev libboost-context-dev \
             librust-tokio-dev cargo golang-go fio wrk nginx

.PHONY: all test demo bench deps-test deps-demo format format-check clean

all:
	cmake --preset release >/dev/null && cmake --build build/release -j$(JOBS)

define ensure_packages
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else \
	    echo "missing packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

deps-test:
	$(call ensure_packages,$(TEST_PKGS))

deps-demo:
	$(call ensure_packages,$(DEMO_PKGS))

test: deps-test format-check
	@set -e; for p in $(TEST_PRESETS); do \
	  echo "== $$p =="; \
	  cmake --preset $$p >/dev/null; \
	  cmake --build build/$$p -j$(JOBS); \
	  if [ $$p = tsan ]; then ctest --preset $$p -j$(JOBS) -E '$(TSAN_EXCLUDE)'; \
	  else ctest --preset $$p -j$(JOBS); fi; \
	done

demo: deps-demo
	cmake --preset release >/dev/null
	cmake --build build/release -j$(JOBS)
	./build/release/examples/weft_demo
	./build/release/examples/weft_queues
	./build/release/examples/weft_http --load 5 --workers 0 --bg-cpu
	./bench/run-micro.sh

bench: deps-demo
	cmake --preset release >/dev/null
	cmake --build build/release -j$(JOBS)
	./bench/run-micro.sh
	./bench/run-sched.sh
	./bench/run-io.sh
	./bench/run-proxy.sh

# Tracked files and new ones not ignored, so that a file not yet added is
# formatted (and checked) too.
SOURCES = $(shell git ls-files --cached --others --exclude-standard '*.c' '*.h' 2>/dev/null)

format:
	clang-format -i $(SOURCES)

format-check:
	@clang-format --dry-run --Werror $(SOURCES) && echo "format: ok"

clean:
	rm -rf build
