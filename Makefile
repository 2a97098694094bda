# hotpath - build, dependencies, run, tests, sanitizers, fuzzing, benchmarks.
#
#   make run     install what is missing, build, start the upstream stub and
#                hotpath on config/hotpath.json
#   make test    install what is missing, build, run unit + integration tests,
#                then the same tests built with ASan+UBSan
#
# Everything builds out of tree under $(BUILD); the sanitizer build lives in
# $(BUILD)/asan and is produced by this same Makefile with SAN=1.

CC       ?= cc
BUILD    ?= build
SAN      ?=
O        ?= 2

LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp

# Debian packages: what building and testing needs, and what benchmarking
# adds. `make deps` installs whatever of these is missing and nothing else.
DEB_BUILD = pkg-config libuv1-dev node-llhttp libcjson-dev libcmocka-dev
DEB_TEST  = prometheus valgrind
DEB_BENCH = wrk nghttp2-client nginx-light gnuplot-nox valgrind procps util-linux python3

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Recursively expanded on purpose: pkg-config runs when a recipe needs the
# flags, which is after `deps` has installed the .pc files on a fresh machine.
PKG_CFLAGS = $(shell pkg-config --cflags libuv libcjson 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs libuv libcjson 2>/dev/null || echo -luv -lcjson)
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

# llhttp ships two parsers in one file; strict mode is the one that refuses
# what RFC 9112 forbids (spaces in header names, bare LF line ends, ...)
# instead of tolerating it. Everything that includes llhttp.h sees the same.
LLHTTP_DEFS = -DLLHTTP_STRICT_MODE=1

WARN     = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(LLHTTP_DEFS) -O$(O) -g $(WARN) -I. -I$(LLHTTP_INC) $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lpthread -lm $(LDLIBS)

ifeq ($(SAN),1)
CFLAGS_ALL += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS    += -fsanitize=address,undefined
endif
# libFuzzer coverage for every object of the fuzz build (make fuzz, clang).
ifeq ($(FUZZ),1)
CFLAGS_ALL += -fsanitize=fuzzer-no-link
endif

