"""CPU caps with the Linux cgroup cpu controller, for the capped sweep.

On a 2-core machine a one-core load generator runs out before a one-core
server does, so the sweep caps the server instead: a cgroup made for the
run, with CFS bandwidth control (cgroup v1: cpu.cfs_period_us and
cpu.cfs_quota_us; v2: cpu.max), the server started inside it (it joins
before exec, so every thread it ever makes - hotpath's loop thread, libuv's
threadpool - is inside; checked per thread afterwards).

The period. A throttled server waits for the next period: up to
period * (1 - cap) added to a request's latency. Shorter is better, but the
kernel refuses a quota under 1 ms, so the period is the shortest that gives
the cap a 1 ms quota (10% -> 10 ms, 25% -> 4 ms, 50% -> 2 ms), never longer
than 10 ms (caps under 10% are refused).

Which hierarchy: v2 where a cgroup2 mount offers the cpu controller (the
group goes under the mount's root, with +cpu in its subtree_control), else
v1 where a cgroup mount carries cpu (this project's VMs: /sys/fs/cgroup/cpu,
writable as root). Neither writable: CgroupError, saying why for each.
The group is removed by close() - the runner calls it in a finally, so
Ctrl-C and exceptions remove it too; a group left by a killed run (its pid
gone, no tasks) is removed by the next run.
"""

import math
import os
import re

MIN_QUOTA_US = 1000  # the kernel's floor for a CFS quota (v1 and v2)
MAX_PERIOD_US = 10000
PREFIX = "hotpath-bench-"


class CgroupError(RuntimeError):
    pass


def period_for(cap):
    """The CFS period for a cap (a share of one CPU, 0 < cap <= 1), in us."""
    if not 0 < cap <= 1:
        raise CgroupError(f"cap {cap}: must be a share of one CPU, 0 < cap <= 1")
    period = max(MIN_QUOTA_US, math.ceil(MIN_QUOTA_US / cap))
    if period > MAX_PERIOD_US:
        raise CgroupError(f"cap {cap:.0%}: needs a period of {period} us for a 1 ms quota; "
                          f"caps under {MIN_QUOTA_US / MAX_PERIOD_US:.0%} would let "
                          "throttling dominate the latency")
    return period


def throttle_wait_us(cap):
    """The longest a throttled server waits for its next period."""
    return period_for(cap) * (1 - cap)


def candidates(mounts_text):
    """(version, mount point) of the hierarchies that carry cpu, v2 first."""
    v1, v2 = [], []
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        mnt, fstype, opts = parts[1], parts[2], parts[3].split(",")
        if fstype == "cgroup2":
            v2.append((2, mnt))
        elif fstype == "cgroup" and "cpu" in opts:
            v1.append((1, mnt))
    return v2 + v1


