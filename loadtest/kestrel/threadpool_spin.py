#!/usr/bin/env python3
"""threadpool_spin.py - where the Kestrel twin's CPU goes at low request
rates, with the .NET thread pool's spin-wait on and off, beside hotpath.

The finding it measures (loadtest/kestrel/README.md): an idle thread-pool
worker spins before it blocks (DOTNET_ThreadPool_UnfairSemaphoreSpinLimit,
runtimeconfig System.Threading.ThreadPool.UnfairSemaphoreSpinLimit), and at
a low rate every request wakes one, so under a CFS quota the spinning - not
the request path - uses most of the twin's CPU.

Per repeat, per variant (the order rotated each repeat): one fresh server
process in valuetask mode, pinned to the server CPU inside a cgroup made
for the run, primed uncapped at PRIME_RATE req/s for --prime-s seconds
(tiered compilation goes on for ~15-20 s after the sweep's 3 s priming:
give it 20), then four measured points on /plaintext: uncapped 1k and 5k
req/s, and capped at 25% of a CPU (period 4 ms) 1k and 5k. Each point is
one build/hotpath-load run (open loop, 64 connections, --spin, 1 s warm-up,
5 s measured, 2 s drain); over its measured window, per thread class: CPU
and times scheduled in (/proc/PID/task/*/schedstat), and the cgroup's
throttling counters. At the end: the table (one row per variant, cap and
rate; each repeat's figure side by side).

Loopback only; every run bounded in time; every process it starts and the
cgroup are removed on any exit. Needs root (the cgroup) and a built tree
(make, make twin). About 55 s per variant and repeat with --prime-s 20.

  python3 loadtest/kestrel/threadpool_spin.py --build build --repeats 2 --prime-s 20
  python3 loadtest/kestrel/threadpool_spin.py --only "kestrel default,kestrel spin=0" ...
  python3 loadtest/kestrel/threadpool_spin.py --table-from results.json   # render only
"""

import argparse
import json
import os
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import cgroup, measure, targets  # noqa: E402
from harness.procs import Pinning, Procs, stop_signals_raise  # noqa: E402

