"""The closed-loop scenarios: wrk against every target, in rounds.

Per scenario: a warm-up per server (not recorded; for a runtime that
compiles as it runs, the twin, a priming pass of the profile's prime_s in
1 s steps, recorded: tiered JIT makes its first seconds slower), then
rounds; in each round every target runs once, the order rotated round by
round (A B N, B N A, N A B, ...), so neither a burst from another tenant
nor a position in the round lands on one target every time. hotpath's
modes are switched live (its config rewritten, SIGHUP, /stats polled until
it says so); the twin runs one process per mode; nginx is the yardstick.
The comparisons are per round (stats.paired_ratios), listed by
comparisons().

Which targets a scenario runs: hotpath's modes always, nginx where it has
the endpoint, and the twin's targets the profile asks for (twin_labels):
by default each scenario's own list - the modes where they say something
there: aspnet (the cached completed Task) on the synchronous paths,
valuetask-nopool (the pooling builder) where layers wait, server GC where
the garbage per second is highest.
"""

import json
import os
import time

from . import measure, stats, targets, threshold
from .procs import logger

log = logger("bench")

BASE = ("kestrel valuetask", "kestrel task")
SYNC = BASE + ("kestrel aspnet",)             # sync paths: the cached completed Task
WAITS = BASE + ("kestrel valuetask-nopool",)  # layers that wait: the pooling builder
SERVER_GC = ("kestrel-servergc valuetask", "kestrel-servergc task")
# Every runtime of the twin; the scenarios run the first two (--twin all: every
# mode of both), kestrel-nospin is the sweep's (targets.py says why): at full
# speed the twin keeps the thread pool's defaults, as a deployed Kestrel does.
TWINS = (targets.KESTREL, targets.KESTREL_SERVERGC, targets.KESTREL_NOSPIN)
TWIN_ALL = tuple(rt.label(m) for rt in TWINS[:2] for m in rt.modes)

# The wrk script, its arguments, the routes whose /stats deltas give the
# allocations (hotpath; the twin counts per mode), whether nginx has the
# same endpoint, and the twin's targets by default.
SCENARIOS = [
    dict(name="plaintext", script="plaintext.lua", args=[], routes=["/plaintext"], nginx=True,
         twin=SYNC + SERVER_GC,
         what="GET /plaintext, keep-alive, one request in flight per connection"),
    dict(name="pipelined", script="pipeline.lua", args=["16"], routes=["/plaintext"], nginx=True,
         twin=SYNC + SERVER_GC,
         what="GET /plaintext, 16 requests per write (TechEmpower pipelining)"),
    dict(name="json", script="json.lua", args=[], routes=["/json"], nginx=True, twin=SYNC,
         what="GET /json, serialized per request (nginx: a constant string)"),
    dict(name="cache-hot", script="cache.lua", args=["1.0"], routes=["/cache/"], nginx=False,
         twin=SYNC, what="GET /cache/{key}, every request one of 16 hot keys: hits only"),
    dict(name="cache-hit95", script="cache.lua", args=["0.95"], routes=["/cache/"], nginx=False,
         twin=BASE, what="GET /cache/{key}, 95% hot keys (hits), 5% never-seen keys (misses)"),
    dict(name="cache-hit20", script="cache.lua", args=["0.20"], routes=["/cache/"], nginx=False,
         twin=WAITS, what="GET /cache/{key}, 20% hot keys, 80% misses fetched from the stub"),
    dict(name="upstream", script="upstream.lua", args=[], routes=["/upstream/"], nginx=True,
         twin=WAITS,
         what="GET /upstream/items/x, proxied to the stub (nginx: proxy_pass, keepalive pool)"),
    dict(name="mixed", script="mixed.lua", args=[],
         routes=["/plaintext", "/json", "/cache/", "/upstream/"], nginx=False, twin=BASE,
         what="40% plaintext, 20% json, 25% cache hits, 5% misses, 10% upstream"),
]
BY_NAME = {sc["name"]: sc for sc in SCENARIOS}

# The metrics compared, per round: (key, label).
METRICS = (("rps", "req/s"), ("p50", "p50"), ("p99", "p99"), ("cpu_us_per_req", "CPU/req"))
# What a scenario's summary keeps per target (median and spread over rounds).
SUMMARY = ("rps", "p50", "p90", "p99", "max", "cpu_us_per_req",
           "cache_hit_ratio") + threshold.PER_REQUEST


def twin_labels(sc, spec):
    """The twin's targets in scenario sc: spec is "default" (the scenario's
    own list), "all", "none", or {scenario name: [labels]}."""
    if spec == "none":
        return ()
    if spec == "all":
        return TWIN_ALL
    if spec == "default":
        return tuple(sc["twin"])
    return tuple(spec.get(sc["name"], ()))


