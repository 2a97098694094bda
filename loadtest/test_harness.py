#!/usr/bin/env python3
"""Unit tests of the load test's pure parts: the statistics, the capped
sweep's verdicts, the cgroup code on a fake hierarchy (v1 and v2 file
layouts in a temp dir; the kernel's own checks are exercised by real runs),
the runtimes' counters and figures, the scenarios' targets and
comparisons, the CPU clock's arithmetic, the parsers of strace's and
BenchmarkDotNet's tables, the runner's options, and the report's rendering
of a made-up run. No process is started and nothing is timed.

    python3 loadtest/test_harness.py      (make bench and bench-quick run it first)
"""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402
from harness import (cgroup, measure, micro, report, scenarios, stats,  # noqa: E402
                     targets, threshold)


class Stats(unittest.TestCase):
    def test_sign_and_family_chance(self):
        self.assertEqual(stats.sign_chance(1), 1.0)
        self.assertEqual(stats.sign_chance(5), 0.0625)
        self.assertAlmostEqual(stats.family_chance(0.0625, 1), 0.0625)
        self.assertAlmostEqual(stats.family_chance(0.5, 2), 0.75)
        self.assertEqual(stats.family_chance(0.1, 0), 0.0)

    def test_paired_ratios_skip_missing_rounds(self):
        self.assertEqual(stats.paired_ratios([2, None, 3, 4], [1, 1, 0, 2]), [2.0, 2.0])

    def test_beyond_only_when_every_round_on_one_side(self):
        self.assertTrue(stats.ratio_summary([1.1, 1.2, 1.05])["beyond"])
        self.assertTrue(stats.ratio_summary([0.9, 0.8])["beyond"])
        self.assertFalse(stats.ratio_summary([1.1, 0.95, 1.2])["beyond"])
        self.assertFalse(stats.ratio_summary([1.3])["beyond"])  # one round: no spread
        self.assertIsNone(stats.ratio_summary([]))

    def test_rotation(self):
        self.assertEqual(stats.rotated("ABC", 0), list("ABC"))
        self.assertEqual(stats.rotated("ABC", 1), list("BCA"))
        self.assertEqual(stats.rotated("ABC", 5), list("CAB"))
        self.assertEqual(stats.rotated([], 3), [])


def run(offered, achieved, p99, rnd=0, lag99=100.0, lag50=20.0, gen_cpu=1.0, cap_share=0.5,
        errors=None):
    return dict(offered_rps=offered, achieved_rps=achieved, round=rnd,
                latency_us=dict(p50=p99 / 3, p99=p99, p99_9=p99 * 2),
                send_lag_us=dict(p50=lag50, p99=lag99), generator_cpu_share=gen_cpu,
                cap_share=cap_share, errors=errors or {})


BOUND = 8000.0


def point(rate, per_core, runs_by_label):
    """A sweep point from {label: [run kwargs, ...]} (classified here)."""
    runs = {lbl: [threshold.classify(run(rate, **kw), BOUND, True) for kw in rs]
            for lbl, rs in runs_by_label.items()}
    return dict(rate=rate, per_core=per_core, runs=runs,
                summary={lbl: threshold.point_summary(rs, rate, BOUND)
                         for lbl, rs in runs.items()})


class Classify(unittest.TestCase):
    def test_limits(self):
        self.assertEqual(threshold.classify(run(1000, 1000, 500), BOUND, True)["limit"], "-")
        self.assertEqual(threshold.classify(run(1000, 1000, 500, cap_share=0.95), BOUND,
                                            True)["limit"], "server")
        self.assertEqual(threshold.classify(run(1000, 1000, 500, lag99=5000), BOUND,
                                            True)["limit"], "generator")
        self.assertEqual(threshold.classify(run(1000, 1000, 500, lag50=500), BOUND,
                                            True)["limit"], "generator")
        # A spinning generator reads 100% CPU by construction; a sleeping one
        # at 95% is the limit.
        self.assertEqual(threshold.classify(run(1000, 1000, 500, gen_cpu=0.95), BOUND,
                                            False)["limit"], "generator")

    def test_held(self):
        self.assertTrue(threshold.classify(run(1000, 960, 7000), BOUND, True)["held"])
        self.assertFalse(threshold.classify(run(1000, 940, 7000), BOUND, True)["held"])
        self.assertFalse(threshold.classify(run(1000, 1000, 9000), BOUND, True)["held"])
        self.assertFalse(threshold.classify(run(1000, 1000, 100, errors=dict(connect=1)),
                                            BOUND, True)["held"])
        self.assertTrue(threshold.classify(run(1000, 1000, 100, errors=dict(timeout=3)),
                                           BOUND, True)["held"])


VT, TASK = "hotpath valuetask", "hotpath task"


