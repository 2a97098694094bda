#!/usr/bin/env python3
"""side_by_side.py - the Kestrel twin's modes beside hotpath's, in one run.

A stopgap until `make bench` runs the twin itself (the bench framework is
being reworked; this script only produces the figures quoted in README.md's
"The same decision in .NET"). Python 3 standard library only; measures and
prints, never asserts.

Per target - hotpath in each of its modes, the twin in each of its modes,
and the twin's task and valuetask modes again with server GC - one
process, pinned with taskset to the server CPU (on one CPU .NET runs
workstation GC, the project file notwithstanding: the "-servergc" targets
get server GC, one heap, by DOTNET_PROCESSOR_COUNT=2);
wrk -t1 pinned to the other CPU, as are the upstream stub and this script.
Every target first serves every path for --prime seconds (the JIT's tiering
and the thread pool settle), then the rounds begin.
Rounds interleave the targets in a rotating order (a burst of noise from
another tenant lands on one run of each target, not on every run of one);
per round and path: a warm-up run, then a measured run bracketed by reads
of /proc/PID/stat (utime + stime) and of the server's /stats.

Reported per target and path: req/s, CPU us/request, allocated bytes per
request, gen0 collections per 1,000 requests, GC pause share of the run,
and, as medians of per-round paired ratios, req/s and CPU us/request over
hotpath's same-round valuetask figures, and CPU us/request over the same
server's valuetask mode (the price of the decision on that server).
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# path label -> (wrk script, its arguments, twin /stats route)
PATHS = {
    "plaintext": ("plaintext.lua", [], "/plaintext"),
    "json": ("json.lua", [], "/json"),
    "cache-hot": ("cache.lua", ["1.0"], "/cache/"),  # every request one of 16 hot keys
    "pipelined": ("pipeline.lua", ["16"], "/plaintext"),  # 16 per write: I/O's share shrinks
}
DEFAULT_PATHS = "plaintext,json,cache-hot"


def log(msg):
    print(f"[side_by_side {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Server:
    """One server process: hotpath, the twin or the stub, pinned to a CPU."""

    def __init__(self, name, argv, cpu, prefix, mode=None, env=None, tmp="."):
        self.name, self.mode = name, mode
        self.out = open(os.path.join(tmp, f"{name}.out"), "w+")
        self.err = open(os.path.join(tmp, f"{name}.err"), "w")
        e = dict(os.environ, DOTNET_CLI_TELEMETRY_OPTOUT="1", DOTNET_NOLOGO="1")
        e.update(env or {})
        self.proc = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, stdout=self.out,
                                     stderr=self.err, env=e, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.out.seek(0)
            m = re.search(re.escape(prefix) + r"\S*:(\d+)", self.out.read())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{name} did not start: see {self.err.name}")

    @property
    def pid(self):
        return self.proc.pid

    def cpu_s(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def stats(self):
        with urllib.request.urlopen(f"http://{HOST}:{self.port}/stats", timeout=10) as r:
            return json.load(r)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def alloc_figures(server, before, after, route):
    """Allocated bytes, gen0 collections and GC pause between two /stats reads."""
    m = server.mode
    a, b = before["modes"][m], after["modes"][m]
    if "gen0" not in b:  # hotpath: malloc counts, no collector
        return b["allocated_bytes"] - a["allocated_bytes"], b["requests"] - a["requests"], None, None
    return (b["allocated_bytes"] - a["allocated_bytes"], b["requests"] - a["requests"],
            b["gen0"] - a["gen0"], b["gc_pause_ms"] - a["gc_pause_ms"])


def wrk(port, path, duration, connections, cpu):
    script, args, _ = PATHS[path]
    cmd = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
           "-s", os.path.join(ROOT, "loadtest", script), f"http://{HOST}:{port}"]
    if args:
        cmd += ["--"] + args
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    m = re.search(r"^HOTPATH_RESULT (\{.*\})$", out, re.M)
    if not m:
        raise RuntimeError(f"no result line from wrk: {out[-400:]}")
    return json.loads(m.group(1))


def measure(server, path, args):
    wrk(server.port, path, args.warmup, args.connections, args.load_cpu)
    s0, c0, t0 = server.stats(), server.cpu_s(), time.monotonic()
    r = wrk(server.port, path, args.duration, args.connections, args.load_cpu)
    c1, t1, s1 = server.cpu_s(), time.monotonic(), server.stats()
    n = r["requests"]
    bytes_, served, gen0, pause_ms = alloc_figures(server, s0, s1, PATHS[path][2])
    errors = sum(r["errors"].values())
    return dict(rps=r["rps"], requests=n, errors=errors, cpu_us=(c1 - c0) * 1e6 / n if n else None,
                bytes_per_req=bytes_ / served if served else None,
                gen0_per_1k=gen0 * 1000 / served if served and gen0 is not None else None,
                gc_pause_share=pause_ms / ((t1 - t0) * 1000) if pause_ms is not None else None,
                p99_us=r["latency_us"]["p99"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1, help="seconds of load before each measured run")
    ap.add_argument("--prime", type=int, default=3, help="seconds of load per target and path before round 1")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--paths", default=DEFAULT_PATHS, help=f"comma list of: {', '.join(PATHS)}")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--no-server-gc", action="store_true",
                    help="skip the server-GC rows (DOTNET_PROCESSOR_COUNT=2 on the one pinned CPU)")
    ap.add_argument("--json", default="", help="write every run's figures here")
    args = ap.parse_args()
    paths = args.paths.split(",")
    tmp = tempfile.mkdtemp(prefix="side-by-side-")
    servers = []
    try:
        stub = Server("stub", [os.path.join(args.build, "hotpath-upstream"), "--port", "0"],
                      args.load_cpu, "listening on ", tmp=tmp)
        servers.append(stub)
        cfg = os.path.join(tmp, "config.json")
        with open(cfg, "w") as f:
            json.dump({"upstream": {"port": stub.port}, "workers": 1}, f)
        hp = os.path.join(args.build, "hotpath")
        twin = os.path.join(args.build, "kestrel", "hotpath-kestrel")
        targets = []
        for mode in ("valuetask", "task"):
            targets.append(Server(f"hotpath-{mode}", [hp, "--config", cfg, "--port", "0", "--workers", "1",
                                                      "--mode", mode],
                                  args.server_cpu, "hotpath listening on ", mode=mode, tmp=tmp))
        for mode in ("valuetask", "task", "valuetask-nopool", "aspnet"):
            targets.append(Server(f"twin-{mode}", [twin, "--config", cfg, "--port", "0", "--mode", mode],
                                  args.server_cpu, "hotpath-kestrel listening on ", mode=mode, tmp=tmp))
        if not args.no_server_gc:
            # Pinned to one CPU, the runtime runs workstation GC whatever the
            # project asks for (server GC needs more than one CPU); telling it
            # there are two gives server GC, one heap, on the one pinned CPU.
            for mode in ("valuetask", "task"):
                targets.append(Server(f"twin-{mode}-servergc", [twin, "--config", cfg, "--port", "0", "--mode", mode],
                                      args.server_cpu, "hotpath-kestrel listening on ", mode=mode,
                                      env={"DOTNET_PROCESSOR_COUNT": "2"}, tmp=tmp))
        servers += targets
        for t in targets:
            if t.name.startswith("twin"):
                gc = t.stats()["runtime"]
                log(f"{t.name}: pid {t.pid}, port {t.port}, .NET {gc['dotnet']}, processors {gc['processors']}, "
                    f"GC {'server' if gc['gc']['server'] else 'workstation'}, concurrent {gc['gc']['concurrent']}, "
                    f"heaps {gc['gc']['heap_count']}")
        # Before any round, every target serves every path for --prime
        # seconds: the JIT's tiering (tier 0, instrumented, then optimised
        # code) and the thread pool's sizing settle before anything counts.
        for t in targets:
            for path in paths:
                wrk(t.port, path, args.prime, args.connections, args.load_cpu)
        runs = {t.name: {p: [] for p in paths} for t in targets}
        for rnd in range(args.rounds):
            k = rnd % len(targets)
            order = targets[k:] + targets[:k]
            for path in paths:
                for t in order:
                    r = measure(t, path, args)
                    runs[t.name][path].append(r)
                    log(f"round {rnd + 1} {path:<9} {t.name:<24} {r['rps']:>9.0f} req/s "
                        f"{r['cpu_us']:6.2f} us/req {r['bytes_per_req'] or 0:7.1f} B/req "
                        f"gen0/1k {r['gen0_per_1k'] if r['gen0_per_1k'] is not None else '-'}")
        report(targets, runs, paths, args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(runs=runs, gc={t.name: t.stats()["runtime"] for t in targets
                                              if t.name.startswith("twin")}), f, indent=1)
    finally:
        for s in reversed(servers):
            s.stop()


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def report(targets, runs, paths, args):
    base = "hotpath-valuetask"
    print(f"\n{args.rounds} rounds x {args.duration:g} s per target and path, wrk -t1 -c{args.connections} "
          f"on CPU {args.load_cpu}, servers on CPU {args.server_cpu}; medians, and medians of per-round "
          f"ratios to {base} of the same round.\n")
    for path in paths:
        print(f"### {path}\n")
        print("| target | req/s | CPU us/req | bytes/req | gen0 per 1k req | GC pause share "
              "| req/s ÷ hotpath vt | CPU us/req ÷ hotpath vt | CPU us/req ÷ own valuetask | errors |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        b = runs[base][path]
        for t in targets:
            rs = runs[t.name][path]
            own = runs[own_valuetask(t.name)][path]
            share = med([r["gc_pause_share"] for r in rs])
            print(f"| {t.name} | {fmt(med([r['rps'] for r in rs]), ',.0f')} | {fmt(med([r['cpu_us'] for r in rs]), '.2f')} "
                  f"| {fmt(med([r['bytes_per_req'] for r in rs]), '.1f')} | {fmt(med([r['gen0_per_1k'] for r in rs]), '.3f')} "
                  f"| {fmt(share * 100 if share is not None else None, '.2f')}% | {fmt(ratio(rs, b, 'rps'), '.2f')} "
                  f"| {fmt(ratio(rs, b, 'cpu_us'), '.2f')} | {fmt(ratio(rs, own, 'cpu_us'), '.2f')} "
                  f"| {sum(r['errors'] for r in rs)} |")
        print()


def own_valuetask(name):
    """The valuetask target of the same server and GC: what a mode is compared with."""
    if name.startswith("hotpath"):
        return "hotpath-valuetask"
    return "twin-valuetask-servergc" if name.endswith("-servergc") else "twin-valuetask"


def ratio(runs, base, key):
    """The median of per-round ratios run[key] / base[key] (same round, same path)."""
    return med([r[key] / q[key] for r, q in zip(runs, base) if r[key] and q[key]])


if __name__ == "__main__":
    main()