def scenario_labels(sc, spec, have):
    """The targets of scenario sc, in order - hotpath's modes, the twin's,
    nginx - among the labels in have (the servers running)."""
    want = [targets.HOTPATH.label(m) for m in targets.HOTPATH.modes]
    want += [lbl for lbl in TWIN_ALL if lbl in twin_labels(sc, spec)]
    if sc["nginx"]:
        want.append("nginx")
    return [lbl for lbl in want if lbl in have]


def comparisons(labels):
    """The (numerator, denominator) pairs compared per round among labels:
    every mode over its runtime's baseline; hotpath's valuetask over nginx;
    every twin target over hotpath in the same mode (valuetask for the
    twin's own modes); server GC over workstation GC, mode by mode."""
    have = set(labels)
    out = []

    def add(a, b):
        if a in have and b in have and (a, b) not in out:
            out.append((a, b))
    for lbl in labels:
        rt_name, mode = targets.split_label(lbl)
        rt = targets.RUNTIMES.get(rt_name)
        if rt and mode != rt.baseline:
            add(lbl, rt.label(rt.baseline))
    add(targets.HOTPATH.label("valuetask"), "nginx")
    for rt in TWINS:
        for m in rt.modes:
            hp_mode = m if m in targets.HOTPATH.modes else targets.HOTPATH.baseline
            add(rt.label(m), targets.HOTPATH.label(hp_mode))
    for m in targets.KESTREL_SERVERGC.modes:
        add(targets.KESTREL_SERVERGC.label(m), targets.KESTREL.label(m))
    return out


def ratio_key(num, den):
    return f"{num} ÷ {den}"


class Nonce:
    """A fresh HOTPATH_NONCE per wrk run keeps cold cache keys cold."""

    def __init__(self):
        self.n = 0

    def env(self):
        self.n += 1
        return dict(os.environ, HOTPATH_NONCE=f"{int(time.time())}x{self.n}")


def measure_run(srv, mode, label, sc, p, pin, nonce):
    """One wrk run of sc against srv in mode, with its CPU and counters."""
    srv.use(mode)
    s0 = srv.stats() if srv.rt.counters else None
    c0 = measure.cpu_sample(srv.pid)
    r = measure.wrk(pin, srv.port, sc["script"], sc["args"], p["connections"],
                    p["duration_s"], env=nonce.env())
    cpu = measure.cpu_used(c0, measure.cpu_sample(srv.pid))
    r.update(target=label, cpu_s=cpu,
             cpu_us_per_req=cpu * 1e6 / r["requests"] if r["requests"] else None)
    if s0 is None:
        return r
    s1 = srv.stats()
    if srv.rt.mode_path and targets.at(s1, srv.rt.mode_path) != mode:
        raise RuntimeError(f"{srv.name}: mode changed during the run: "
                           f"{targets.at(s1, srv.rt.mode_path)}")
    c = srv.counters(s0, s1, mode, sc["routes"])
    r.update(server_requests=c.get("requests"), **targets.per_request(c))
    if srv.rt.extras:
        r.update(srv.rt.extras(s0, s1, mode, sc["routes"]))
    return r


def warm(srv, mode, sc, p, pin, nonce):
    """A server's warm-up before a scenario: warmup_s of its load; for a
    runtime that compiles as it runs, prime_s (at least) in 1 s steps,
    whose req/s are returned (the priming pass)."""
    srv.use(mode)
    if not srv.rt.jit:
        measure.wrk(pin, srv.port, sc["script"], sc["args"], p["connections"], p["warmup_s"],
                    env=nonce.env())
        return None
    steps = []
    for _ in range(max(1, int(max(p["warmup_s"], p["prime_s"])))):
        r = measure.wrk(pin, srv.port, sc["script"], sc["args"], p["connections"], 1,
                        env=nonce.env())
        steps.append(r["rps"])
    srv.primed.add(sc["name"])
    return steps


# The sweep's priming of a process that compiles as it runs goes on until its
# compiler thread is idle: tiered compilation keeps recompiling (tier 0, then
# instrumented, then optimised) for ~15-20 s after a 3 s priming on this VM,
# and under a cap that CPU would come out of the measured quota.
JIT_QUIET_MS = 10      # a 1 s step in which the compiler thread used less is quiet
JIT_QUIET_STEPS = 3    # this many quiet steps in a row: it has gone idle
JIT_SETTLE_MAX_S = 30  # the bound on the wait


def jit_settled(ms_per_step, quiet_ms=JIT_QUIET_MS, need=JIT_QUIET_STEPS):
    """Whether the compiler's last `need` steps each used under quiet_ms."""
    return len(ms_per_step) >= need and all(x < quiet_ms for x in ms_per_step[-need:])


def settle_jit(srv, mode, sc, p, pin, nonce, max_s=JIT_SETTLE_MAX_S):
    """After warm(): go on loading srv with sc in 1 s steps until its JIT
    thread (rt.jit_thread) has gone idle (jit_settled), at most max_s.
    Returns (settled, the compiler's CPU ms in each step)."""
    if not srv.rt.jit_thread:
        return True, []
    srv.use(mode)
    used, deadline = [], time.monotonic() + max_s
    a = measure.thread_sample(srv.pid)
    while not jit_settled(used) and time.monotonic() < deadline:
        measure.wrk(pin, srv.port, sc["script"], sc["args"], p["connections"], 1,
                    env=nonce.env())
        b = measure.thread_sample(srv.pid)
        used.append(measure.by_thread_name(a, b).get(srv.rt.jit_thread, (0, 0))[0] * 1e3)
        a = b
    return jit_settled(used), used