def sweep_points():
    """valuetask holds up to 3000, task up to 2000; p99s part from 2000."""
    table = [  # rate, vt p99, task p99 (task held below 2500, vt below 4000)
        (1000, 400, 410), (2000, 800, 1000), (3000, 2000, 9000), (4000, 20000, 30000),
        (5000, 40000, 50000)]
    pts = []
    for rnd, (rate, v, t) in enumerate(table):
        pts.append(point(rate, rate * 4, {VT: [dict(achieved=rate, p99=v, rnd=rnd)],
                                          TASK: [dict(achieved=rate, p99=t, rnd=rnd)]}))
    return pts


class Saturation(unittest.TestCase):
    def test_bracket(self):
        s = threshold.saturation(sweep_points(), VT)
        self.assertEqual((s["rate"], s["next"], s["not_held_below"]), (3000, 4000, []))
        s = threshold.saturation(sweep_points(), TASK)
        self.assertEqual((s["rate"], s["next"]), (2000, 3000))

    def test_generator_limited_points_are_not_used(self):
        pts = sweep_points()
        pts.append(point(2500, 10000, {VT: [dict(achieved=2500, p99=900, lag99=9000)],
                                       TASK: [dict(achieved=2000, p99=20000, lag99=9000)]}))
        self.assertEqual(threshold.saturation(pts, TASK)["next"], 3000)

    def test_the_highest_rate_held_counts_and_lower_failures_are_listed(self):
        pts = sweep_points() + [point(6000, 24000, {VT: [dict(achieved=6000, p99=700)]})]
        s = threshold.saturation(pts, VT)
        self.assertEqual((s["rate"], s["next"], s["not_held_below"]), (6000, None, [4000, 5000]))

    def test_failed_last(self):
        pts = sweep_points()
        self.assertTrue(threshold.failed_last(pts, VT, 2))       # 4000, 5000
        self.assertFalse(threshold.failed_last(pts, VT, 3))      # 3000 held
        self.assertFalse(threshold.failed_last(pts[:1], VT, 2))  # too few points

    def test_never_held(self):
        pts = [point(1000, 4000, {VT: [dict(achieved=500, p99=90000)]})]
        s = threshold.saturation(pts, VT)
        self.assertEqual((s["rate"], s["next"]), (None, 1000))


class Parting(unittest.TestCase):
    def test_parts_and_stays_parted_up_to_where_both_fail(self):
        p = threshold.parting(sweep_points(), VT, TASK)
        # 2000: 1.25 > 1.2; 3000: 4.5; 4000: both fail, the last considered
        # (1.5); 5000 lies beyond it and is not considered.
        self.assertEqual((p["rate"], p["prev"], p["until"]), (2000, 1000, 4000))
        self.assertEqual([r["parted"] for r in p["rows"]], [False, True, True, True])

    def test_a_failure_of_both_below_a_rate_either_holds_does_not_end_it(self):
        pts = sweep_points()
        pts.append(point(3500, 14000, {VT: [dict(achieved=3500, p99=900, rnd=7)],
                                       TASK: [dict(achieved=3500, p99=9500, rnd=7)]}))
        pts[3] = point(4000, 16000, {VT: [dict(achieved=4000, p99=9000, rnd=3)],
                                     TASK: [dict(achieved=4000, p99=9900, rnd=3)]})
        pts.append(point(4500, 18000, {VT: [dict(achieved=4500, p99=2000, rnd=8)],
                                       TASK: [dict(achieved=4500, p99=9000, rnd=8)]}))
        # both fail at 4000 (ratio 1.1), vt holds again at 4500: considered to
        # 5000; 4000 is not parted, so the parting rate is 4500.
        p = threshold.parting(pts, VT, TASK)
        self.assertEqual((p["rate"], p["until"]), (4500, 5000))

    def test_an_isolated_parting_is_not_a_parting_rate(self):
        pts = sweep_points()
        pts.insert(0, point(500, 2000, {VT: [dict(achieved=500, p99=300, rnd=9)],
                                        TASK: [dict(achieved=500, p99=600, rnd=9)]}))
        p = threshold.parting(pts, VT, TASK)
        self.assertEqual(p["rate"], 2000)

    def test_paired_by_round(self):
        pt = point(1000, 4000, {VT: [dict(achieved=1000, p99=100, rnd=1),
                                     dict(achieved=1000, p99=200, rnd=2)],
                                TASK: [dict(achieved=1000, p99=400, rnd=2),
                                       dict(achieved=1000, p99=130, rnd=1)]})
        r = threshold.p99_ratio(pt, VT, TASK)
        self.assertEqual((r["min"], r["max"], r["n"]), (1.3, 2.0, 2))


class Scaling(unittest.TestCase):
    def test_agree_only_on_overlap(self):
        a = threshold.bracket_per_core(25000, 30000, 0.25)   # 100k..120k per core
        b = threshold.bracket_per_core(55000, 70000, 0.5)    # 110k..140k
        c = threshold.bracket_per_core(70000, 80000, 0.5)    # 140k..160k
        self.assertEqual(threshold.agree([a, b]), (110000.0, 120000.0))
        self.assertIsNone(threshold.agree([a, c]))
        self.assertIsNone(threshold.agree([a]))
        self.assertIsNone(threshold.agree([a, None]))

    def test_refine_splits_wide_brackets_only(self):
        mids = threshold.refine_rates(sweep_points(), [VT, TASK], [(VT, TASK)], 0.1)
        # vt: 12k..16k/core -> 13.9k; task: 8k..12k -> 9.8k; parting 4k..8k -> 5.7k,
        # each rounded to 1k per core
        self.assertEqual(mids, [6000, 10000, 14000])


