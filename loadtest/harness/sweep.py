"""The capped sweep: the offered rate climbs until the server, not the load
generator, runs out - under each CPU cap, for every target.

Per cap: the run's cgroup gets the cap (cgroup.py), then offered rates
from a per-core grid (offered = per-core rate x cap, so caps compare per
core) climb until every target has failed to hold a rate, with the
article's bands (threshold.BANDS) always on the grid and measured for more
rounds; the climb stops once every target failed to hold its last two
rates (one failure is not enough: a capped event loop that fails a low
rate can hold a higher one, batching more); a runtime whose every target
has done so is left out of the rates above (the twin saturates at a
fraction of hotpath's rate). Each rate is measured in rounds, every target
once per round in an order rotated from round to round; each run is one
hotpath-load (open loop) whose measured window is bracketed by the
generator's phase lines, where the server's CPU and the cgroup's
throttling counters are read.
Then the brackets around each saturation and parting rate that are wider
than the profile's resolution are split (geometric middle) and measured
too. A run that was generator-limited is retried (twice); one that failed
to hold while neither side was at its limit (a hiccup from another tenant)
once. Every retried run is kept, marked discarded, with the reason.

Bounded: the profile's time budget is shared between the caps; a cap out
of time stops where it is and the report says so.
"""

import time

from . import cgroup as cg
from . import measure, stats, targets, threshold
from .procs import logger

log = logger("bench")


class Target:
    """One (runtime, mode) of the comparison and the server that serves it."""

    def __init__(self, server, mode):
        self.server, self.mode = server, mode
        self.runtime = server.rt.name
        self.label = server.rt.label(mode)


def pairs_of(targets):
    """(baseline label, compared label) per runtime."""
    out = []
    for rt in dict.fromkeys(t.server.rt for t in targets):
        labels = {t.mode: t.label for t in targets if t.server.rt is rt}
        if rt.baseline in labels and rt.compared in labels:
            out.append((labels[rt.baseline], labels[rt.compared]))
    return out