def run_scenarios(servers, p, pin, names=None, notes=None):
    """Every scenario (or those named): {name: {what, labels, runs,
    summary, ratios, priming, advice}}. servers: {label: (Server, mode)}
    of every target running."""
    nonce = Nonce()
    out = {}
    hp_vt = targets.HOTPATH.label(targets.HOTPATH.baseline)
    for sc in SCENARIOS:
        if names and sc["name"] not in names:
            continue
        labels = scenario_labels(sc, p["twin"], servers)
        log(f"scenario {sc['name']}: warm-up, then {p['rounds']} rounds of {p['duration_s']}s "
            f"per target ({', '.join(labels)}), order rotated")
        runs, advice, priming = [], None, {}
        try:
            first = {}
            for lbl in labels:  # one warm-up per process, in the first mode it serves here
                first.setdefault(id(servers[lbl][0]), lbl)
            for lbl in first.values():
                srv, mode = servers[lbl]
                steps = warm(srv, mode, sc, p, pin, nonce)
                if steps:
                    priming[lbl] = steps
                    log(f"  {sc['name']:<12} {lbl:<28} priming: "
                        + " ".join(f"{x:.0f}" for x in steps) + " req/s per second")
            for rnd in range(p["rounds"]):
                for lbl in stats.rotated(labels, rnd):
                    srv, mode = servers[lbl]
                    r = measure_run(srv, mode, lbl, sc, p, pin, nonce)
                    r["round"] = rnd
                    runs.append(r)
                    log(f"  {sc['name']:<12} {lbl:<28} {r['rps']:>10.0f} req/s  "
                        f"p99 {r['latency_us']['p99'] or 0:>8.0f} us  "
                        + (f"{r['allocs_per_req']:.2f} allocs/req "
                           f"({r.get('worker_allocs_per_req') or 0:.2f} on the worker, "
                           f"{r.get('outside_chain_per_req') or 0:.2f} outside the chain)  "
                           if r.get("allocs_per_req") is not None else "")
                        + (f"{r['bytes_per_req']:.0f} B/req  gen0/1k "
                           f"{r.get('gen0_per_1k', 0):.3f}  "
                           if r.get("gen0_per_1k") is not None else "")
                        + f"{r['cpu_us_per_req'] or 0:.2f} cpu-us/req")
                    if rnd == p["rounds"] - 1 and lbl == hp_vt:
                        # Right after a valuetask run: the advisor's last
                        # window saw this load, and its inline results.
                        advice = advice_of(srv)
        except (RuntimeError, TimeoutError, OSError, ValueError) as e:
            log(f"  {sc['name']}: failed: {e}")
            if notes is not None:
                notes.append(f"scenario {sc['name']} failed: {e}")
        out[sc["name"]] = dict(what=sc["what"], script=sc["script"], args=sc["args"],
                               routes=sc["routes"], labels=labels, runs=runs,
                               summary=summarize(runs, labels), priming=priming,
                               ratios=ratios(runs, labels), advice=advice)
    return out


def advice_of(hp):
    status, body = measure.http_get(hp.port, "/advice", timeout=30)
    return json.loads(body) if status == 200 else None


def value(r, key):
    return r["latency_us"].get(key) if key in ("p50", "p90", "p99", "p99_9", "max") else r.get(key)


def summarize(runs, order):
    """Per target (in order): each figure's median and spread over rounds."""
    out = {}
    for target in [t for t in order if any(r["target"] == t for r in runs)]:
        rs = [r for r in runs if r["target"] == target]
        out[target] = {k: stats.spread(value(r, k) for r in rs) for k in SUMMARY}
        out[target]["errors"] = sum(sum(r["errors"].values()) for r in rs)
        out[target]["non2xx"] = sum(r.get("non2xx", 0) for r in rs)
    return out


def paired(runs, num, den, key):
    """The paired ratio num / den of one metric over the rounds."""
    rounds = sorted({r["round"] for r in runs})

    def per_round(target):
        return [next((value(r, key) for r in runs if r["round"] == k and r["target"] == target),
                     None) for k in rounds]
    return stats.ratio_summary(stats.paired_ratios(per_round(num), per_round(den)))


def ratios(runs, labels):
    """{"num ÷ den": {metric: paired ratio summary}} for comparisons(labels)."""
    out = {}
    for num, den in comparisons(labels):
        r = {key: paired(runs, num, den, key) for key, _ in METRICS}
        r = {k: v for k, v in r.items() if v}
        if r:
            out[ratio_key(num, den)] = r
    return out