class Cgroup(unittest.TestCase):
    def test_period(self):
        self.assertEqual(cgroup.period_for(0.1), 10000)
        self.assertEqual(cgroup.period_for(0.25), 4000)
        self.assertEqual(cgroup.period_for(0.5), 2000)
        self.assertEqual(cgroup.period_for(1.0), 1000)
        self.assertAlmostEqual(cgroup.throttle_wait_us(0.25), 3000)
        for bad in (0.05, 0, 1.5):
            with self.assertRaises(cgroup.CgroupError):
                cgroup.period_for(bad)

    def test_candidates_v2_first(self):
        mounts = ("cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
                  "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
                  "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n")
        self.assertEqual(cgroup.candidates(mounts),
                         [(2, "/sys/fs/cgroup/unified"), (1, "/sys/fs/cgroup/cpu")])

    def fake(self, version, controllers="cpu io"):
        root = tempfile.mkdtemp(prefix="hp-fake-cgroup-")
        self.addCleanup(lambda: __import__("shutil").rmtree(root, ignore_errors=True))
        if version == 2:
            with open(os.path.join(root, "cgroup.controllers"), "w") as f:
                f.write(controllers)
            open(os.path.join(root, "cgroup.subtree_control"), "w").close()
        mounts = os.path.join(root, "mounts")
        with open(mounts, "w") as f:
            f.write(f"cgroup2 {root} cgroup2 rw 0 0\n" if version == 2 else
                    f"cgroup {root} cgroup rw,cpu 0 0\n")
        return root, mounts

    def read(self, *p):
        with open(os.path.join(*p)) as f:
            return f.read()

    def test_v2_enables_cpu_and_writes_cpu_max(self):
        root, mounts = self.fake(2)
        g = cgroup.CpuGroup(mounts)
        self.assertEqual(self.read(root, "cgroup.subtree_control"), "+cpu")
        self.assertEqual(self.read(g.path, "cpu.max"), "max")
        g.set_cap(0.25)
        self.assertEqual(self.read(g.path, "cpu.max"), "1000 4000")
        self.assertEqual(g.period_us, 4000)

    def test_v1_writes_period_then_quota(self):
        root, mounts = self.fake(1)
        g = cgroup.CpuGroup(mounts)
        g.set_cap(0.1)
        self.assertEqual(self.read(g.path, "cpu.cfs_period_us"), "10000")
        self.assertEqual(self.read(g.path, "cpu.cfs_quota_us"), "1000")

    def test_refuses_with_reasons(self):
        root, mounts = self.fake(2, controllers="io memory")
        with self.assertRaises(cgroup.CgroupError) as e:
            cgroup.CpuGroup(mounts)
        self.assertIn("cpu controller is not available", str(e.exception))
        self.assertIn("--parts", str(e.exception))
        empty = os.path.join(root, "none")
        open(empty, "w").close()
        with self.assertRaises(cgroup.CgroupError) as e:
            cgroup.CpuGroup(empty)
        self.assertIn("no cgroup v1 cpu or cgroup v2 mount", str(e.exception))

    def test_stale_groups_of_dead_runs_are_removed(self):
        root, _ = self.fake(1)
        dead = os.path.join(root, cgroup.PREFIX + "999999999")
        alive = os.path.join(root, cgroup.PREFIX + str(os.getpid()))
        busy = os.path.join(root, cgroup.PREFIX + "999999998")
        for d in (dead, alive, busy):
            os.mkdir(d)
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write("123\n" if d == busy else "")
        removed = []
        real = os.rmdir
        os.rmdir = removed.append  # a tmpfs dir with a file in it cannot be rmdir'd
        try:
            cgroup.remove_stale(root)
        finally:
            os.rmdir = real
        self.assertEqual(removed, [dead])