# label -> runtime; the third is a control: completing socket operations
# inline (no thread-pool hop) did not help in the measurements.
VARIANTS = {
    "kestrel default": targets.KESTREL,
    "kestrel spin=0": targets.KESTREL_NOSPIN,
    "kestrel inline": replace(targets.KESTREL, name="kestrel-inline",
                              env=dict(targets.KESTREL.env,
                                       DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS="1")),
    "hotpath": targets.HOTPATH,
}
CAP = 0.25
POINTS = [(None, 1000), (None, 5000), (CAP, 1000), (CAP, 5000)]  # (cap, req/s)
PRIME_RATE = 5000
PATH, CONNECTIONS, DURATION_S, WARMUP_S, DRAIN_S = "/plaintext", 64, 5, 1, 2
CLASSES = ("TP Worker", "Sockets", "Tiered Com")  # the rest counts as "other"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build", help="build directory (hotpath, hotpath-load, "
                    "hotpath-upstream, kestrel/hotpath-kestrel)")
    ap.add_argument("--repeats", type=int, default=2, help="rounds over every variant")
    ap.add_argument("--prime-s", type=int, default=20,
                    help=f"uncapped priming at {PRIME_RATE} req/s before the points")
    ap.add_argument("--only", default="", help="comma list of variants: " + ", ".join(VARIANTS))
    ap.add_argument("--out", default="", help="write every row (JSON) here")
    ap.add_argument("--table-from", default="", metavar="JSON",
                    help="print the table of an earlier --out and exit")
    a = ap.parse_args(argv)
    a.variants = [v.strip() for v in a.only.split(",") if v.strip()] or list(VARIANTS)
    for v in a.variants:
        if v not in VARIANTS:
            ap.error(f"--only: unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    if not 1 <= a.repeats <= 20 or not 1 <= a.prime_s <= 120:
        ap.error("--repeats 1..20, --prime-s 1..120")
    return a


def measure_point(ctx, group, srv, cap, rate):
    """One open-loop run at rate against srv, capped (cap) or not: its row."""
    if cap:
        group.set_cap(cap)
    else:
        group.unlimit()
    edge = {}

    def on_phase(name):
        edge[name] = (time.monotonic(), measure.thread_sample(srv.pid), group.stat())
    r = measure.open_loop(ctx.pin, ctx.build, srv.port, PATH, rate, CONNECTIONS, DURATION_S,
                          WARMUP_S, DRAIN_S, True, on_phase)
    if "measure" not in edge or "drain" not in edge:
        raise RuntimeError("hotpath-load announced no measured window")
    (t0, s0, g0), (t1, s1, g1) = edge["measure"], edge["drain"]
    by = measure.by_thread_name(s0, s1, CLASSES)
    cpu = sum(s for s, _ in by.values())
    runs = sum(n for _, n in by.values())
    window, done = t1 - t0, r["recorded"]
    return dict(cap=cap, rate=rate, window_s=window, cpu_s=cpu, recorded=done,
                cpu_us_per_req=cpu * 1e6 / done if done else None,
                runs_per_req=runs / done if done else None, cpu_share=cpu / window,
                cap_used=cpu / window / cap if cap else None, runs=runs,
                periods=g1["periods"] - g0["periods"],
                throttled=g1["throttled"] - g0["throttled"],
                throttled_s=g1["throttled_s"] - g0["throttled_s"],
                cpu_ms_by_thread={k: round(s * 1e3, 1) for k, (s, _) in by.items()}, load=r)


def run(a):
    pin = Pinning()
    rows = []
    with Procs("threadpool-spin-") as procs, cgroup.CpuGroup() as group:
        ctx = targets.Context(build=os.path.abspath(a.build), procs=procs, pin=pin)
        names = []
        for v in a.variants:
            rt = VARIANTS[v]
            why = rt.available(ctx)
            if rt is targets.HOTPATH and not os.access(os.path.join(ctx.build, "hotpath"),
                                                       os.X_OK):
                why = f"{ctx.build}/hotpath is not built (make)"
            if why:
                print(f"{v}: left out: {why}", flush=True)
            else:
                names.append(v)
        if not names:
            raise RuntimeError("no variant can run here")
        targets.start_stub(ctx, 0)
        print(f"# {group.describe()}; server {pin.server or 'unpinned'}, "
              f"load {pin.load or 'unpinned'}; priming {a.prime_s} s at {PRIME_RATE} req/s",
              flush=True)
        for rep in range(a.repeats):
            for v in names[rep % len(names):] + names[:rep % len(names)]:
                group.unlimit()
                rt = VARIANTS[v]
                srv = targets.Server(rt, ctx, mode="valuetask", name=f"{rt.name}-{rep}",
                                     cgroup=group)
                try:
                    measure.open_loop(pin, ctx.build, srv.port, PATH, PRIME_RATE, CONNECTIONS,
                                      a.prime_s, 0, 1, True)  # priming: not measured
                    for cap, rate in POINTS:
                        row = dict(rep=rep, variant=v, **measure_point(ctx, group, srv, cap,
                                                                       rate))
                        rows.append(row)
                        print(line(row), flush=True)
                finally:
                    group.unlimit()
                    srv.stop()
    return rows


def line(r):
    """A row's progress line."""
    return (f"rep {r['rep']} {r['variant']:<16} cap {cap_text(r['cap']):<8} {r['rate']:>5} req/s: "
            f"{r['cpu_us_per_req']:.0f} us/req, p99 {r['load']['latency_us']['p99'] / 1000:.1f} "
            f"ms, {r['runs_per_req']:.1f} runs/req"
            + (f", cap used {r['cap_used']:.0%}, throttled {r['throttled']}/{r['periods']}"
               if r["cap"] else ""))


def cap_text(cap):
    return f"{cap:.0%}/{cgroup.period_for(cap) / 1000:g}ms" if cap else "none"


def threads_text(r):
    t = r.get("cpu_ms_by_thread")
    return "/".join(f"{t.get(k, 0):.0f}" for k in CLASSES + ("other",)) if t else "-"


COLUMNS = [
    ("CPU us/req", lambda r: f"{r['cpu_us_per_req']:.0f}"),
    ("achieved req/s", lambda r: f"{r['load']['achieved_rps']:.0f}"),
    ("p99 ms", lambda r: f"{r['load']['latency_us']['p99'] / 1000:.1f}"),
    ("cap used", lambda r: f"{100 * r['cap_used']:.0f}%" if r["cap_used"] is not None else "-"),
    ("throttled/periods", lambda r: f"{r['throttled']}/{r['periods']}" if r["cap"] else "-"),
    ("runs/req", lambda r: f"{r['runs_per_req']:.1f}"),
    ("CPU ms in window: TP/Sockets/TieredJIT/other", threads_text),
]


def table(rows):
    """Markdown: one row per variant x cap x rate (variants in VARIANTS'
    order), each repeat's figure side by side ("rep 0 / rep 1")."""
    groups = {}
    for r in rows:
        groups.setdefault((r["variant"], r["cap"] or 0, r["rate"]), []).append(r)
    order = list(VARIANTS)
    L = ["| target | cap | offered | " + " | ".join(c for c, _ in COLUMNS) + " |",
         "|" + "---|" * (3 + len(COLUMNS))]
    for (v, cap, rate), rs in sorted(groups.items(), key=lambda kv: (
            order.index(kv[0][0]) if kv[0][0] in order else len(order), kv[0])):
        L.append(f"| {v} | {cap_text(cap)} | {rate} | "
                 + " | ".join(" / ".join(f(r) for r in rs) for _, f in COLUMNS) + " |")
    return "\n".join(L)


def main():
    a = parse_args()
    if a.table_from:
        with open(a.table_from) as f:
            print(table(json.load(f)))
        return 0
    for b in ("hotpath-load", "hotpath-upstream"):
        if not os.access(os.path.join(a.build, b), os.X_OK):
            sys.exit(f"threadpool_spin: {a.build}/{b} missing (make builds it)")
    stop_signals_raise()
    try:
        rows = run(a)
    except (cgroup.CgroupError, RuntimeError, TimeoutError, OSError) as e:
        sys.exit(f"threadpool_spin: {e}")
    except KeyboardInterrupt:
        sys.exit("threadpool_spin: interrupted; its processes are stopped, the cgroup removed")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
