"""The two cache tiers and the cluster, measured (issue 13): bench.py's
parts "tiers" and "cluster".

tiers: one hotpath (workers 1, the server CPU) with an L2 in a Redis of its
  own (on the load CPU) and an L1 of 4 KiB, which holds about 20 items.
  Two closed-loop wrk loads on the same server, in both modes:
    l1-hit  GET /cache/hot0 only: every request an L1 hit;
    l2-hit  GET /cache/hot0..hot4095 in turn: every key comes back 4,096
            requests later, long after the L1 dropped it, and Redis has it
            (the warm-up filled it; the TTL outlives the run): an L2 hit.
  Per run: req/s, the server's CPU µs per request, its allocations per
  request (/stats route deltas) and the share of requests L2 answered
  (l2.hits / requests). Rounds rotate the four targets; the L2/L1 ratio of
  CPU per request is paired per round.

cluster: 3 instances × 1 worker against 1 instance × 1 worker on the same
  CPU budget: every instance inside the run's cgroup at one cap
  (harness/cgroup.py), each set behind its own HAProxy on the load CPU
  (loadtest/cluster.py's configuration, health checks included), sharing a
  Redis as L2. The load: GET /cache/{256 hot keys} through HAProxy, so
  both pay the same proxy hop and differ only in instance count. CPU per
  request sums the instances' CPU.

Neither asserts anything; both report.
"""

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace

from . import measure, stats, targets
from .procs import HERE, logger, wait_port

log = logger("tiers")

L2_KEYS = 4096       # > the 4 KiB L1 by far: a key's next request is an L2 hit
CLUSTER_KEYS = 256   # fits every instance's L1: hits, after each one's fills
CLUSTER_N = 3


def start_redis(ctx):
    """A redis-server of the run's own, on the load CPU: its port."""
    port = targets.free_port()
    d = os.path.join(ctx.procs.tmp, f"redis-{port}")
    os.makedirs(d, exist_ok=True)
    p = ctx.procs.start("redis", ctx.pin.load + [
        shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
        "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", d])
    wait_port(port, p, 10)
    return port


def l2_runtime(redis_port, max_bytes=None, name="hotpath-l2"):
    """hotpath's runtime with cache.l2 on (and, given, a small L1)."""
    def config(ctx, srv_name, mode, port):
        path = targets.hotpath_config(ctx, srv_name, mode, port)
        with open(path) as f:
            cfg = json.load(f)
        cache = cfg.setdefault("cache", {})
        cache["ttl_ms"] = 3600000  # outlives the run: L2 keeps what the warm-up filled
        if max_bytes:
            cache["max_bytes"] = max_bytes
        cache.setdefault("l2", {})["url"] = f"redis://127.0.0.1:{redis_port}/0"
        targets.write_json(path, cfg)
        return path
    return replace(targets.HOTPATH, name=name, config=config)