class CappedSweep:
    def __init__(self, targets, group, p, pin, build, path, notes):
        self.targets, self.group, self.p = targets, group, p
        self.labels_of = lambda runtime: [t.label for t in targets if t.runtime == runtime]
        self.pin, self.build, self.path, self.notes = pin, build, path, notes
        self.k = 0  # the round counter the rotation turns on

    # --- one run -------------------------------------------------------------

    def measure_once(self, t, rate, cap, rnd):
        """One hotpath-load run against t; the server's CPU and the cgroup's
        throttling read at the generator's window edges, the allocations
        from /stats around the run."""
        p, srv = self.p, t.server
        srv.use(t.mode)
        s0 = srv.stats()
        edge = {}

        def on_phase(name):
            edge[name] = (time.monotonic(), measure.cpu_sample(srv.pid), self.group.stat(),
                          measure.machine_busy_s())
        r = measure.open_loop(self.pin, self.build, srv.port, self.path, rate, p["connections"],
                              p["sweep_duration_s"], p["sweep_warmup_s"], p["sweep_drain_s"],
                              p["spin"], on_phase)
        s1 = srv.stats()
        if "measure" not in edge or "drain" not in edge:
            raise RuntimeError("hotpath-load announced no measured window")
        (t0, c0, g0, b0), (t1, c1, g1, b1) = edge["measure"], edge["drain"]
        cpu, window = measure.cpu_used(c0, c1), t1 - t0
        # What the rest of the machine used meanwhile (other tenants, this
        # runner): all busy CPU less the server's and the generator's.
        others = (b1 - b0 - cpu) / window - r["generator_cpu_share"]
        periods = g1["periods"] - g0["periods"]
        answered = r["achieved_rps"] * r["duration_s"]
        r.update(**targets.per_request(srv.counters(s0, s1, t.mode, (self.path,))))
        r.update(target=t.label, round=rnd, offered=rate, window_s=window, server_cpu_s=cpu,
                 cpu_share=cpu / window, cap_share=cpu / window / cap,
                 others_cpu=max(0.0, others),
                 throttled_share=(g1["throttled"] - g0["throttled"]) / periods if periods else 0.0,
                 cpu_us_per_req=cpu * 1e6 / answered if answered else None)
        return r

    def run_one(self, t, rate, cap, bound_us, rnd, deadline):
        """measure_once, classified; retried twice when the generator was the
        limit, once when the run did not hold with neither side at its limit
        (while the deadline allows). Returns the kept run and the discarded."""
        discarded = []
        for attempt in range(3):
            r = threshold.classify(self.measure_once(t, rate, cap, rnd), bound_us, self.p["spin"])
            retry = time.monotonic() < deadline and (
                (r["limit"] == "generator" and attempt < 2)
                or (not r["held"] and r["limit"] == "-" and attempt < 1))
            if not retry:
                return r, discarded
            r["discarded"] = ("generator-limited: " + r["limit_why"] if r["limit"] == "generator"
                              else "not held with neither side at its limit")
            discarded.append(r)
        return r, discarded

    # --- one rate --------------------------------------------------------------

    def measure_point(self, cap, per_core, rounds, bound_us, deadline, points=None):
        """Every target at per_core x cap, in rounds (the first always; the
        others and any retry only while the deadline allows). Given the
        points measured so far, a runtime whose every target failed to hold
        its two highest rates below this one is left out (the article's
        bands are measured for every target)."""
        rate = max(1, round(per_core * cap))
        band = per_core in threshold.BANDS
        tl = self.targets if points is None or band else [
            t for t in self.targets
            if not threshold.past_saturation(points, self.labels_of(t.runtime), rate)]
        pt = dict(rate=rate, per_core=per_core, band=band,
                  runs={t.label: [] for t in tl}, discarded={t.label: [] for t in tl})
        for i in range(rounds):
            if i and time.monotonic() > deadline:
                break
            rnd = self.k
            self.k += 1
            for t in stats.rotated(tl, rnd):
                r, disc = self.run_one(t, rate, cap, bound_us, rnd, deadline)
                pt["runs"][t.label].append(r)
                pt["discarded"][t.label] += disc
        pt["summary"] = {lbl: threshold.point_summary(rs, rate, bound_us)
                         for lbl, rs in pt["runs"].items()}
        for t in tl:
            s = pt["summary"][t.label]
            log(f"  cap {cap:.0%} {rate:>7} req/s ({per_core / 1000:g}k/core) {t.label:<20} "
                f"achieved {s['achieved']:>8.0f}  p99 {s['p99']:>8.0f} us  "
                f"cap used {s['cap_share']:.0%}  lag p99 {s['lag_p99']:>6.0f} us  "
                f"{'held' if s['held'] else 'NOT HELD'}"
                + (f"  [{s['limit']}-limited]" if s["limit"] != "-" else "")
                + (f"  ({len(pt['discarded'][t.label])} discarded)"
                   if pt["discarded"][t.label] else ""))
        return pt

    # --- one cap -----------------------------------------------------------------

    def run_cap(self, cap, deadline):
        p = self.p
        self.group.set_cap(cap)
        wait = cg.throttle_wait_us(cap)
        bound = threshold.p99_bound_us(wait)
        out = dict(cap=cap, period_us=self.group.period_us, throttle_wait_us=wait,
                   bound_us=bound, points=[], stopped=None)
        log(f"capped sweep {self.path}: cap {cap:.0%} of one CPU (period "
            f"{self.group.period_us} us, quota {round(cap * self.group.period_us)} us); "
            f"p99 bound {bound / 1000:.2f} ms")
        labels = [t.label for t in self.targets]
        pairs = pairs_of(self.targets)
        grid = sorted(set(p["sweep_per_core"]) | set(threshold.BANDS))
        try:
            for pc in grid:
                if time.monotonic() > deadline:
                    out["stopped"] = f"time budget spent before {pc / 1000:g}k/core"
                    break
                rounds = p["band_rounds"] if pc in threshold.BANDS else p["sweep_rounds"]
                pt = self.measure_point(cap, pc, rounds, bound, deadline, out["points"])
                out["points"].append(pt)
                gen = [all(s["limit"] == "generator" for s in q["summary"].values())
                       for q in out["points"][-2:]]
                if len(gen) == 2 and all(gen):
                    out["stopped"] = (f"the load generator was the limit at two rates in a row "
                                      f"(up to {pt['rate']:,} req/s) for every target, after "
                                      "retries")
                    break
                if all(threshold.failed_last(out["points"], lbl, 2) for lbl in labels):
                    break  # every target is past its saturation
            # The article's bands are answered even above where the climb stopped.
            for pc in sorted(set(threshold.BANDS) - {q["per_core"] for q in out["points"]}):
                if time.monotonic() < deadline:
                    out["points"].append(self.measure_point(cap, pc, p["band_rounds"], bound,
                                                            deadline))
            for _ in range(p["refine"]):
                mids = threshold.refine_rates(out["points"], labels, pairs, p["resolution"])
                if not mids or time.monotonic() > deadline:
                    break
                for pc in mids:
                    if time.monotonic() > deadline:
                        out["stopped"] = "time budget spent while refining"
                        break
                    out["points"].append(self.measure_point(cap, pc, p["sweep_rounds"], bound,
                                                            deadline, out["points"]))
        except (RuntimeError, TimeoutError, OSError, ValueError) as e:
            out["stopped"] = f"failed: {e}"
            log(f"  cap {cap:.0%}: failed: {e}")
        if out["stopped"]:
            self.notes.append(f"capped sweep at {cap:.0%}: stopped: {out['stopped']}")
        out["points"].sort(key=lambda x: x["rate"])
        out["threads_outside"] = {t.label: self.group.threads_outside(t.server.pid)
                                  for t in self.targets}
        return analyse_cap(out, labels, pairs)

    def run(self, caps):
        t0 = time.monotonic()
        budget = self.p["sweep_budget_s"]
        caps_out = []
        for i, cap in enumerate(caps):
            left = budget - (time.monotonic() - t0)
            caps_out.append(self.run_cap(cap, time.monotonic() + left / (len(caps) - i)))
        self.group.unlimit()
        labels = [t.label for t in self.targets]
        pairs = pairs_of(self.targets)
        return dict(path=self.path, caps=caps_out, scaling=scaling(caps_out, labels, pairs),
                    labels=labels, pairs=[list(x) for x in pairs], wall_s=time.monotonic() - t0)


