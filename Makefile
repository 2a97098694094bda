# hotpath - build, dependencies, run, tests, sanitizers, fuzzing, benchmarks.
#
#   make run     install what is missing, build, start the upstream stub and
#                hotpath on config/hotpath.json
#   make test    install what is missing, check the layering, build, run
#                unit + integration tests, the cluster test (HAProxy, Redis),
#                the browser test of /dashboard and the Kestrel twin's
#                contract test (when dotnet is on PATH), then the unit,
#                integration and cluster tests built with ASan+UBSan
#   make twin    build the Kestrel twin (loadtest/kestrel) into $(BUILD)/kestrel
#   make micro   the twin's BenchmarkDotNet micro-benchmark
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
DEB_BUILD = pkg-config libuv1-dev node-llhttp libcjson-dev libcmocka-dev libhiredis-dev
DEB_TEST  = prometheus valgrind redis-server haproxy python3
DEB_BENCH = wrk nghttp2-client nginx-light gnuplot-nox valgrind procps util-linux python3 strace
# The browser test's: installed by test-browser, which skips, saying why, when
# they cannot be had. Node.js and npm build the dashboard page (see below).
DEB_BROWSER = chromium wrk
CHROMIUM   ?= /usr/bin/chromium
# make fuzz: clang and its runtimes (libFuzzer, ASan, UBSan) - Debian 12's
# clang is 14, whose runtimes are in libclang-rt-14-dev.
DEB_FUZZ  = clang libclang-rt-14-dev

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Install whichever of the Debian packages $(1) are missing, and nothing
# else (the package lists are refreshed first: a fresh machine has none).
apt_install = missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing missing Debian packages:" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Recursively expanded on purpose: pkg-config runs when a recipe needs the
# flags, which is after `deps` has installed the .pc files on a fresh machine.
# hiredis's --cflags are left out on purpose: they put /usr/include/hiredis
# on the include path, where its alloc.h, read.h and sds.h would shadow any
# header of ours included by a bare name; the code says <hiredis/read.h>.
PKG_CFLAGS = $(shell pkg-config --cflags libuv libcjson 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs libuv libcjson hiredis 2>/dev/null || echo -luv -lcjson -lhiredis)
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

