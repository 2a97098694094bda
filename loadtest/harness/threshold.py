"""The capped sweep's verdicts, as pure functions of its measurements.

Per run (classify):
  * generator-limited: the generator was late - send lag p99 > 1 ms or
    p50 > 100 us - or, when it sleeps between events (no --spin), it used
    >= 90% of its CPU. Such a run is retried; what it says is about the
    generator, so no verdict below uses it.
  * server-limited: the server used >= 90% of its cap over the measured
    window (its CPU over the window / (window x cap)).
  * held: achieved >= 95% of offered, p99 <= the cap's bound, and no
    request lost (errors other than timeouts). The bound is the longest a
    throttled server waits for its next period, period x (1 - cap), plus
    5 ms of queueing.

Per mode and cap:
  * saturation rate: the highest offered rate held (noise only ever makes
    a run fail, so this is the robust figure); the next rate measured above
    it closes its bracket. Lower rates not held are listed: a capped event
    loop batches more the more is waiting, so it can fail a low rate and
    hold a higher one.
  * parting rate (a runtime's compared mode vs its baseline): the lowest
    rate where the median over rounds of the paired ratio
    p99(task) / p99(valuetask) is above 1.2 and stays above at every higher
    rate, up to the first rate past the last one either mode held (beyond
    it both queues grow for the whole run and p99 measures the run's
    length, not the server).
  * scaling: a full core's figure is rate / cap. Each cap brackets it (the
    last rate held and the first not, over the cap); two caps agree when
    their brackets overlap, and only then is a full-core figure given (the
    overlap).
  * bands: at the article's 10k, 50k and 100k req/s per core (offered
    band x cap), the paired ratios of CPU per request and of p99.
"""

import math

from . import stats

GEN_LAG_P99_US = 1000.0
GEN_LAG_P50_US = 100.0
GEN_CPU_FULL = 0.90
SERVER_AT_CAP = 0.90
HELD_ACHIEVED = 0.95
P99_SLACK_US = 5000.0
PART_RATIO = 1.2
BANDS = (10000, 50000, 100000)  # req/s per core, the article's bands
LOST = ("connect", "read", "write", "status", "unsent")
# The runtimes' per-request figures a point keeps the median of (targets.FIGURES).
PER_REQUEST = ("allocs_per_req", "bytes_per_req", "outside_chain_per_req",
               "worker_allocs_per_req", "gen0_per_1k", "gen1_per_1k", "gen2_per_1k",
               "gc_pause_share")


def p99_bound_us(throttle_wait_us):
    return throttle_wait_us + P99_SLACK_US


def classify(run, bound_us, spin):
    """Set run["limit"] ("generator", "server" or "-") and run["held"]."""
    lag, gen_cpu = run["send_lag_us"], run["generator_cpu_share"]
    why = []
    if lag["p99"] > GEN_LAG_P99_US or lag["p50"] > GEN_LAG_P50_US:
        why.append(f"send lag p50 {lag['p50']:.0f} us, p99 {lag['p99']:.0f} us")
        if spin and gen_cpu < GEN_CPU_FULL:
            why.append(f"it had {gen_cpu:.0%} of its CPU while spinning: descheduled")
    elif not spin and gen_cpu >= GEN_CPU_FULL:
        why.append(f"it used {gen_cpu:.0%} of its CPU")
    run["limit_why"] = "; ".join(why)
    run["limit"] = ("generator" if why else
                    "server" if run.get("cap_share") is not None
                    and run["cap_share"] >= SERVER_AT_CAP else "-")
    run["lost"] = sum(run["errors"].get(k, 0) for k in LOST)
    run["held"] = (run["achieved_rps"] >= HELD_ACHIEVED * run["offered_rps"]
                   and run["latency_us"]["p99"] <= bound_us and run["lost"] == 0)
    return run


def point_summary(runs, rate, bound_us):
    """One target at one rate: medians over the kept runs, the majority's
    limit, and whether the point held (medians against the rules)."""
    if not runs:
        return None
    lat = lambda k: stats.median(r["latency_us"][k] for r in runs)  # noqa: E731
    limits = [r["limit"] for r in runs]
    limit = max(("generator", "server", "-"), key=limits.count)
    achieved = stats.median(r["achieved_rps"] for r in runs)
    p99 = lat("p99")
    return dict(
        achieved=achieved, p50=lat("p50"), p99=p99, p99_9=lat("p99_9"),
        p99_min=min(r["latency_us"]["p99"] for r in runs),
        p99_max=max(r["latency_us"]["p99"] for r in runs),
        cap_share=stats.median(r.get("cap_share") for r in runs),
        throttled=stats.median(r.get("throttled_share") for r in runs),
        cpu_us_per_req=stats.median(r.get("cpu_us_per_req") for r in runs),
        **{f: stats.median(r.get(f) for r in runs) for f in PER_REQUEST},
        gen_cpu=stats.median(r["generator_cpu_share"] for r in runs),
        others_cpu=stats.median(r.get("others_cpu") for r in runs),
        lag_p99=max(r["send_lag_us"]["p99"] for r in runs),
        limit=limit, n=len(runs),
        lost=sum(r["lost"] for r in runs),
        held=achieved >= HELD_ACHIEVED * rate and p99 <= bound_us
        and all(r["lost"] == 0 for r in runs))


def usable(pt, label):
    s = pt["summary"].get(label)
    return s is not None and s["limit"] != "generator"


