#!/usr/bin/env python3
"""bench.py - the load test: the capped sweep that finds the threshold,
the closed-loop scenarios with nginx as the yardstick, instruction counts
and idle-connection memory, and a report.

What `make bench` (full) and `make bench-quick` (< 3 minutes) run. Python 3
standard library only. It measures and reports; it never asserts.

One run, in order (each part can be left out with --parts):
  1. the upstream stub (on the load CPU), hotpath (workers 1, on the server
     CPU, started inside a cgroup made for the run) and nginx (1 worker,
     the server CPU);
  2. scenarios: wrk against every target in rounds, order rotated
     (harness/scenarios.py);
  3. the capped sweep: under each CPU cap, the offered rate climbs past the
     server's saturation, both modes, rounds rotated (harness/sweep.py,
     verdicts in harness/threshold.py);
  4. RSS over 5,000 idle keep-alive connections, hotpath and nginx;
  5. instructions per request under callgrind, a separate hotpath;
  6. the cache tiers (full runs): an L2 hit's CPU and allocations per
     request next to an L1 hit's, and the cluster: 3 instances against 1
     behind HAProxy on one CPU cap (harness/tiers.py);
  7. report.md, results.json and plots (harness/report.py) into
     loadtest/results/<date>[-quick]/; with --publish (full runs only, a
     clean tree) also into loadtest/results/latest/.

The parts live in loadtest/harness/: procs (processes, pinning), cgroup
(the CPU cap), targets (the servers, as data), measure (wrk, hotpath-load,
CPU/memory reads, callgrind), stats (paired ratios and their spread),
threshold (the sweep's verdicts), sweep, scenarios, report.
"""

import argparse
import datetime
import os
import shutil
import sys
import time

from harness import cgroup, measure, report, targets, tiers
from harness.procs import COMMANDS, Pinning, Procs, logger, stop_signals_raise
from harness.scenarios import run_scenarios
from harness.sweep import CappedSweep, Target

log = logger("bench")

# quick must finish in under 3 minutes from a built tree: short runs (wrk
# takes whole seconds only), one cap, one round per rate (the bands three),
# a coarse grid refined twice.
# full: two caps, two rounds per rate (the bands five), finer brackets.
# Sweep rates are per core; offered = per core x cap. The caps: a quiet
# run of this VM's spinning generator keeps up to ~80k req/s, and a 25%
# cap holds /plaintext to ~75k (the capped loop batches), so 50% would
# measure the generator; under 15% the period (6.7 ms at 15%, 10 ms at
# 10%) puts p99 near its bound at every rate. At the same rate per core
# every cap gets the same 1 ms quota per period, so the caps' batches -
# and their figures per core - are comparable.
PROFILES = {
    "quick": dict(
        rounds=2, duration_s=1, warmup_s=1, connections=64,
        caps=[0.25], spin=True, sweep_path="/plaintext",
        sweep_per_core=[10000, 25000, 50000, 75000, 100000, 125000, 150000, 200000, 250000,
                        300000, 400000, 600000, 800000],
        sweep_rounds=1, band_rounds=3, sweep_duration_s=1.0, sweep_warmup_s=0.3,
        sweep_drain_s=0.5, refine=2, resolution=0.15, sweep_budget_s=70,
        callgrind_counts=(1000, 4000), callgrind_warmup=500, idle_connections=5000,
        parts=("scenarios", "sweep", "idle", "callgrind"),
    ),
    "full": dict(
        rounds=5, duration_s=10, warmup_s=2, connections=64,
        caps=[0.15, 0.25], spin=True, sweep_path="/plaintext",
        sweep_per_core=[10000, 20000, 30000, 50000, 75000, 100000, 125000, 150000, 175000,
                        200000, 250000, 300000, 350000, 400000, 500000, 600000, 800000],
        sweep_rounds=2, band_rounds=5, sweep_duration_s=3.0, sweep_warmup_s=1.0,
        sweep_drain_s=1.0, refine=3, resolution=0.05, sweep_budget_s=1500,
        callgrind_counts=(5000, 20000), callgrind_warmup=2000, idle_connections=5000,
        cluster_cap=0.10, parts=("scenarios", "sweep", "idle", "callgrind", "tiers", "cluster"),
    ),
}
PARTS = ("scenarios", "sweep", "idle", "callgrind", "tiers", "cluster")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build", help="build directory with the binaries")
    ap.add_argument("--quick", action="store_true", help="the < 3 minute profile")
    ap.add_argument("--parts", default="", help="comma list of: " + ", ".join(PARTS)
                    + " (default: the profile's; quick leaves out tiers and cluster)")
    ap.add_argument("--scenarios", default="", help="comma list of scenario names (default all)")
    ap.add_argument("--runtimes", default="hotpath",
                    help="runtimes in the sweep, comma list of: " + ", ".join(targets.RUNTIMES))
    ap.add_argument("--caps", default="", help="CPU caps for the sweep, e.g. 0.25,0.5 "
                                               "(default: the profile's)")
    ap.add_argument("--sweep-budget-s", type=float, default=0,
                    help="time budget of the sweep (default: the profile's)")
    ap.add_argument("--no-spin", action="store_true",
                    help="let the sweep's generator sleep between events instead of polling")
    ap.add_argument("--upstream-delay-ms", type=int, default=0,
                    help="the stub's answer delay for /cache misses and /upstream (default 0)")
    ap.add_argument("--no-nginx", action="store_true", help="skip the nginx yardstick")
    ap.add_argument("--out", default="", help="report directory (default "
                    "loadtest/results/DATE, or DATE-quick for --quick)")
    ap.add_argument("--publish", action="store_true",
                    help="also replace loadtest/results/latest/ (full runs, clean tree only)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, configs)")
    args = ap.parse_args()
    args.parts = set(args.parts.split(",") if args.parts else
                     PROFILES["quick" if args.quick else "full"]["parts"])
    if args.parts - set(PARTS):
        ap.error(f"--parts: unknown {', '.join(sorted(args.parts - set(PARTS)))}")
    args.runtimes = [r for r in args.runtimes.split(",") if r]
    for r in args.runtimes:
        if r not in targets.RUNTIMES:
            ap.error(f"--runtimes: unknown runtime {r} (known: {', '.join(targets.RUNTIMES)})")
    try:
        args.caps = [float(c) for c in args.caps.split(",")] if args.caps else None
        for cap in args.caps or PROFILES["quick" if args.quick else "full"]["caps"]:
            cgroup.period_for(cap)  # a cap it cannot honour is refused before anything runs
    except (ValueError, cgroup.CgroupError) as e:
        ap.error(f"--caps: {e}")
    if args.publish and args.quick:
        ap.error("--publish: quick runs are never published (make bench PUBLISH=1 is)")
    if args.publish and args.out:
        ap.error("--publish writes the dated folder and latest/; --out does not go with it")
    return args