# The library: every module but the two mains. Folder order is the order a
# request travels: server (listener, connection, parser, chain, response),
# middleware, handlers, cache, upstream.
LIB_SRC  = $(filter-out server/main.c,$(wildcard server/*.c)) \
           $(wildcard middleware/*.c) $(wildcard handlers/*.c) \
           $(wildcard cache/*.c) $(wildcard upstream/*.c)
LLHTTP_OBJ = $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o) $(LLHTTP_OBJ)
LIB      = $(BUILD)/libhotpath.a

UNIT_SRC = $(wildcard tests/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/%.c=$(BUILD)/tests/%)
IT_SRC   = $(wildcard tests/it_*.c)
IT_BIN   = $(IT_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT = $(filter-out $(UNIT_SRC) $(IT_SRC),$(wildcard tests/*.c))
TEST_SUPPORT_OBJ = $(TEST_SUPPORT:%.c=$(BUILD)/%.o)

BINS = $(BUILD)/hotpath $(BUILD)/hotpath-upstream $(BUILD)/hotpath-load

.PHONY: all deps bench-deps build run test test-unit test-it test-asan clean format \
        bench bench-quick soak fuzz fuzz-replay valgrind

all: deps
	@$(MAKE) --no-print-directory build

build: $(BINS) $(UNIT_BIN) $(IT_BIN) $(BUILD)/fuzz-replay

deps:
	@missing=$$(for p in $(DEB_BUILD) $(DEB_TEST); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing missing Debian packages:" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

bench-deps: deps
	@missing=$$(for p in $(DEB_BENCH); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing missing Debian packages:" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Objects depend on this file too: a changed flag rebuilds what it affects.
$(BUILD)/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

# llhttp's generated parser is third-party code: compile it as shipped, with
# its own warnings silenced, but with the same optimisation and sanitizers.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(filter-out $(WARN),$(CFLAGS_ALL)) -w -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/hotpath: $(BUILD)/server/main.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS_ALL) -o $@

$(BUILD)/hotpath-upstream: $(BUILD)/loadtest/upstream_stub.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS_ALL) -o $@

# The fuzz target, linked two ways: with libFuzzer (make fuzz, clang), and
# with a plain main that replays files (CI replays the seed corpus).
$(BUILD)/fuzz-replay: $(BUILD)/tests/fuzz/fuzz_conn.o $(BUILD)/tests/fuzz/replay.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS_ALL) -o $@

$(BUILD)/fuzz-conn: $(BUILD)/tests/fuzz/fuzz_conn.o $(LIB)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer $^ $(LDLIBS_ALL) -o $@

# The open-loop, fixed-rate load generator of the threshold sweep.
$(BUILD)/hotpath-load: $(BUILD)/loadtest/load.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS_ALL) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_SUPPORT_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $^ $(CMOCKA_LIBS) $(LDLIBS_ALL) -o $@

# Tests find the binaries under test through these variables.
TEST_ENV = HOTPATH_BIN=$(abspath $(BUILD)/hotpath) \
           HOTPATH_UPSTREAM_BIN=$(abspath $(BUILD)/hotpath-upstream) \
           HOTPATH_ROOT=$(abspath .)

test: deps
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory test-unit test-it
	@$(MAKE) --no-print-directory test-asan
	@echo "make test: all passed"

# One cmocka binary per module, so a crash stops one module's run only.
test-unit: $(UNIT_BIN) $(BUILD)/fuzz-replay
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $(TEST_ENV) $$t; done
	@echo "== $(BUILD)/fuzz-replay tests/fuzz/corpus"
	@$(BUILD)/fuzz-replay tests/fuzz/corpus/*

test-it: $(BINS) $(IT_BIN)
	@set -e; for t in $(IT_BIN); do echo "== $$t"; $(TEST_ENV) $$t; done

# The same unit and integration tests, with every binary (servers included)
# built with AddressSanitizer, LeakSanitizer and UBSan.
test-asan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/asan SAN=1 O=1 build
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    $(MAKE) --no-print-directory BUILD=$(BUILD)/asan SAN=1 O=1 test-unit test-it

run: deps
	@$(MAKE) --no-print-directory $(BINS)
	@loadtest/serve.sh $(BUILD) config/hotpath.json

# Load tests: they measure and report, they never assert. Both first run
# the runner's own unit tests (statistics, verdicts; under a second).
# bench-quick: under 3 minutes, report in loadtest/results/<date>-quick/.
# bench: the full run (two CPU caps), report in loadtest/results/<date>/;
# PUBLISH=1 also replaces the committed loadtest/results/latest/, and
# refuses a tree with uncommitted changes. The capped sweep needs root (a
# cgroup); see loadtest/README.md.
bench: bench-deps
	@$(MAKE) --no-print-directory $(BINS)
	python3 loadtest/test_harness.py
	python3 loadtest/bench.py --build $(BUILD) $(if $(filter 1,$(PUBLISH)),--publish)

bench-quick: bench-deps
	@$(MAKE) --no-print-directory $(BINS)
	python3 loadtest/test_harness.py
	python3 loadtest/bench.py --build $(BUILD) --quick

# Fuzz the connection (parser, chain, handlers) for FUZZ_SECONDS with
# libFuzzer + ASan + UBSan. New inputs go to build/fuzz/corpus; the seeds in
# tests/fuzz/corpus are read, never written.
FUZZ_SECONDS ?= 60
fuzz: deps
	@$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang SAN=1 FUZZ=1 O=1 build/fuzz/fuzz-conn
	@mkdir -p build/fuzz/corpus
	build/fuzz/fuzz-conn -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -timeout=10 -rss_limit_mb=2048 build/fuzz/corpus tests/fuzz/corpus

# Memcheck: the unit tests and the fuzz corpus replay under valgrind, then
# the integration tests with both servers under valgrind (HOTPATH_BIN and
# HOTPATH_UPSTREAM_BIN are loadtest/valgrind.sh stand-ins), built -O1 in
# build/vg. Clean means no memcheck error and no definitely or indirectly
# lost block: the wrapper exits 99 otherwise, and every test asserts its
# servers exit 0. HOTPATH_SLOW=1 tells the tests that honour it (it_hardening)
# to keep every status and counter assertion but drop the upper bounds on
# times and lengthen upstream delays. About 2 minutes on 2 cores.
valgrind: deps
	@$(MAKE) --no-print-directory BUILD=build/vg O=1 build
	@mkdir -p build/vg/valgrind
	@ln -sf ../../../loadtest/valgrind.sh build/vg/valgrind/hotpath
	@ln -sf ../../../loadtest/valgrind.sh build/vg/valgrind/hotpath-upstream
	@set -e; for t in $(UNIT_SRC:tests/%.c=build/vg/tests/%); do \
	    echo "== valgrind $$t"; \
	    HOTPATH_BIN=$(abspath build/vg/hotpath) HOTPATH_UPSTREAM_BIN=$(abspath build/vg/hotpath-upstream) \
	    HOTPATH_ROOT=$(abspath .) loadtest/valgrind.sh $$t; done
	@echo "== valgrind build/vg/fuzz-replay tests/fuzz/corpus"
	@loadtest/valgrind.sh build/vg/fuzz-replay tests/fuzz/corpus/*
	@set -e; for t in $(IT_SRC:tests/%.c=build/vg/tests/%); do \
	    echo "== $$t (servers under valgrind)"; \
	    HOTPATH_SLOW=1 HOTPATH_BIN=$(abspath build/vg/valgrind/hotpath) \
	    HOTPATH_UPSTREAM_BIN=$(abspath build/vg/valgrind/hotpath-upstream) \
	    HOTPATH_ROOT=$(abspath .) $$t; done
	@echo "make valgrind: clean"

# A bounded mixed load against hotpath (2 workers) and the stub for
# SOAK_SECONDS (default 600): wrk on the good paths, slow clients, upstream
# faults; fails on a lost request or on RSS still growing after warm-up.
# Writes loadtest/results/soak-<date>.txt.
soak: bench-deps
	@$(MAKE) --no-print-directory $(BINS)
	python3 loadtest/soak.py --build $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