# The library: every module but the mains. Folder order is the layers'
# (README "How it is built"), bottom to top: the task runtime, the server
# (listener, connection, parser, chain, response), cache, upstream,
# middleware, handlers, and the app that wires them (its main apart).
LIB_SRC  = $(wildcard runtime/*.c) $(wildcard server/*.c) \
           $(wildcard cache/*.c) $(wildcard upstream/*.c) \
           $(wildcard middleware/*.c) $(wildcard handlers/*.c) \
           $(filter-out app/main.c,$(wildcard app/*.c))
LLHTTP_OBJ = $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o
# The /dashboard page, embedded: handlers/dashboard/embed.mjs inlines the
# page's sources and uPlot (installed by `npm ci` from the lock file) into
# one C byte array, generated under $(BUILD) and linked into the library.
DASH_DIR = handlers/dashboard
DASH_SRC = $(addprefix $(DASH_DIR)/,index.html app.js style.css embed.mjs)
DASH_NPM = $(DASH_DIR)/node_modules/.package-lock.json
DASH_GEN = $(BUILD)/gen/dashboard_page.c
DASH_OBJ = $(BUILD)/gen/dashboard_page.o
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o) $(LLHTTP_OBJ) $(DASH_OBJ)
LIB      = $(BUILD)/libhotpath.a

UNIT_SRC = $(wildcard tests/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/%.c=$(BUILD)/tests/%)
# it_twin tests the Kestrel twin (a .NET program): it runs once, in
# test-twin, not in the loops that run every other integration test (again
# under ASan, and under valgrind).
IT_SRC   = $(filter-out tests/it_twin.c,$(wildcard tests/it_*.c))
IT_BIN   = $(IT_SRC:tests/%.c=$(BUILD)/tests/%)
# What the tests share (processes, a client, in-memory workers, counters)
# lives in tests/support/ and is linked into every test binary.
TEST_SUPPORT = $(wildcard tests/support/*.c)
TEST_SUPPORT_OBJ = $(TEST_SUPPORT:%.c=$(BUILD)/%.o)

BINS = $(BUILD)/hotpath $(BUILD)/hotpath-upstream $(BUILD)/hotpath-load

.PHONY: all deps bench-deps fuzz-deps build run test test-layers test-unit test-it test-cluster test-twin \
        test-asan test-browser clean format bench bench-quick soak fuzz fuzz-replay valgrind cluster \
        twin micro

all: deps
	@$(MAKE) --no-print-directory build

build: $(BINS) $(UNIT_BIN) $(IT_BIN) $(BUILD)/tests/it_twin $(BUILD)/fuzz-replay

# Node.js and npm count as present when they are on PATH, wherever they came
# from; Debian's are installed only when they are not.
deps:
	@$(call apt_install,$(DEB_BUILD) $(DEB_TEST))
	@command -v node >/dev/null && command -v npm >/dev/null || { $(call apt_install,nodejs npm); }

bench-deps: deps
	@$(call apt_install,$(DEB_BENCH))

fuzz-deps: deps
	@$(call apt_install,$(DEB_FUZZ))

# Objects depend on this file too: a changed flag rebuilds what it affects.
$(BUILD)/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

# llhttp's generated parser is third-party code: compile it as shipped, with
# its own warnings silenced, but with the same optimisation and sanitizers.
# It scans header values 16 bytes at a time when compiled for SSE4.2 (its own
# #ifdef __SSE4_2__), a byte at a time otherwise: 150 instructions of a
# /plaintext request. Turned on when the machine that builds has SSE4.2
# (x86-64 CPUs since 2011), so the binaries run where they are built.
LLHTTP_SIMD := $(shell grep -qw sse4_2 /proc/cpuinfo 2>/dev/null && echo -msse4.2)
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(filter-out $(WARN),$(CFLAGS_ALL)) $(LLHTTP_SIMD) -w -c $< -o $@

# npm ci installs exactly the lock file's versions; the stamp is the hidden
# lock file npm writes, so this runs again only when the lock file changes.
$(DASH_NPM): $(DASH_DIR)/package.json $(DASH_DIR)/package-lock.json
	cd $(DASH_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(DASH_GEN): $(DASH_SRC) $(DASH_NPM)
	node $(DASH_DIR)/embed.mjs $@

$(DASH_OBJ): $(DASH_GEN)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/hotpath: $(BUILD)/app/main.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS_ALL) -o $@

$(BUILD)/hotpath-upstream: $(BUILD)/stub/upstream.o $(LIB)
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

# test_handlers makes the runtime refuse an await at the handlers' call
# sites, and the cache hand back a consumed get, by wrapping the calls
# (cmocka's mocking idiom); see that file.
$(BUILD)/tests/test_handlers: LDFLAGS += -Wl,--wrap=hp_vtask_on_completed \
                                         -Wl,--wrap=hp_cache_get
# test_advice completes the cache's fills by hand (see that file).
$(BUILD)/tests/test_advice: LDFLAGS += -Wl,--wrap=hp_upstream_request

# Tests find the binaries under test through these variables.
TEST_ENV = HOTPATH_BIN=$(abspath $(BUILD)/hotpath) \
           HOTPATH_UPSTREAM_BIN=$(abspath $(BUILD)/hotpath-upstream) \
           HOTPATH_ROOT=$(abspath .)

test: deps
	@$(MAKE) --no-print-directory test-layers
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory test-unit test-it test-cluster test-twin
	@$(MAKE) --no-print-directory test-browser
	@$(MAKE) --no-print-directory test-asan
	@echo "make test: all passed"

# Which folder may include which (README "How it is built"): the checker's
# own tests first (it fails on a bad include in a copy of the tree), then
# the tree, with the table of which folder includes which. Seconds.
test-layers:
	@echo "== tools/test_layering.py"
	@python3 tools/test_layering.py
	@echo "== tools/layering.py"
	@python3 tools/layering.py

# One cmocka binary per module, so a crash stops one module's run only.
test-unit: $(UNIT_BIN) $(BUILD)/fuzz-replay
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $(TEST_ENV) $$t; done
	@echo "== $(BUILD)/fuzz-replay tests/fuzz/corpus"
	@$(BUILD)/fuzz-replay tests/fuzz/corpus/*

test-it: $(BINS) $(IT_BIN)
	@set -e; for t in $(IT_BIN); do echo "== $$t"; $(TEST_ENV) $$t; done

# Three instances behind HAProxy sharing Redis, through loadtest/cluster.py
# (tests/it_cluster.py says what it checks): about 10 s.
test-cluster: $(BINS)
	@echo "== tests/it_cluster.py"
	@python3 tests/it_cluster.py --build $(BUILD)

# /dashboard in headless Chromium under a short wrk load (tests/browser/).
# Installs Chromium and wrk when missing; when they cannot be installed it
# prints one SKIP line saying why and passes.
test-browser: $(BUILD)/hotpath $(BUILD)/hotpath-upstream $(DASH_NPM)
	@missing=$$(for p in $(DEB_BROWSER); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing missing Debian packages:" $$missing; \
	    { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; } || true; \
	fi
	@if [ ! -x $(CHROMIUM) ] || ! command -v wrk >/dev/null; then \
	    echo "SKIP browser test: $(CHROMIUM) or wrk is missing and apt-get could not install it"; \
	else \
	    echo "== tests/browser/dashboard.mjs"; \
	    $(TEST_ENV) HOTPATH_BUILD=$(abspath $(BUILD)) CHROMIUM=$(CHROMIUM) \
	        node tests/browser/dashboard.mjs; \
	fi

# The Kestrel twin's contract, against hotpath, over sockets: when dotnet is
# on PATH, build the twin and run it_twin; otherwise say so in one line.
test-twin: $(BINS) $(BUILD)/tests/it_twin
	@if command -v $(DOTNET) >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory twin && \
	    echo "== $(BUILD)/tests/it_twin" && \
	    $(TEST_ENV) KESTREL_BIN=$(abspath $(TWIN)) $(BUILD)/tests/it_twin; \
	else \
	    echo "it_twin: SKIPPED: dotnet is not on PATH, so the Kestrel twin (loadtest/kestrel) is not built or tested"; \
	fi

# The same unit and integration tests, with every binary (servers included)
# built with AddressSanitizer, LeakSanitizer and UBSan.
test-asan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/asan SAN=1 O=1 build
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    $(MAKE) --no-print-directory BUILD=$(BUILD)/asan SAN=1 O=1 test-unit test-it test-cluster

run: deps
	@$(MAKE) --no-print-directory $(BINS)
	@loadtest/serve.sh $(BUILD) config/hotpath.json

# N hotpath instances (1 worker each) behind HAProxy on :8080, sharing one
# Redis (the L2 cache) and one upstream stub; Ctrl-C stops them all. Files
# and logs in $(BUILD)/cluster; `python3 loadtest/cluster.py --help` for
# ports and the rest. bench-deps: python3, and wrk to load it.
N ?= 3
cluster: bench-deps
	@$(MAKE) --no-print-directory $(BINS)
	@python3 loadtest/cluster.py --build $(BUILD) --instances $(N)

# Load tests: they measure and report, they never assert. Both first run
# the runner's own unit tests (statistics, verdicts; under a second), and
# build the Kestrel twin when dotnet is on PATH (without it the runner says
# so in one line and runs the rest; a twin that fails to build stops them).
# bench-quick: under 3 minutes, report in loadtest/results/<date>-quick/.
# bench: the full run (two CPU caps, the twin in every part, strace, the
# micro-benchmark; about an hour and a half), report in
# loadtest/results/<date>/; PUBLISH=1 also replaces the committed
# loadtest/results/latest/, and refuses a tree with uncommitted changes.
# The capped sweep needs root (a cgroup); see loadtest/README.md.
bench_twin = @if command -v $(DOTNET) >/dev/null 2>&1; then $(MAKE) --no-print-directory twin; fi

bench: bench-deps
	@$(MAKE) --no-print-directory $(BINS)
	$(bench_twin)
	python3 loadtest/test_harness.py
	python3 loadtest/bench.py --build $(BUILD) $(if $(filter 1,$(PUBLISH)),--publish)

bench-quick: bench-deps
	@$(MAKE) --no-print-directory $(BINS)
	$(bench_twin)
	python3 loadtest/test_harness.py
	python3 loadtest/bench.py --build $(BUILD) --quick

# Fuzz the connection (parser, chain, handlers, transport faults) for
# FUZZ_SECONDS with libFuzzer + ASan + UBSan. New inputs go to
# build/fuzz/corpus, a crashing one to build/fuzz/crash-*: copy it into
# tests/fuzz/corpus, where make test replays every input. The seeds in
# tests/fuzz/corpus are read, never written.
FUZZ_SECONDS ?= 60
fuzz: fuzz-deps
	@$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang SAN=1 FUZZ=1 O=1 build/fuzz/fuzz-conn
	@mkdir -p build/fuzz/corpus
	build/fuzz/fuzz-conn -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -timeout=10 -rss_limit_mb=2048 -artifact_prefix=build/fuzz/ \
	    build/fuzz/corpus tests/fuzz/corpus

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

# --- the Kestrel twin (loadtest/kestrel, C#) --------------------------------
# hotpath's contract on ASP.NET Core, the yardstick of the same decision on
# .NET. Needs the .NET 10 SDK (`dotnet` on PATH; no Debian package carries
# it). The app references no NuGet package, so its restore asks no registry
# and it builds offline; micro/ restores BenchmarkDotNet and HybridCache
# through loadtest/kestrel/nuget.config, once. Intermediate files stay under
# $(BUILD) (--artifacts-path), none in the source tree.
DOTNET     ?= dotnet
DOTNET_ENV  = DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1 \
              DOTNET_GENERATE_ASPNET_CERTIFICATE=false DOTNET_CLI_WORKLOAD_UPDATE_NOTIFY_DISABLE=1
TWIN_DIR    = loadtest/kestrel
TWIN        = $(BUILD)/kestrel/hotpath-kestrel
TWIN_SRC    = $(wildcard $(TWIN_DIR)/*.cs) $(TWIN_DIR)/HotpathKestrel.csproj $(TWIN_DIR)/nuget.config

twin: $(TWIN)

$(TWIN): $(TWIN_SRC) Makefile
	@command -v $(DOTNET) >/dev/null 2>&1 || \
	    { echo "twin: dotnet is not on PATH: install the .NET 10 SDK to build $(TWIN_DIR)" >&2; exit 1; }
	$(DOTNET_ENV) $(DOTNET) publish $(TWIN_DIR)/HotpathKestrel.csproj -c Release -nologo -v quiet \
	    --artifacts-path $(BUILD)/kestrel-obj -o $(BUILD)/kestrel
	@touch $@

# BenchmarkDotNet: the chain completing synchronously as ValueTask<T>,
# Task<T> and the idiomatic Task (ns/op, B/op), the twin's own /plaintext
# path per mode, and a cache hit beside HybridCache's. Minutes, not CI. The
# tables go to $(MICRO_OUT)/report.md (ignored by git like every results
# folder but latest/); BenchmarkDotNet's own files to $(BUILD)/micro.
# MICRO_FILTER picks benchmarks ('*Shape*'); MICRO_ARGS adds
# BenchmarkDotNet options ('--job short', '--job dry' to check the wiring).
MICRO_OUT    ?= loadtest/results/micro
MICRO_FILTER ?= *
MICRO_ARGS   ?=
micro: twin
	$(DOTNET_ENV) $(DOTNET) build $(TWIN_DIR)/micro/Micro.csproj -c Release -nologo -v quiet \
	    --artifacts-path $(BUILD)/kestrel-micro
	@rm -rf $(BUILD)/micro && mkdir -p $(MICRO_OUT)
	$(DOTNET_ENV) $(DOTNET) $(BUILD)/kestrel-micro/bin/Micro/release/Micro.dll \
	    --filter '$(MICRO_FILTER)' --artifacts $(BUILD)/micro $(MICRO_ARGS) | tee $(BUILD)/micro.log
	@ls $(BUILD)/micro/results/*-report-github.md >/dev/null 2>&1 || \
	    { echo "micro: BenchmarkDotNet wrote no results (see $(BUILD)/micro.log)" >&2; exit 1; }
	@{ echo "# hotpath-kestrel micro-benchmark, $$(date -u +%Y-%m-%dT%H:%MZ), commit $$(git rev-parse --short HEAD 2>/dev/null)"; \
	   echo; grep '^facts:' $(BUILD)/micro.log | sed 's/^/- /'; echo; \
	   for f in $(BUILD)/micro/results/*-report-github.md; do \
	       sed -e "s/&#39;/'/g; s/&lt;/</g; s/&gt;/>/g; s/[*][*]//g" "$$f"; echo; done; } > $(MICRO_OUT)/report.md
	@echo "micro: $(MICRO_OUT)/report.md"

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
