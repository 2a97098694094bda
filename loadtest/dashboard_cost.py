#!/usr/bin/env python3
"""dashboard_cost.py - what watching /dashboard costs the server.

Measures, on one hotpath (workers 1, the stub behind it) after a short mixed
warm-up so every route and layer has figures:
  - the sizes of GET /dashboard and GET /dashboard/data (and /stats);
  - server CPU per request (utime + stime of the process over N requests on
    one keep-alive connection) for /dashboard/data, and for /stats and
    /plaintext beside it;
  - instructions per request under callgrind, the same three paths and
    the page itself, as bench.py counts them: (Ir after n2 - Ir after n1) /
    (n2 - n1).
The page asks for /dashboard/data once a second, so a refresh costs one of
those requests per open page. Measures and prints; asserts nothing.

  python3 loadtest/dashboard_cost.py [--build build] [--requests 20000]
"""

import argparse
import http.client
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the runner's process and HTTP helpers)

PATHS = ("/dashboard/data", "/stats", "/plaintext")
WARMUP = ("/plaintext", "/json", "/cache/a", "/cache/b", "/upstream/items/x", "/dashboard")


def send(port, path, n):
    c = http.client.HTTPConnection(bench.HOST, port, timeout=60)
    for _ in range(n):
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"{path} answered {r.status}")
    c.close()


def warm_up(port, rounds):
    for path in WARMUP:
        send(port, path, rounds)


def start_stub(build, tmp):
    out, err = os.path.join(tmp, "stub.out"), os.path.join(tmp, "stub.err")
    p = bench.PROCS.start("stub", [os.path.join(build, "hotpath-upstream"), "--port", "0",
                                   "--delay-ms", "1"], out, err)
    return int(bench.wait_for_line(out, r"listening on \S+:(\d+)", p, 10).group(1))


def cpu_per_request(build, tmp, stub_port, n):
    hp = bench.Hotpath(build, tmp, stub_port, [], name="hotpath-cpu")
    try:
        warm_up(hp.port, 200)
        sizes = {p: len(bench.http_get(hp.port, p)[1]) for p in ("/dashboard", "/dashboard/data", "/stats")}
        cpu = {}
        for path in PATHS:
            send(hp.port, path, 500)
            t0 = bench.cpu_ticks(hp.pid)
            w0 = time.monotonic()
            send(hp.port, path, n)
            ticks = bench.cpu_ticks(hp.pid) - t0
            cpu[path] = (ticks / bench.CLK_TCK * 1e6 / n, time.monotonic() - w0)
        return sizes, cpu
    finally:
        hp.stop()


def instructions_per_request(build, tmp, stub_port, n1, n2):
    cgdir = os.path.join(tmp, "callgrind")
    os.makedirs(cgdir)
    wrapper = ["valgrind", "--tool=callgrind", "--dump-instr=no",
               f"--callgrind-out-file={cgdir}/callgrind.out.%p"]
    hp = bench.Hotpath(build, tmp, stub_port, [], name="hotpath-callgrind", wrapper=wrapper)
    dumps = [0]

    def dump():
        bench.run(["callgrind_control", "-d", str(hp.pid)], 120)
        dumps[0] += 1
        f = os.path.join(cgdir, f"callgrind.out.{hp.pid}.{dumps[0]}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(f):
                with open(f) as fh:
                    for line in fh:
                        if line.startswith(("summary:", "totals:")):
                            return int(line.split()[1])
            time.sleep(0.1)
        raise RuntimeError(f"callgrind dump {f} not written")

    try:
        warm_up(hp.port, 50)
        out = {}
        for path in PATHS + ("/dashboard",):
            send(hp.port, path, 100)
            dump()
            send(hp.port, path, n1)
            i1 = dump()
            send(hp.port, path, n2)
            i2 = dump()
            out[path] = (i2 - i1) / (n2 - n1)
        return out
    finally:
        hp.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--requests", type=int, default=20000, help="per path, for the CPU time")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    with tempfile.TemporaryDirectory(prefix="hotpath-dashcost-") as tmp:
        try:
            stub_port = start_stub(build, tmp)
            sizes, cpu = cpu_per_request(build, tmp, stub_port, args.requests)
            print("body sizes, after the warm-up:")
            for path, n in sizes.items():
                print(f"  {path:<16} {n:8} bytes")
            print(f"server CPU per request, {args.requests} requests on one keep-alive connection:")
            for path, (us, wall) in cpu.items():
                print(f"  {path:<16} {us:6.1f} us  ({wall:.1f} s)")
            if bench.shutil.which("valgrind") and bench.shutil.which("callgrind_control"):
                ir = instructions_per_request(build, tmp, stub_port, 200, 1000)
                print("instructions per request (callgrind, 1000 - 200 requests):")
                for path, n in ir.items():
                    print(f"  {path:<16} {n:8.0f}")
            else:
                print("callgrind skipped: valgrind not installed")
        finally:
            bench.PROCS.stop_all()


if __name__ == "__main__":
    main()