def wait_l2(srv, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.stats().get("l2", {}).get("connected"):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{srv.name}: L2 not connected within {timeout} s")


# --- tiers ----------------------------------------------------------------------------

TIER_LOADS = [
    dict(name="l1-hit", script="cache.lua", args=["1", "x", "1"], routes=["/cache/"],
         what="GET /cache/hot0: an L1 hit every time"),
    dict(name="l2-hit", script="cache.lua", args=["1", "x", str(L2_KEYS)], routes=["/cache/"],
         what=f"GET /cache/hot0..hot{L2_KEYS - 1} in turn, past a 4 KiB L1: L2 hits"),
]


def one_run(srv, mode, load, p, pin):
    srv.use(mode)
    s0 = srv.stats()
    c0 = measure.cpu_sample(srv.pid)
    r = measure.wrk(pin, srv.port, load["script"], load["args"], p["connections"],
                    p["duration_s"])
    cpu = measure.cpu_used(c0, measure.cpu_sample(srv.pid))
    s1 = srv.stats()
    c = srv.counters(s0, s1, mode, load["routes"])
    n = c.get("requests") or 0
    l2 = s1["l2"]["hits"] - s0["l2"]["hits"]
    r.update(target=f"{load['name']} {mode}", load=load["name"], mode=mode, cpu_s=cpu,
             cpu_us_per_req=cpu * 1e6 / r["requests"] if r["requests"] else None,
             allocs_per_req=c["allocations"] / n if n else None,
             l2_share=l2 / n if n else None,
             l1_hit_share=((s1["cache"]["hits"] - s0["cache"]["hits"]) / n) if n else None)
    return r


def run_tiers(ctx, p, notes):
    """{what, runs, summary, ratios}: the L1 and L2 hit loads, both modes."""
    redis_port = start_redis(ctx)
    srv = targets.Server(l2_runtime(redis_port, max_bytes=4096), ctx)
    wait_l2(srv)
    combos = [(load, m) for load in TIER_LOADS for m in srv.rt.modes]
    log(f"tiers: warm-up (fills Redis with {L2_KEYS} keys), then {p['rounds']} rounds of "
        f"{p['duration_s']} s per load and mode, order rotated")
    for load in TIER_LOADS:
        measure.wrk(ctx.pin, srv.port, load["script"], load["args"], p["connections"],
                    max(p["warmup_s"], 2))
    runs = []
    for rnd in range(p["rounds"]):
        for load, mode in stats.rotated(combos, rnd):
            r = one_run(srv, mode, load, p, ctx.pin)
            r["round"] = rnd
            runs.append(r)
            log(f"  {r['target']:<18} {r['rps']:>9.0f} req/s  {r['cpu_us_per_req'] or 0:6.2f} "
                f"cpu-us/req  {r['allocs_per_req'] or 0:5.2f} allocs/req  "
                f"L2 {100 * (r['l2_share'] or 0):5.1f}%")
    srv.stop()
    order = [f"{load['name']} {m}" for load, m in combos]
    summary = {t: {k: stats.spread(r[k] for r in runs if r["target"] == t)
                   for k in ("rps", "cpu_us_per_req", "allocs_per_req", "l2_share",
                             "l1_hit_share")} for t in order}
    ratios = {}
    for m in srv.rt.modes:
        for key in ("cpu_us_per_req", "rps"):
            ratios[f"l2/l1 {m} {key}"] = paired(runs, f"l2-hit {m}", f"l1-hit {m}", key)
    return dict(what=[dict(name=x["name"], what=x["what"]) for x in TIER_LOADS], runs=runs,
                summary=summary, ratios=ratios, l1_max_bytes=4096, keys=L2_KEYS)


def paired(runs, num, den, key):
    rounds = sorted({r["round"] for r in runs})

    def per_round(t):
        return [next((r[key] for r in runs if r["round"] == k and r["target"] == t), None)
                for k in rounds]
    return stats.ratio_summary(stats.paired_ratios(per_round(num), per_round(den)))


# --- cluster --------------------------------------------------------------------------

def start_haproxy(ctx, name, servers):
    """HAProxy on the load CPU in front of servers, with loadtest/cluster.py's
    configuration: its port."""
    sys.path.insert(0, HERE)
    import cluster  # loadtest/cluster.py
    port = targets.free_port()
    a = argparse.Namespace(port=port, haproxy_threads=1)
    c = cluster.Cluster.__new__(cluster.Cluster)
    c.args, c.dir = a, os.path.join(ctx.procs.tmp, name)
    os.makedirs(c.dir, exist_ok=True)
    c.instances = [(i, s.port, None) for i, s in enumerate(servers, 1)]
    cfg = c.haproxy_config()
    p = ctx.procs.start(name, ctx.pin.load + [shutil.which("haproxy") or "haproxy", "-db",
                                              "-f", cfg])
    wait_port(port, p, 10)
    return port


def run_cluster(ctx, group, cap, p, notes):
    """{cap, runs, summary, ratios}: 3 instances against 1, one CPU cap."""
    if not shutil.which("haproxy") or not shutil.which("redis-server"):
        notes.append("cluster: haproxy or redis-server missing, not measured")
        return None
    redis_port = start_redis(ctx)
    rt = l2_runtime(redis_port, name="hotpath-cluster")
    group.set_cap(cap)
    single = [targets.Server(rt, ctx, name="single-1", cgroup=group)]
    three = [targets.Server(rt, ctx, name=f"cluster-{i}", cgroup=group)
             for i in range(1, CLUSTER_N + 1)]
    for s in single + three:
        wait_l2(s)
    setups = [("1 instance", single, start_haproxy(ctx, "haproxy-single", single)),
              (f"{CLUSTER_N} instances", three, start_haproxy(ctx, "haproxy-cluster", three))]
    args = ["1", "x", str(CLUSTER_KEYS)]
    log(f"cluster: {CLUSTER_N} instances vs 1, all in one cgroup capped at {cap:.0%} of a CPU, "
        f"each set behind HAProxy; {p['rounds']} rounds of {p['duration_s']} s")
    time.sleep(1.5)  # HAProxy's first health checks (inter 500 ms, rise 2)
    for _, _, port in setups:
        measure.wrk(ctx.pin, port, "cache.lua", args, p["connections"], max(p["warmup_s"], 2))
    runs = []
    for rnd in range(p["rounds"]):
        for label, servers, port in stats.rotated(setups, rnd):
            c0 = [measure.cpu_sample(s.pid) for s in servers]
            r = measure.wrk(ctx.pin, port, "cache.lua", args, p["connections"], p["duration_s"])
            cpu = sum(measure.cpu_used(a, measure.cpu_sample(s.pid)) for a, s in zip(c0, servers))
            r.update(target=label, round=rnd, cpu_s=cpu, cap_use=cpu / (cap * p["duration_s"]),
                     cpu_us_per_req=cpu * 1e6 / r["requests"] if r["requests"] else None)
            runs.append(r)
            log(f"  {label:<12} {r['rps']:>9.0f} req/s  {r['cpu_us_per_req'] or 0:6.2f} "
                f"cpu-us/req  p99 {r['latency_us']['p99'] or 0:.0f} us  "
                f"{100 * r['cap_use']:.0f}% of the cap")
    group.unlimit()
    for s in single + three:
        s.stop()
    order = [label for label, _, _ in setups]
    summary = {t: {k: stats.spread(r[k] if k != "p99" else r["latency_us"]["p99"]
                                   for r in runs if r["target"] == t)
                   for k in ("rps", "cpu_us_per_req", "p99", "cap_use")} for t in order}
    return dict(cap=cap, instances=CLUSTER_N, keys=CLUSTER_KEYS, runs=runs, summary=summary,
                ratios={"rps": paired(runs, order[1], order[0], "rps"),
                        "cpu_us_per_req": paired(runs, order[1], order[0], "cpu_us_per_req")})


# --- the report's section ---------------------------------------------------------------

def _med(s, digits=0, scale=1):
    if not s or s.get("median") is None:
        return "-"
    return f"{s['median'] * scale:,.{digits}f}"


def section(res):
    """Markdown lines for the tiers and cluster parts (empty when neither ran)."""
    t, c = res.get("tiers"), res.get("cluster")
    if not t and not c:
        return []
    L = ["## Cache tiers and the cluster", ""]
    if t:
        L += [f"One hotpath (workers 1) with an L1 of {t['l1_max_bytes']:,} bytes (about 20 "
              f"items) and L2 in Redis: `l1-hit` asks one key (an L1 hit every time), `l2-hit` "
              f"walks {t['keys']:,} keys the warm-up stored in Redis, so each comes back long "
              "after L1 dropped it. Medians over the rounds; CPU is the server process's.", "",
              "| load, mode | req/s | CPU µs/req | allocs/req | L2 answered | L1 hits |",
              "|---|---|---|---|---|---|"]
        for target, s in t["summary"].items():
            L.append(f"| {target} | {_med(s['rps'])} | {_med(s['cpu_us_per_req'], 2)} "
                     f"| {_med(s['allocs_per_req'], 2)} | {_med(s['l2_share'], 1, 100)}% "
                     f"| {_med(s['l1_hit_share'], 1, 100)}% |")
        L += ["", "Paired per round, L2 hit / L1 hit (median, min–max, rounds):", ""]
        L += [f"- {k}: {stats.fmt_ratio(v)}" for k, v in t["ratios"].items()]
        L.append("")
    if c:
        L += [f"{c['instances']} instances × 1 worker against 1 instance × 1 worker, all in "
              f"one cgroup capped at {c['cap']:.0%} of a CPU (the same budget), each set behind "
              f"its own HAProxy (loadtest/cluster.py's configuration) on the load CPU, sharing "
              f"Redis as L2; GET /cache/ over {c['keys']} hot keys. CPU µs/req sums the "
              "instances'; \"of the cap\" is that CPU over cap × duration: near 100% the "
              "instances are what runs out, well below it the proxy or the generator is.", "",
              "| setup | req/s | CPU µs/req | p99 µs | of the cap |", "|---|---|---|---|---|"]
        for target, s in c["summary"].items():
            L.append(f"| {target} | {_med(s['rps'])} | {_med(s['cpu_us_per_req'], 2)} "
                     f"| {_med(s['p99'])} | {_med(s['cap_use'], 0, 100)}% |")
        r = c["ratios"]
        L += ["", f"Paired per round, {c['instances']} instances / 1: req/s "
              f"{stats.fmt_ratio(r['rps'])}, CPU µs/req {stats.fmt_ratio(r['cpu_us_per_req'])}.",
              ""]
    return L