class CpuClock(unittest.TestCase):
    def test_thread_by_thread(self):
        a = {(1, "1"): 5_000_000_000, (1, "2"): 2_000_000_000, (1, "3"): 9_000_000_000}
        b = {(1, "1"): 5_500_000_000,   # +0.5 s
             (1, "2"): 1_000_000_000,   # its id was reused by a new thread: 1 s from zero
             (1, "4"): 250_000_000}     # born in between: 0.25 s
        # (1, "3") exited: its 9 s of history do not come off the figure
        self.assertAlmostEqual(measure.cpu_used(a, b), 1.75)
        self.assertEqual(measure.cpu_used(a, a), 0)

    def test_by_thread_name(self):
        a = {(1, "1"): (".NET TP Worker", 1_000_000_000, 10),
             (1, "2"): (".NET TP Worker", 3_000_000_000, 50),
             (1, "3"): (".NET Tiered Com", 500_000_000, 5),
             (1, "9"): (".NET Sockets", 7_000_000_000, 70)}
        b = {(1, "1"): (".NET TP Worker", 1_200_000_000, 30),  # +0.2 s, 20 runs
             (1, "2"): (".NET TP Worker", 100_000_000, 4),     # id reused: from zero
             (1, "3"): (".NET Tiered Com", 500_000_000, 5),    # idle
             (1, "4"): ("Kestrel Timer", 50_000_000, 2)}       # born in between
        # (1, "9") exited: left out
        got = measure.by_thread_name(a, b)
        self.assertEqual(sorted(got), [".NET TP Worker", ".NET Tiered Com", "Kestrel Timer"])
        self.assertAlmostEqual(got[".NET TP Worker"][0], 0.3)
        self.assertEqual(got[".NET TP Worker"][1], 24)
        self.assertEqual(got[".NET Tiered Com"], (0.0, 0))
        classes = measure.by_thread_name(a, b, ("TP Worker", "Tiered Com"))
        self.assertAlmostEqual(classes["other"][0], 0.05)
        self.assertEqual(sorted(classes), ["TP Worker", "Tiered Com", "other"])
        self.assertEqual(measure.by_thread_name(b, b), {k: (0.0, 0) for k in got})

    def test_jit_settled(self):
        self.assertFalse(scenarios.jit_settled([]))
        self.assertFalse(scenarios.jit_settled([0, 0]))            # too few steps yet
        self.assertTrue(scenarios.jit_settled([300, 40, 0, 2, 9]))  # last three under 10 ms
        self.assertFalse(scenarios.jit_settled([0, 0, 0, 341]))     # a burst after a lull
        self.assertFalse(scenarios.jit_settled([0, 10, 0]))         # 10 ms is not quiet
        self.assertTrue(scenarios.jit_settled([5, 5], quiet_ms=6, need=2))


STRACE = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- -----------------------
 51.40    0.374075        7334        51         9 futex
 20.32    0.147877          46      3189           epoll_wait
  5.04    0.036692           4      8032      4001 recvfrom
  4.76    0.034638           8      4000           sendto
------ ----------- ----------- --------- --------- -----------------------
100.00    0.727738          47     15272      4014 total
"""


class Parsers(unittest.TestCase):
    def test_strace_counts(self):
        self.assertEqual(measure.strace_counts(STRACE),
                         dict(futex=51, epoll_wait=3189, recvfrom=8032, sendto=4000))

    def test_quantities(self):
        self.assertEqual(micro.quantity("34.14 ns", micro.UNITS_NS), 34.14)
        self.assertEqual(micro.quantity("1.5 μs", micro.UNITS_NS), 1500.0)
        self.assertEqual(micro.quantity("288 B", micro.UNITS_B), 288)
        self.assertEqual(micro.quantity("1.5 KB", micro.UNITS_B), 1536)
        self.assertEqual(micro.quantity("-", micro.UNITS_B), 0)
        self.assertIsNone(micro.quantity("NA", micro.UNITS_B))

    def test_micro_report(self):
        r = micro.parse(MICRO)
        self.assertEqual((r["date"], r["commit"]), ("2026-11-30T08:04Z", "5a94ea6"))
        self.assertEqual(r["facts"], ["HybridCache hit completes synchronously: True"])
        self.assertEqual(r["rows"]["Task<T> chain"]["allocated_b"], 288)
        self.assertEqual(r["rows"]["ValueTask<T> chain"]["allocated_b"], 0)
        self.assertAlmostEqual(r["rows"]["twin GET /plaintext [task]"]["mean_ns"], 198.2)
        for _, cols in micro.SIDE_BY_SIDE[:2]:
            for name in cols.values():
                self.assertIn(name, r["rows"])


MICRO = """# hotpath-kestrel micro-benchmark, 2026-11-30T08:04Z, commit 5a94ea6

- facts: HybridCache hit completes synchronously: True

```
Job=ShortRun  IterationCount=3  LaunchCount=1
```
| Method                 | Mean      | Error     | StdDev    | Ratio | Gen0   | Allocated |
|----------------------- |----------:|----------:|----------:|------:|-------:|----------:|
| 'ValueTask<T> chain'   |  34.14 ns | 132.92 ns |  7.286 ns |  1.03 |      - |         - |
| 'Task<T> chain'        | 102.01 ns | 439.37 ns | 24.083 ns |  3.09 | 0.0560 |     288 B |
| 'idiomatic Task chain' |  22.46 ns |  68.83 ns |  3.773 ns |  0.68 |      - |         - |

