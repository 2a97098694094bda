"""The closed-loop scenarios: wrk against every target, in rounds.

Per scenario: a warm-up per server (not recorded), then rounds; in each
round every target runs once, the order rotated round by round (A B N,
B N A, N A B, ...), so neither a burst from another tenant nor a position
in the round lands on one target every time. hotpath's modes are switched
live (its config rewritten, SIGHUP, /stats polled until it says so); nginx
is the yardstick. The comparison is per round (stats.paired_ratios).
"""

import json
import os
import time

from . import measure, stats
from .procs import logger

log = logger("bench")

# The wrk script, its arguments, the hotpath routes whose /stats deltas
# give the allocations, and whether nginx has the same endpoint.
SCENARIOS = [
    dict(name="plaintext", script="plaintext.lua", args=[], routes=["/plaintext"], nginx=True,
         what="GET /plaintext, keep-alive, one request in flight per connection"),
    dict(name="pipelined", script="pipeline.lua", args=["16"], routes=["/plaintext"], nginx=True,
         what="GET /plaintext, 16 requests per write (TechEmpower pipelining)"),
    dict(name="json", script="json.lua", args=[], routes=["/json"], nginx=True,
         what="GET /json, serialized per request (nginx: a constant string)"),
    dict(name="cache-hit95", script="cache.lua", args=["0.95"], routes=["/cache/"], nginx=False,
         what="GET /cache/{key}, 95% hot keys (hits), 5% never-seen keys (misses)"),
    dict(name="cache-hit20", script="cache.lua", args=["0.20"], routes=["/cache/"], nginx=False,
         what="GET /cache/{key}, 20% hot keys, 80% misses fetched from the stub"),
    dict(name="upstream", script="upstream.lua", args=[], routes=["/upstream/"], nginx=True,
         what="GET /upstream/items/x, proxied to the stub (nginx: proxy_pass, keepalive pool)"),
    dict(name="mixed", script="mixed.lua", args=[],
         routes=["/plaintext", "/json", "/cache/", "/upstream/"], nginx=False,
         what="40% plaintext, 20% json, 25% cache hits, 5% misses, 10% upstream"),
]

# The metrics compared task vs valuetask, per round: (key, label).
METRICS = (("rps", "req/s"), ("p50", "p50"), ("p99", "p99"), ("cpu_us_per_req", "CPU/req"))


class Nonce:
    """A fresh HOTPATH_NONCE per wrk run keeps cold cache keys cold."""

    def __init__(self):
        self.n = 0

    def env(self):
        self.n += 1
        return dict(os.environ, HOTPATH_NONCE=f"{int(time.time())}x{self.n}")


def measure_run(srv, mode, sc, p, pin, nonce):
    """One wrk run of sc against srv in mode, with its CPU and counters."""
    srv.use(mode)
    s0 = srv.stats() if srv.rt.counters else None
    c0 = measure.cpu_seconds(srv.pid)
    r = measure.wrk(pin, srv.port, sc["script"], sc["args"], p["connections"],
                    p["duration_s"], env=nonce.env())
    c1 = measure.cpu_seconds(srv.pid)
    cpu = c1 - c0
    r.update(target=mode, cpu_s=cpu,
             cpu_us_per_req=cpu * 1e6 / r["requests"] if r["requests"] else None)
    if s0 is None:
        return r
    s1 = srv.stats()
    if srv.rt.mode_path and s1["server"]["mode"] != mode:
        raise RuntimeError(f"mode changed during the run: {s1['server']['mode']}")
    c = srv.counters(s0, s1, mode, sc["routes"])
    n = c.get("requests")
    r.update(server_requests=n,
             allocs_per_req=c["allocations"] / n if n and c.get("allocations") is not None else None,
             bytes_per_req=c["bytes"] / n if n and c.get("bytes") is not None else None)
    if "cache" in s0:  # hotpath's cache and upstream counters
        ca, cb = s0["cache"], s1["cache"]
        hits = cb["hits"] - ca["hits"] + cb["stale"] - ca["stale"]
        looked = hits + cb["misses"] - ca["misses"] + cb["coalesced"] - ca["coalesced"]
        non2xx = 0
        for route in sc["routes"]:
            a = s0["routes"].get(route, {}).get(mode, {}).get("status", {})
            b = s1["routes"].get(route, {}).get(mode, {}).get("status", {})
            non2xx += sum(b.get(k, 0) - a.get(k, 0) for k in ("other", "1xx", "3xx", "4xx", "5xx"))
        r.update(non2xx=non2xx, cache_hit_ratio=hits / looked if looked else None,
                 upstream_errors=sum(s1["upstream"]["errors"].values())
                 - sum(s0["upstream"]["errors"].values()))
    return r


