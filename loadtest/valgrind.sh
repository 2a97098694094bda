#!/usr/bin/env bash
# valgrind.sh - run a program under valgrind memcheck, the way `make
# valgrind` wants it judged: any memcheck error, or any definitely or
# indirectly lost block at exit, turns the exit status into 99; otherwise
# the program's own status passes through. Reports go to stderr (the
# integration harness captures a server's stderr and prints it when the
# server does not exit 0).
#
#   loadtest/valgrind.sh PROGRAM [ARGS...]
#
# As a stand-in binary: a symlink named NAME in DIR/valgrind/ runs DIR/NAME
# under memcheck with the arguments it was given. `make valgrind` links
# build/vg/valgrind/hotpath and build/vg/valgrind/hotpath-upstream here and
# hands them to the integration tests as HOTPATH_BIN and
# HOTPATH_UPSTREAM_BIN, so the servers they start (and signal, and wait
# for) are valgrind processes: exec keeps the pid.
#
# "Possibly lost" and "still reachable" blocks are not errors: libuv and
# glibc keep a few process-lifetime allocations (the signal pipe, thread
# stacks' TLS), and possible leaks in a program that keeps interior
# pointers are noise. VALGRIND_EXTRA adds options (e.g. --track-origins=yes
# when chasing an uninitialised value).
set -euo pipefail

self=$(basename "$0")
if [ "$self" = valgrind.sh ]; then
    [ $# -ge 1 ] || { echo "usage: $0 PROGRAM [ARGS...]" >&2; exit 2; }
    prog=$1
    shift
else
    prog="$(cd "$(dirname "$0")/.." && pwd)/$self"
fi

# shellcheck disable=SC2086 # VALGRIND_EXTRA is a list of options
exec valgrind --quiet --tool=memcheck --error-exitcode=99 \
    --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect \
    --num-callers=30 --fair-sched=try --child-silent-after-fork=yes \
    ${VALGRIND_EXTRA:-} "$prog" "$@"