def saturation(points, label):
    """{rate, next, next_limit, not_held_below, top}: the saturation rate -
    the highest rate held (None if none was) - the first rate measured
    above it (not held, by definition; None if it was the top) and what
    limited that point, the rates below it that were not held, and the top
    rate measured. Noise from other tenants only ever makes a run fail, so
    the highest rate held is the robust figure; a capped event loop can
    fail a low rate and hold a higher one (it batches more the more is
    waiting), which not_held_below shows."""
    rows = [p for p in sorted(points, key=lambda p: p["rate"]) if usable(p, label)]
    held = [p["rate"] for p in rows if p["summary"][label]["held"]]
    sat = max(held) if held else None
    above = [p for p in rows if sat is None or p["rate"] > sat]
    nxt = above[0] if above else None
    return dict(rate=sat, next=nxt and nxt["rate"],
                next_limit=nxt and nxt["summary"][label]["limit"],
                not_held_below=[p["rate"] for p in rows if sat is not None and p["rate"] < sat
                                and not p["summary"][label]["held"]],
                top=rows[-1]["rate"] if rows else None)


def failed_last(points, label, k):
    """Whether label did not hold at each of the k highest rates measured
    (generator-limited points left out)."""
    rows = [p for p in sorted(points, key=lambda p: p["rate"]) if usable(p, label)]
    return len(rows) >= k and not any(p["summary"][label]["held"] for p in rows[-k:])


def past_saturation(points, labels, rate, k=2):
    """Whether every one of labels failed to hold at each of its k highest
    rates measured below rate: measuring them at rate says nothing new."""
    below = [p for p in points if p["rate"] < rate]
    return bool(labels) and all(failed_last(below, lbl, k) for lbl in labels)


def p99_ratio(pt, base, comp):
    """The paired p99 ratio comp / base over the point's rounds."""
    b = {r["round"]: r["latency_us"]["p99"] for r in pt["runs"].get(base, [])}
    c = {r["round"]: r["latency_us"]["p99"] for r in pt["runs"].get(comp, [])}
    rounds = sorted(set(b) & set(c))
    return stats.ratio_summary(stats.paired_ratios([c[k] for k in rounds],
                                                   [b[k] for k in rounds]))


def parting(points, base, comp):
    """{rate, prev, rows, until}: the parting rate (None if the modes did
    not part), the rate measured just below it, per rate the p99 ratio and
    whether it parted, and the last rate considered."""
    rows = [p for p in sorted(points, key=lambda p: p["rate"])
            if usable(p, base) and usable(p, comp)]
    # Past the last rate either mode held, neither holds anything: the
    # first of those rates is the last one considered.
    either = [i for i, p in enumerate(rows)
              if p["summary"][base]["held"] or p["summary"][comp]["held"]]
    last = min(either[-1] + 1, len(rows) - 1) if either else 0
    until = rows[last]["rate"] if rows else None
    table = []
    for p in rows:
        if p["rate"] > until:
            break
        r = p99_ratio(p, base, comp)
        table.append(dict(rate=p["rate"], ratio=r,
                          parted=bool(r) and r["median"] > PART_RATIO))
    rate = prev = None
    for i, row in enumerate(table):
        if all(x["parted"] for x in table[i:]):
            rate = row["rate"]
            prev = table[i - 1]["rate"] if i else None
            break
    return dict(rate=rate, prev=prev, rows=table, until=until)


def bracket_per_core(lo, hi, cap):
    """[lo/cap, hi/cap] as a full core's bracket; None when open-ended."""
    if lo is None or hi is None:
        return None
    return (lo / cap, hi / cap)


def agree(brackets):
    """The overlap of every bracket (None if any is missing or they do not
    all overlap, or fewer than two)."""
    if len(brackets) < 2 or any(b is None for b in brackets):
        return None
    lo = max(b[0] for b in brackets)
    hi = min(b[1] for b in brackets)
    return (lo, hi) if lo <= hi else None


def band_answer(points, base, comp, band, cap):
    """At offered band x cap: the paired ratios comp / base of CPU per
    request and of p99, and each mode's share of the cap."""
    pt = next((p for p in points if p.get("per_core") == band), None)
    if pt is None:
        return None
    out = dict(rate=pt["rate"], per_core=band)
    for key, get in (("cpu", lambda r: r.get("cpu_us_per_req")),
                     ("p99", lambda r: r["latency_us"]["p99"])):
        b = {r["round"]: get(r) for r in pt["runs"].get(base, [])}
        c = {r["round"]: get(r) for r in pt["runs"].get(comp, [])}
        rounds = sorted(set(b) & set(c))
        out[key] = stats.ratio_summary(stats.paired_ratios([c[k] for k in rounds],
                                                           [b[k] for k in rounds]))
    for label in (base, comp):
        s = pt["summary"].get(label)
        out[label] = s
    return out


def refine_rates(points, labels, pairs, resolution):
    """Per-core rates to measure next: the geometric middle of every
    saturation bracket and of the bracket below a parting rate that are
    wider than resolution (0.1: 10%)."""
    mids = set()

    def mid(lo, hi):
        if lo and hi and hi / lo > 1 + resolution:
            pc = {p["rate"]: p["per_core"] for p in points}
            mids.add(int(round(math.sqrt(pc[lo] * pc[hi]), -3)))
    for label in labels:
        s = saturation(points, label)
        mid(s["rate"], s["next"])
    for base, comp in pairs:
        pt = parting(points, base, comp)
        mid(pt["prev"], pt["rate"])
    have = {p["per_core"] for p in points}
    return sorted(m for m in mids if m not in have)