def run_scenarios(hp, ng, p, pin, names=None, notes=None):
    """Every scenario (or those named): {name: {what, runs, summary,
    ratios, advice}}."""
    nonce = Nonce()
    out = {}
    for sc in SCENARIOS:
        if names and sc["name"] not in names:
            continue
        targets = [(hp, m) for m in hp.rt.modes] + ([(ng, "nginx")] if ng and sc["nginx"] else [])
        log(f"scenario {sc['name']}: warm-up, then {p['rounds']} rounds of {p['duration_s']}s "
            f"per target, order rotated")
        runs, advice = [], None
        try:
            for srv in {id(s): s for s, _ in targets}.values():
                srv.use(srv.rt.modes[0])
                measure.wrk(pin, srv.port, sc["script"], sc["args"], p["connections"],
                            p["warmup_s"], env=nonce.env())
            for rnd in range(p["rounds"]):
                for srv, mode in stats.rotated(targets, rnd):
                    r = measure_run(srv, mode, sc, p, pin, nonce)
                    r["round"] = rnd
                    runs.append(r)
                    log(f"  {sc['name']:<12} {mode:<9} {r['rps']:>10.0f} req/s  "
                        f"p99 {r['latency_us']['p99'] or 0:>8.0f} us  "
                        + (f"{r['allocs_per_req']:.2f} allocs/req  "
                           if r.get("allocs_per_req") is not None else "")
                        + f"{r['cpu_us_per_req'] or 0:.2f} cpu-us/req")
                    if rnd == p["rounds"] - 1 and srv is hp and mode == hp.rt.baseline:
                        # Right after a valuetask run: the advisor's last
                        # window saw this load, and its inline results.
                        advice = advice_of(hp)
        except (RuntimeError, TimeoutError, OSError, ValueError) as e:
            log(f"  {sc['name']}: failed: {e}")
            if notes is not None:
                notes.append(f"scenario {sc['name']} failed: {e}")
        out[sc["name"]] = dict(what=sc["what"], script=sc["script"], args=sc["args"],
                               routes=sc["routes"], runs=runs,
                               summary=summarize(runs, [m for _, m in targets]),
                               ratios=ratios(runs, hp.rt.baseline, hp.rt.compared),
                               advice=advice)
    return out


def advice_of(hp):
    status, body = measure.http_get(hp.port, "/advice", timeout=30)
    return json.loads(body) if status == 200 else None


def value(r, key):
    return r["latency_us"].get(key) if key in ("p50", "p90", "p99", "p99_9", "max") else r.get(key)


def summarize(runs, order):
    """Per target (in order): each metric's median and spread over rounds."""
    out = {}
    for target in [t for t in order if any(r["target"] == t for r in runs)]:
        rs = [r for r in runs if r["target"] == target]
        out[target] = {k: stats.spread(value(r, k) for r in rs)
                       for k in ("rps", "p50", "p90", "p99", "max", "cpu_us_per_req",
                                 "allocs_per_req", "bytes_per_req", "cache_hit_ratio")}
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


def ratios(runs, base, comp):
    """Per metric: comp / base, and base / nginx as "nginx:metric"."""
    out = {}
    for key, _ in METRICS:
        out[key] = paired(runs, comp, base, key)
        out["nginx:" + key] = paired(runs, base, "nginx", key)
    return {k: v for k, v in out.items() if v}
