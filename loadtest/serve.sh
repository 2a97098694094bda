#!/usr/bin/env bash
# serve.sh - what `make run` runs: the upstream stub and hotpath, side by
# side, on the default configuration. Ctrl-C stops both (hotpath drains
# first, then exits 0).
#
#   loadtest/serve.sh [BUILD_DIR] [CONFIG]
#
# The stub listens on the port the config's "upstream.port" names (8081 in
# config/hotpath.json) and answers /items/{key} after UPSTREAM_DELAY_MS
# (default 5 ms), so /cache and /upstream have something to talk to.
set -euo pipefail
build=${1:-build}
config=${2:-config/hotpath.json}
upstream_port=$(tr -d '\n' < "$config" |
    sed -n 's/.*"upstream" *: *{[^}]*"port" *: *\([0-9]*\).*/\1/p')
upstream_port=${UPSTREAM_PORT:-${upstream_port:-8081}}

"$build/hotpath-upstream" --port "$upstream_port" --delay-ms "${UPSTREAM_DELAY_MS:-5}" &
stub=$!
trap 'kill "$stub" 2>/dev/null || true; wait "$stub" 2>/dev/null || true' EXIT

echo "upstream stub on 127.0.0.1:$upstream_port (pid $stub); starting hotpath, Ctrl-C stops both"
"$build/hotpath" --config "$config"
