#!/usr/bin/env python3
"""Unit tests of the load test's pure parts: the statistics, the capped
sweep's verdicts, and the cgroup code on a fake hierarchy (v1 and v2 file
layouts in a temp dir; the kernel's own checks are exercised by real runs).
No process is started and nothing is timed.

    python3 loadtest/test_harness.py      (make bench and bench-quick run it first)
"""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import cgroup, stats, threshold  # noqa: E402


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


if __name__ == "__main__":
    unittest.main(verbosity=1)