class CpuGroup:
    """One cpu cgroup, made for this run and removed by close()."""

    def __init__(self, mounts="/proc/self/mounts"):
        with open(mounts) as f:
            found = candidates(f.read())
        why = []
        for version, mnt in found:
            try:
                self._make(version, mnt)
                return
            except OSError as e:
                why.append(f"cgroup v{version} at {mnt}: {e.strerror or e}")
            except CgroupError as e:
                why.append(f"cgroup v{version} at {mnt}: {e}")
        raise CgroupError(
            "cannot cap the server's CPU: no writable cgroup cpu controller ("
            + ("; ".join(why) if why else "no cgroup v1 cpu or cgroup v2 mount")
            + "). Run as root on a machine with cgroup v1 cpu or cgroup v2 cpu, "
            "or leave the sweep out: --parts scenarios,idle,callgrind")

    def _make(self, version, mnt):
        if version == 2:
            with open(os.path.join(mnt, "cgroup.controllers")) as f:
                if "cpu" not in f.read().split():
                    raise CgroupError("the cpu controller is not available there")
            ctl = os.path.join(mnt, "cgroup.subtree_control")
            with open(ctl) as f:
                enabled = f.read().split()
            if "cpu" not in enabled:
                with open(ctl, "w") as f:
                    f.write("+cpu")
        remove_stale(mnt)
        path = os.path.join(mnt, f"{PREFIX}{os.getpid()}")
        os.mkdir(path)
        self.version, self.mount, self.path = version, mnt, path
        self.cap = self.period_us = None
        try:
            self.unlimit()  # proves the files are writable before anything runs in it
        except OSError:
            os.rmdir(path)
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def describe(self):
        files = "cpu.cfs_period_us + cpu.cfs_quota_us" if self.version == 1 else "cpu.max"
        return f"cgroup v{self.version} {self.path} ({files})"

    def set_cap(self, cap):
        """Cap the group at cap of one CPU (the period from period_for)."""
        period = period_for(cap)
        quota = round(cap * period)
        if self.version == 1:
            # Quota -1 first: the kernel checks quota against the period as
            # each is written, and the old quota may not fit the new period.
            self._write("cpu.cfs_quota_us", "-1")
            self._write("cpu.cfs_period_us", str(period))
            self._write("cpu.cfs_quota_us", str(quota))
        else:
            self._write("cpu.max", f"{quota} {period}")
        self.cap, self.period_us = cap, period

    def unlimit(self):
        """No cap (the closed-loop scenarios run so)."""
        if self.version == 1:
            self._write("cpu.cfs_quota_us", "-1")
        else:
            self._write("cpu.max", "max")
        self.cap = self.period_us = None

    def preexec(self):
        """For Popen(preexec_fn=...): the child joins the group before exec."""
        procs = os.path.join(self.path, "cgroup.procs")

        def join():
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        return join

    def add(self, pid):
        """Move a running process, every thread of it, into the group."""
        self._write("cgroup.procs", str(pid))

    def threads_outside(self, pid):
        """Thread ids of pid that are not in this group (should be none)."""
        rel = "/" + os.path.relpath(self.path, self.mount)
        out = []
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return out
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/cgroup") as f:
                    text = f.read()
            except OSError:
                continue
            if not self._member(text, rel):
                out.append(int(tid))
        return out

    def _member(self, proc_cgroup, rel):
        for line in proc_cgroup.splitlines():
            hid, ctrls, path = line.split(":", 2)
            if self.version == 2 and hid == "0" and path == rel:
                return True
            if self.version == 1 and "cpu" in ctrls.split(",") and path == rel:
                return True
        return False

    def stat(self):
        """Throttling counters (and, on v2, CPU usage) as a dict: periods,
        throttled (periods), throttled_s, usage_s (None on v1)."""
        raw = {}
        with open(os.path.join(self.path, "cpu.stat")) as f:
            for line in f:
                k, _, v = line.partition(" ")
                raw[k] = int(v)
        if self.version == 1:
            return dict(periods=raw.get("nr_periods", 0), throttled=raw.get("nr_throttled", 0),
                        throttled_s=raw.get("throttled_time", 0) / 1e9, usage_s=None)
        return dict(periods=raw.get("nr_periods", 0), throttled=raw.get("nr_throttled", 0),
                    throttled_s=raw.get("throttled_usec", 0) / 1e6,
                    usage_s=raw.get("usage_usec", 0) / 1e6)

    def close(self):
        """Remove the group; processes still in it go back to the parent."""
        if not getattr(self, "path", None) or not os.path.isdir(self.path):
            return
        parent = os.path.join(os.path.dirname(self.path), "cgroup.procs")
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                pids = f.read().split()
            for pid in pids:
                try:
                    with open(parent, "w") as f:
                        f.write(pid)
                except OSError:
                    pass  # exited meanwhile
            os.rmdir(self.path)
        except OSError as e:
            print(f"cgroup: could not remove {self.path}: {e}", flush=True)

    def _write(self, name, value):
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)


def remove_stale(mnt):
    """Remove groups left by runs that were killed (SIGKILL skips finally):
    ours by name, their pid gone, no task inside."""
    try:
        names = os.listdir(mnt)
    except OSError:
        return
    for name in names:
        m = re.fullmatch(re.escape(PREFIX) + r"(\d+)", name)
        if not m or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        path = os.path.join(mnt, name)
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                if f.read().strip():
                    continue
            os.rmdir(path)
        except OSError:
            pass