class Bench:
    def __init__(self, args):
        self.args = args
        self.profile = "quick" if args.quick else "full"
        self.p = dict(PROFILES[self.profile])
        if args.caps:
            self.p["caps"] = args.caps
        if args.sweep_budget_s:
            self.p["sweep_budget_s"] = args.sweep_budget_s
        if args.no_spin:
            self.p["spin"] = False
        self.build = os.path.abspath(args.build)
        self.pin = Pinning()
        self.res = dict(scenarios={}, sweep=None, callgrind={}, idle_memory={}, notes=[],
                        tiers=None, cluster=None)

    def main(self):
        t0 = time.monotonic()
        args, res = self.args, self.res
        commit_at_start, _ = report.git_state()
        group = None
        if args.parts & {"sweep", "cluster"}:
            group = cgroup.CpuGroup()
            log(f"CPU cap by {group.describe()}")
        try:
            with Procs("hotpath-bench-", keep=args.keep_tmp) as procs:
                log(f"{self.profile} run; temp dir {procs.tmp}; server CPU "
                    f"{self.pin.server_cpu}, load CPU {self.pin.load_cpu}")
                if self.pin.server_cpu is None:
                    res["notes"].append("fewer than 2 CPUs (or no taskset): nothing pinned")
                self.run_parts(procs, group)
        finally:
            if group:
                group.close()
        res["wall_s"] = time.monotonic() - t0
        self.write(commit_at_start, group)

    def run_parts(self, procs, group):
        args, p, res = self.args, self.p, self.res
        ctx = targets.Context(build=self.build, procs=procs, pin=self.pin)
        targets.start_stub(ctx, args.upstream_delay_ms)
        hp = targets.Server(targets.HOTPATH, ctx, cgroup=group)
        ng = None
        if shutil.which("nginx") and not args.no_nginx:
            try:
                ng = targets.Server(targets.NGINX, ctx)
            except (RuntimeError, TimeoutError, OSError) as e:
                res["notes"].append(f"nginx did not start: {e}")
        else:
            res["notes"].append("nginx not used (not installed or --no-nginx)")
        if "scenarios" in args.parts:
            names = args.scenarios.split(",") if args.scenarios else None
            res["scenarios"] = run_scenarios(hp, ng, p, self.pin, names, res["notes"])
        if "sweep" in args.parts:
            tl = []
            for name in args.runtimes:
                rt = targets.RUNTIMES[name]
                why = rt.available(ctx)
                if why:
                    res["notes"].append(f"runtime {name} left out of the sweep: {why}")
                    continue
                servers = {m: hp for m in rt.modes} if rt is targets.HOTPATH else \
                    targets.start_servers(rt, ctx, group)
                tl += [Target(servers[m], m) for m in rt.modes]
            res["sweep"] = CappedSweep(tl, group, p, self.pin, self.build, p["sweep_path"],
                                       res["notes"]).run(p["caps"])
        if "idle" in args.parts:
            for name, srv in (("hotpath", hp), ("nginx", ng)):
                if srv:
                    res["idle_memory"][name] = measure.idle_memory(
                        srv.port, srv.pid, p["idle_connections"], log, name)
        if "tiers" in args.parts:
            try:
                res["tiers"] = tiers.run_tiers(ctx, p, res["notes"])
            except (RuntimeError, TimeoutError, OSError, ValueError) as e:
                res["notes"].append(f"tiers failed: {e}")
        if "cluster" in args.parts:
            try:
                res["cluster"] = tiers.run_cluster(ctx, group, p.get("cluster_cap", 0.10), p,
                                                   res["notes"])
            except (RuntimeError, TimeoutError, OSError, ValueError) as e:
                group.unlimit()
                res["notes"].append(f"cluster failed: {e}")
        res["hotpath_stderr_tail"] = procs.stderr(hp.proc, 2000).splitlines()[-20:]
        rc = hp.stop()
        res["hotpath_exit"] = rc
        if rc != 0:
            res["notes"].append(f"hotpath exited with {rc} on SIGTERM")
        if ng:
            ng.stop()
        if "callgrind" in args.parts:
            if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
                res["notes"].append("callgrind skipped: valgrind not installed")
            else:
                log(f"callgrind: hotpath under valgrind; {p['callgrind_counts']} requests "
                    "per path and mode")
                try:
                    res["callgrind"], res["callgrind_command"] = measure.callgrind(
                        lambda wrapper: targets.Server(targets.HOTPATH, ctx,
                                                       name="hotpath-callgrind",
                                                       wrapper=wrapper, timeout=60),
                        self.pin, p["callgrind_counts"], p["callgrind_warmup"],
                        ("/plaintext", "/json"), targets.HOTPATH.modes,
                        os.path.join(procs.tmp, "callgrind"), log)
                except (RuntimeError, TimeoutError, OSError) as e:
                    res["notes"].append(f"callgrind failed: {e}")
                    log(f"callgrind failed: {e}")
        res["stub_stats"] = targets.stub_stats(ctx.stub_port)

    def write(self, commit_at_start, group):
        args, res = self.args, self.res
        meta = report.machine_info()
        meta.update(profile=self.profile, params=self.p,
                    date=datetime.datetime.now().isoformat(timespec="seconds"),
                    server_cpu=self.pin.server_cpu, load_cpu=self.pin.load_cpu,
                    upstream_delay_ms=args.upstream_delay_ms,
                    cgroup=group.describe() if group else None, published=False)
        res["meta"] = meta
        res["commands"] = COMMANDS
        out = report.output_dir(self.profile, args.out)
        report.write(res, out)
        log(f"report: {os.path.relpath(out, report.ROOT)}/report.md; wall {res['wall_s']:.0f}s")
        if args.publish:
            why = report.publish_refusal(commit_at_start)
            if why:
                log(f"NOT published: {why}")
                return 1
            meta["published"] = True
            report.publish(out, report.write(res, out))
            log("published to loadtest/results/latest/")
        print()
        print(report.console_summary(res))
        return 0


def main():
    args = parse_args()
    if not shutil.which("wrk") and "scenarios" in args.parts:
        sys.exit("bench: wrk not found (make bench-deps installs it)")
    for b in ("hotpath", "hotpath-upstream", "hotpath-load"):
        if not os.access(os.path.join(args.build, b), os.X_OK):
            sys.exit(f"bench: {args.build}/{b} missing (make bench builds it)")
    if args.publish:
        why = report.refuse_dirty()
        if why:
            sys.exit(f"bench: refusing to publish: {why}")
    stop_signals_raise()
    try:
        sys.exit(Bench(args).main())
    except cgroup.CgroupError as e:
        sys.exit(f"bench: {e}")
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; every process it started is stopped, the cgroup removed")


if __name__ == "__main__":
    main()
