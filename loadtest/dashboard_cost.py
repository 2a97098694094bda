#!/usr/bin/env python3
"""dashboard_cost.py - what watching /dashboard costs the server.

Measures, on one hotpath (workers 1, the stub behind it, both pinned as
the bench pins them) after a short mixed warm-up so every route and layer
has figures:
  - the sizes of GET /dashboard and GET /dashboard/data (and /stats);
  - server CPU per request (the per-thread scheduler clocks, as the bench
    reads them, over N requests on one keep-alive connection) for
    /dashboard/data, and for /stats and /plaintext beside it;
  - instructions per request under callgrind, the same three paths and
    the page itself, as the bench counts them: (Ir after n2 - Ir after n1)
    / (n2 - n1).
The page asks for /dashboard/data once a second, so a refresh costs one of
those requests per open page. Measures and prints; asserts nothing. It
shares the load test's parts (loadtest/harness): processes, the servers,
the CPU clock, callgrind.

  python3 loadtest/dashboard_cost.py [--build build] [--requests 20000]
"""

import argparse
import http.client
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import measure, targets  # noqa: E402
from harness.procs import HOST, Pinning, Procs, logger, stop_signals_raise  # noqa: E402

PATHS = ("/dashboard/data", "/stats", "/plaintext")
WARMUP = ("/plaintext", "/json", "/cache/a", "/cache/b", "/upstream/items/x", "/dashboard")
log = logger("dashboard_cost")


def send(port, path, n):
    c = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        for _ in range(n):
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"{path} answered {r.status}")
    finally:
        c.close()


def warm_up(port, rounds):
    for path in WARMUP:
        send(port, path, rounds)


def cpu_per_request(ctx, n):
    hp = targets.Server(targets.HOTPATH, ctx, name="hotpath-cpu")
    try:
        warm_up(hp.port, 200)
        sizes = {p: len(measure.http_get(hp.port, p)[1])
                 for p in ("/dashboard", "/dashboard/data", "/stats")}
        cpu = {}
        for path in PATHS:
            send(hp.port, path, 500)
            c0, w0 = measure.cpu_sample(hp.pid), time.monotonic()
            send(hp.port, path, n)
            cpu[path] = (measure.cpu_used(c0, measure.cpu_sample(hp.pid)) * 1e6 / n,
                         time.monotonic() - w0)
        return sizes, cpu
    finally:
        hp.stop()


def instructions_per_request(ctx, tmp, n):
    def start(wrapper):
        srv = targets.Server(targets.HOTPATH, ctx, name="hotpath-callgrind", wrapper=wrapper,
                             timeout=60)
        warm_up(srv.port, 50)
        return srv
    paths = [(p, p) for p in PATHS + ("/dashboard",)]
    out, _ = measure.callgrind(start, ctx.pin, n, 1, 100, paths, ("valuetask",),
                               os.path.join(tmp, "callgrind"), log)
    return {path: d["valuetask"]["ir_per_request"] for path, d in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--requests", type=int, default=20000, help="per path, for the CPU time")
    args = ap.parse_args()
    stop_signals_raise()
    with Procs("hotpath-dashcost-") as procs:
        ctx = targets.Context(build=os.path.abspath(args.build), procs=procs, pin=Pinning())
        targets.start_stub(ctx, 1)
        sizes, cpu = cpu_per_request(ctx, args.requests)
        print("body sizes, after the warm-up:")
        for path, n in sizes.items():
            print(f"  {path:<16} {n:8} bytes")
        print(f"server CPU per request, {args.requests} requests on one keep-alive connection:")
        for path, (us, wall) in cpu.items():
            print(f"  {path:<16} {us:6.1f} us  ({wall:.1f} s)")
        if shutil.which("valgrind") and shutil.which("callgrind_control"):
            ir = instructions_per_request(ctx, procs.tmp, 1000)
            print("instructions per request (callgrind, 1000 requests on one connection):")
            for path, n in ir.items():
                print(f"  {path:<16} {n:8.0f}")
        else:
            print("callgrind skipped: valgrind not installed")


if __name__ == "__main__":
    main()