| Method                | Mode      | Mean     | Error     | StdDev   | Gen0   | Allocated |
|---------------------- |---------- |---------:|----------:|---------:|-------:|----------:|
| 'twin GET /plaintext' | aspnet    | 180.9 ns | 421.42 ns | 23.10 ns | 0.0243 |      64 B |
| 'twin GET /plaintext' | task      | 198.2 ns |   6.77 ns |  0.37 ns | 0.0684 |     352 B |
| 'twin GET /plaintext' | valuetask | 180.5 ns | 239.18 ns | 13.11 ns | 0.0124 |      64 B |
"""


def hotpath_stats(requests, allocs, outside, own, libuv=0, cjson=0, mode="valuetask"):
    route = dict(requests=requests, allocations=allocs, allocated_bytes=allocs * 80,
                 outside_chain=dict(allocations=outside),
                 status={"2xx": requests, "4xx": 0, "other": 0})
    return dict(routes={"/plaintext": {mode: route}},
                allocations=dict(own=dict(count=own), libuv=dict(count=libuv),
                                 cjson=dict(count=cjson)),
                cache=dict(hits=0, stale=0, misses=0, coalesced=0),
                upstream=dict(errors=dict(timeout=0)))


class Counters(unittest.TestCase):
    def test_hotpath_every_door_and_outside_the_chain(self):
        s0 = hotpath_stats(100, 0, 2, own=50, libuv=3, cjson=1)
        s1 = hotpath_stats(1100, 4000, 2, own=4060, libuv=5, cjson=1)
        d = targets.deltas(targets.HOTPATH.counters, s0, s1, "valuetask", ["/plaintext"])
        self.assertEqual(d, dict(requests=1000, allocations=4000, bytes=320000, outside_chain=0,
                                 worker_allocations=4012))
        f = targets.per_request(d)
        self.assertEqual((f["allocs_per_req"], f["bytes_per_req"], f["outside_chain_per_req"]),
                         (4.0, 320.0, 0.0))
        self.assertAlmostEqual(f["worker_allocs_per_req"], 4.012)
        self.assertNotIn("gen0_per_1k", f)

    def test_routes_are_summed_and_a_missing_key_is_none(self):
        s0 = dict(routes={"/a": {"task": dict(requests=1)}, "/b": {"task": dict(requests=2)}})
        s1 = dict(routes={"/a": {"task": dict(requests=11)}, "/b": {"task": dict(requests=32)}})
        c = dict(requests=("routes", "{route}", "{mode}", "requests"),
                 gone=("routes", "{route}", "{mode}", "nothing"))
        self.assertEqual(targets.deltas(c, s0, s1, "task", ["/a", "/b"]),
                         dict(requests=40, gone=None))

    def test_twin_gc_figures(self):
        def st(req, b, g0, pause, wall):
            return dict(modes=dict(task=dict(requests=req, allocated_bytes=b, gen0=g0, gen1=0,
                                             gen2=0, gc_pause_ms=pause, wall_ms=wall)))
        d = targets.deltas(targets.KESTREL.counters, st(0, 0, 0, 0, 0),
                           st(20000, 20000 * 349, 3, 25.0, 10000.0), "task", ["/plaintext"])
        f = targets.per_request(d)
        self.assertEqual(f["bytes_per_req"], 349)
        self.assertAlmostEqual(f["gen0_per_1k"], 0.15)
        self.assertAlmostEqual(f["gc_pause_share"], 0.0025)
        self.assertNotIn("allocs_per_req", f)  # .NET counts bytes, not allocations

    def test_no_requests_no_figures_but_the_pause_share(self):
        self.assertEqual(targets.per_request(dict(requests=0, bytes=10)), {})

    def test_extras(self):
        s0 = dict(routes={"/cache/": {"task": dict(status={"2xx": 5})}},
                  cache=dict(hits=10, misses=5, coalesced=0),
                  upstream=dict(timeouts=1, failures=0))
        s1 = dict(routes={"/cache/": {"task": dict(status={"2xx": 105, "5xx": 2})}},
                  cache=dict(hits=105, misses=10, coalesced=0),
                  upstream=dict(timeouts=2, failures=1))
        e = targets.kestrel_extras(s0, s1, "task", ["/cache/"])
        self.assertEqual((e["non2xx"], e["upstream_errors"]), (2, 2))
        self.assertAlmostEqual(e["cache_hit_ratio"], 0.95)

    def test_labels(self):
        self.assertEqual(targets.KESTREL.label("task"), "kestrel task")
        self.assertEqual(targets.NGINX.label("nginx"), "nginx")
        self.assertEqual(targets.split_label("kestrel-servergc valuetask-nopool"),
                         ("kestrel-servergc", "valuetask-nopool"))
        self.assertEqual(targets.split_label("nginx"), ("nginx", "nginx"))

    def test_nospin_is_the_twin_with_the_spin_off(self):
        ns = targets.KESTREL_NOSPIN
        self.assertIs(targets.RUNTIMES["kestrel-nospin"], ns)
        self.assertEqual(ns.env[targets.SPIN_KNOB], "0")
        self.assertEqual(dict(ns.env, **{targets.SPIN_KNOB: None}),
                         dict(targets.KESTREL.env, **{targets.SPIN_KNOB: None}))
        self.assertNotIn(targets.SPIN_KNOB, targets.KESTREL.env)
        self.assertEqual(ns.sweep_modes, ("valuetask", "task"))
        self.assertEqual(ns.jit_thread, ".NET Tiered Com")
        # the full run sweeps it; the scenarios keep the defaults
        self.assertIn("kestrel-nospin", bench.PROFILES["full"]["runtimes"])
        self.assertNotIn("kestrel", bench.PROFILES["full"]["runtimes"])
        self.assertIn(ns, scenarios.TWINS)
        self.assertFalse(any(lbl.startswith("kestrel-nospin") for lbl in scenarios.TWIN_ALL))

    def test_servergc_is_asked_for(self):
        self.assertEqual(targets.KESTREL_SERVERGC.env["DOTNET_gcServer"], "1")
        self.assertEqual(targets.KESTREL_SERVERGC.env["DOTNET_PROCESSOR_COUNT"], "2")
        self.assertEqual(targets.KESTREL.env["DOTNET_gcServer"], "0")


class ScenarioTargets(unittest.TestCase):
    ALL = {"hotpath valuetask", "hotpath task", "nginx"} | set(scenarios.TWIN_ALL)

    def test_default_lists(self):
        pt = scenarios.BY_NAME["plaintext"]
        self.assertEqual(scenarios.scenario_labels(pt, "default", self.ALL),
                         ["hotpath valuetask", "hotpath task", "kestrel valuetask",
                          "kestrel task", "kestrel aspnet", "kestrel-servergc valuetask",
                          "kestrel-servergc task", "nginx"])
        up = scenarios.BY_NAME["upstream"]
        self.assertIn("kestrel valuetask-nopool", scenarios.scenario_labels(up, "default",
                                                                           self.ALL))

    def test_specs_and_what_is_running(self):
        mixed = scenarios.BY_NAME["mixed"]
        self.assertEqual(scenarios.scenario_labels(mixed, "none", self.ALL),
                         ["hotpath valuetask", "hotpath task"])
        self.assertEqual(len(scenarios.scenario_labels(mixed, "all", self.ALL)), 2 + 6)
        quick = bench.PROFILES["quick"]["twin"]
        self.assertEqual(scenarios.scenario_labels(mixed, quick, self.ALL),
                         ["hotpath valuetask", "hotpath task"])
        pt = scenarios.BY_NAME["plaintext"]
        self.assertEqual(scenarios.scenario_labels(pt, quick, {"hotpath valuetask",
                                                              "hotpath task", "kestrel task"}),
                         ["hotpath valuetask", "hotpath task", "kestrel task"])

    def test_comparisons(self):
        c = scenarios.comparisons(["hotpath valuetask", "hotpath task", "kestrel valuetask",
                                   "kestrel task", "kestrel aspnet",
                                   "kestrel-servergc valuetask", "nginx"])
        for pair in [("hotpath task", "hotpath valuetask"), ("kestrel task", "kestrel valuetask"),
                     ("kestrel aspnet", "kestrel valuetask"), ("hotpath valuetask", "nginx"),
                     ("kestrel task", "hotpath task"), ("kestrel aspnet", "hotpath valuetask"),
                     ("kestrel-servergc valuetask", "kestrel valuetask")]:
            self.assertIn(pair, c)
        self.assertEqual(len(c), len(set(c)))
        self.assertNotIn(("kestrel-servergc task", "kestrel task"), c)  # not running


class PastSaturation(unittest.TestCase):
    def test_a_runtime_leaves_the_climb_when_all_its_modes_failed_twice(self):
        pts = sweep_points()  # vt fails 4000 and 5000; task fails 3000, 4000, 5000
        self.assertTrue(threshold.past_saturation(pts, [VT, TASK], 6000))
        self.assertFalse(threshold.past_saturation(pts, [VT, TASK], 4500))  # vt: 1 failure below
        self.assertTrue(threshold.past_saturation(pts, [TASK], 4500))
        self.assertFalse(threshold.past_saturation(pts, [], 6000))


class Options(unittest.TestCase):
    def test_set(self):
        p = bench.apply_sets(bench.PROFILES["full"], ["rounds=3", "duration_s=2",
                                                      "caps=[0.25]", "sweep_duration_s=2"])
        self.assertEqual((p["rounds"], p["duration_s"], p["caps"], p["sweep_duration_s"]),
                         (3, 2, [0.25], 2.0))
        self.assertEqual(bench.PROFILES["full"]["rounds"], 5)  # the profile is not touched
        for bad in (["nope=1"], ["rounds"], ["rounds=fast"]):
            with self.assertRaises(ValueError):
                bench.apply_sets(bench.PROFILES["full"], bad)

    def test_profiles_and_twin_switches(self):
        a = bench.parse_args(["--quick"])
        self.assertEqual(a.p["runtimes"], ["hotpath"])
        self.assertNotIn("micro", a.p["parts"])
        a = bench.parse_args([])
        self.assertEqual(a.p["runtimes"], ["hotpath", "kestrel-nospin"])
        self.assertIn("micro", a.p["parts"])
        a = bench.parse_args(["--no-twin"])
        self.assertEqual((a.p["twin"], a.p["runtimes"]), ("none", ["hotpath"]))
        self.assertNotIn("micro", a.p["parts"])

    def test_refusals(self):
        for argv in (["--publish", "--set", "rounds=1"], ["--parts", "scenarios,nope"],
                     ["--scenarios", "nope"], ["--runtimes", "nope"], ["--quick", "--publish"]):
            with self.assertRaises(SystemExit):
                with open(os.devnull, "w") as null:
                    err, sys.stderr = sys.stderr, null
                    try:
                        bench.parse_args(argv)
                    finally:
                        sys.stderr = err


def scenario_run(target, rnd, rps, cpu, **figures):
    return dict(target=target, round=rnd, rps=rps, cpu_us_per_req=cpu, errors={},
                latency_us=dict(p50=500, p90=900, p99=2000, max=4000), **figures)


class Render(unittest.TestCase):
    """A made-up run with the twin in it renders, and says what it must."""

    def res(self):
        runs = []
        for rnd in range(3):
            runs += [scenario_run("hotpath valuetask", rnd, 40000, 10.0, allocs_per_req=0.0,
                                  bytes_per_req=0.0, outside_chain_per_req=0.0,
                                  worker_allocs_per_req=0.01),
                     scenario_run("hotpath task", rnd, 39000, 11.0, allocs_per_req=4.0,
                                  bytes_per_req=320.0, outside_chain_per_req=0.0,
                                  worker_allocs_per_req=4.01),
                     scenario_run("kestrel valuetask", rnd, 25000, 25.0, bytes_per_req=61.0,
                                  gen0_per_1k=0.025, gc_pause_share=0.001),
                     scenario_run("kestrel task", rnd, 24000, 26.0 + rnd, bytes_per_req=349.0,
                                  gen0_per_1k=0.143, gc_pause_share=0.004),
                     scenario_run("kestrel-servergc task", rnd, 24000, 26.0, bytes_per_req=350.0,
                                  gen0_per_1k=0.035, gc_pause_share=0.002),
                     scenario_run("kestrel-servergc valuetask", rnd, 24000, 25.0,
                                  bytes_per_req=61.0, gen0_per_1k=0.006, gc_pause_share=0.001)]
        labels = ["hotpath valuetask", "hotpath task", "kestrel valuetask", "kestrel task",
                  "kestrel-servergc valuetask", "kestrel-servergc task"]
        sc = dict(what="GET /plaintext", script="plaintext.lua", args=[], routes=["/plaintext"],
                  labels=labels, runs=runs, summary=scenarios.summarize(runs, labels),
                  ratios=scenarios.ratios(runs, labels), advice=None,
                  priming={"kestrel task": [9000.0, 20000.0, 24000.0]})
        meta = dict(profile="full", params=bench.PROFILES["full"], date="2026-11-30",
                    cores=2, kernel="k", load_average=["1", "1", "1"], server_cpu=0,
                    load_cpu=1, git_commit="5a94ea6" + "0" * 33, git_dirty=False)
        gc = dict(dotnet="10.0.12", processors=1, task_bytes=72,
                  gc=dict(server=False, concurrent=True, heap_count=1,
                          latency_mode="Interactive"))
        return dict(meta=meta, scenarios={"plaintext": sc}, sweep=None, notes=[],
                    callgrind={"/plaintext": {
                        "valuetask": dict(ir_per_request=5400, allocs_per_req=0.0,
                                          requests=20000, connections=8),
                        "task": dict(ir_per_request=7500, allocs_per_req=4.0,
                                     requests=20000, connections=8)}},
                    idle_memory={}, commands=[], wall_s=1.0, part_wall_s={"scenarios": 1.0},
                    runtimes={"kestrel": dict(describe=gc, env="DOTNET_gcServer=0",
                                              modes=["valuetask", "task"])},
                    syscalls={"kestrel valuetask": dict(
                        requests=4000, connections=64, path="/plaintext",
                        calls=measure.strace_counts(STRACE),
                        per_request={k: v / 4000 for k, v in
                                     measure.strace_counts(STRACE).items()})},
                    micro=dict(micro.parse(MICRO), ran=False, path="x/report.md"))

    def test_the_twin_rows_and_sections(self):
        text = report.render(self.res())
        self.assertIn("| plaintext | kestrel task | 24.0k (24.0k–24.0k) | 27.00 (26.00–28.00) "
                      "| 349 (349–349) | 0.143 (0.143–0.143) | 0.40% | 1.08 (1.04–1.12, n=3) "
                      "| 2.45 (2.36–2.55, n=3) | 0.62 (0.62–0.62, n=3) | 0 |", text)
        self.assertIn("**workstation GC**", text)
        self.assertIn("20,000 keep-alive requests are sent by `h2load --h1 -c 8 -n 20000`", text)
        self.assertIn("| /plaintext | 5,400 | 7,500 | +2,100 | 1.389 | 0.00 → 4.00 |", text)
        self.assertIn("workstation collects 4.1× as often", text)
        self.assertIn("| plaintext | kestrel task | 9,000 → 20.0k → 24.0k | 24.0k |", text)
        self.assertIn("| `recvfrom` | 2.01 |", text)
        self.assertIn("| the bare 4-layer chain (3 `async` middleware + handler) "
                      "| 34.1 ns, 0 B | 102.0 ns, 288 B | +67.9 ns, +288 B |", text)
        self.assertIn("| plaintext | hotpath task | 39.0k (39.0k–39.0k) ", text)
        self.assertIn("| 4.00 (4.00–4.00) | 0.00 (0.00–0.00) | 4.01 (4.01–4.01) "
                      "| 320 (320–320) |", text)
        self.assertIn("| plaintext | kestrel | req/s -4%, CPU/req +8% |", text)
        self.assertIn("| plaintext | kestrel | - | 61 → 349 (+288) | 0.025 → 0.143 "
                      "| 25.00 → 27.00 | 1.08 (1.04–1.12, n=3) | 0.96 (0.96–0.96, n=3) |", text)
        self.assertNotIn("not this run's commit", text)
        self.assertIn("| plaintext | kestrel task |", report.console_summary(self.res()))

    def test_the_price_of_the_decision_per_runtime(self):
        rows = {r["runtime"]: r for r in report.decision_rows(self.res())}
        self.assertEqual(sorted(rows), ["hotpath", "kestrel", "kestrel-servergc"])
        hp, k = rows["hotpath"], rows["kestrel"]
        self.assertEqual(hp["allocs_per_req"], (0.0, 4.0))
        self.assertEqual(hp["bytes_per_req"], (0.0, 320.0))
        self.assertEqual(hp["gen0_per_1k"], (None, None))  # no collector to count
        self.assertEqual(k["allocs_per_req"], (None, None))  # the twin counts bytes only
        self.assertEqual(k["gen0_per_1k"], (0.025, 0.143))
        self.assertEqual(k["cpu_us_per_req"], (25.0, 27.0))
        self.assertAlmostEqual(k["cpu_ratio"]["median"], 27.0 / 25.0)
        self.assertAlmostEqual(hp["rps_ratio"]["median"], 39000 / 40000)

    def test_no_twin_no_price_table(self):
        res = self.res()
        sc = res["scenarios"]["plaintext"]
        keep = ["hotpath valuetask", "hotpath task"]
        sc["summary"] = {k: v for k, v in sc["summary"].items() if k in keep}
        self.assertEqual(len(report.decision_rows(res)), 1)
        self.assertEqual(report.decision_table(res), [])
        # A scenario hotpath ran alone stays out of the table beside one with the twin.
        res = self.res()
        res["scenarios"]["json"] = dict(sc, summary=dict(sc["summary"]))
        text = "\n".join(report.decision_table(res))
        self.assertIn("| plaintext | kestrel |", text)
        self.assertNotIn("| json |", text)


class SweepCell(unittest.TestCase):
    def test_hotpath_shows_what_is_allocated_around_the_chain(self):
        self.assertEqual(report.allocs(dict(allocs_per_req=4.0, bytes_per_req=320.0,
                                            outside_chain_per_req=0.0,
                                            worker_allocs_per_req=4.02)),
                         "4.00 (320 B; outside chain 0.00, worker 4.02)")

    def test_the_twin_shows_bytes_and_collections(self):
        self.assertEqual(report.allocs(dict(bytes_per_req=349.0, gen0_per_1k=0.143)),
                         "- (349 B, gen0 0.143/1k)")
        self.assertEqual(report.allocs({}), "-")


class ThreadpoolSpinTable(unittest.TestCase):
    """kestrel/threadpool_spin.py's table: one line per variant, cap and rate,
    each repeat's figure side by side, variants in the tool's order."""

    def row(self, rep, variant, cap, rate, us):
        return dict(rep=rep, variant=variant, cap=cap, rate=rate, cpu_us_per_req=us,
                    runs_per_req=2.0, cap_used=0.3 if cap else None, throttled=6,
                    periods=708, cpu_ms_by_thread={"TP Worker": 192.4, "other": 1.0},
                    load=dict(achieved_rps=rate, latency_us=dict(p99=17300.0)))

    def test_table(self):
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            "threadpool_spin", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "kestrel", "threadpool_spin.py"))
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        rows = [self.row(0, "kestrel spin=0", 0.25, 1000, 75.2),
                self.row(0, "kestrel default", 0.25, 1000, 206.0),
                self.row(1, "kestrel default", 0.25, 1000, 151.0),
                self.row(0, "kestrel default", None, 1000, 277.0)]
        lines = tool.table(rows).splitlines()
        self.assertEqual(len(lines), 2 + 3)
        self.assertTrue(lines[2].startswith("| kestrel default | none | 1000 | 277 | 1000 | 17.3 "
                                            "| - | - | 2.0 | 192/0/0/1 |"))
        self.assertTrue(lines[3].startswith("| kestrel default | 25%/4ms | 1000 | 206 / 151 |"))
        self.assertIn("| 30% / 30% | 6/708 / 6/708 |", lines[3])
        self.assertTrue(lines[4].startswith("| kestrel spin=0 | 25%/4ms | 1000 | 75 |"))


if __name__ == "__main__":
    unittest.main(verbosity=1)