def analyse_cap(out, labels, pairs):
    """A cap's verdicts from its points: saturation per target, parting and
    band answers per runtime (threshold.py's rules)."""
    pts, cap = out["points"], out["cap"]
    out["saturation"] = {lbl: threshold.saturation(pts, lbl) for lbl in labels}
    out["parting"] = {f"{b} vs {c}": dict(base=b, comp=c, **threshold.parting(pts, b, c))
                      for b, c in pairs}
    out["bands"] = {f"{b} vs {c}": [threshold.band_answer(pts, b, c, band, cap)
                                    for band in threshold.BANDS] for b, c in pairs}
    return out


def scaling(caps_out, labels, pairs):
    """Per target and per runtime: each cap's bracket per core and, where
    they overlap, the full-core figure."""
    out = {}
    for lbl in labels:
        br = [threshold.bracket_per_core(c["saturation"][lbl]["rate"],
                                         c["saturation"][lbl]["next"], c["cap"])
              for c in caps_out]
        out[lbl] = dict(saturation_brackets=br, saturation_full_core=threshold.agree(br))
    for b, c in pairs:
        key = f"{b} vs {c}"
        br = [threshold.bracket_per_core(x["parting"][key]["prev"], x["parting"][key]["rate"],
                                         x["cap"]) for x in caps_out]
        out[key] = dict(parting_brackets=br, parting_full_core=threshold.agree(br))
    return out
