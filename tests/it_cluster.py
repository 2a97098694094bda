#!/usr/bin/env python3
"""it_cluster.py - the cluster of `make cluster`, tested: three hotpath
instances (one worker each) behind HAProxy, sharing one redis-server as
their L2 and one upstream stub, all started by this test on ephemeral
loopback ports through loadtest/cluster.py's own Cluster class (the same
configs, the same HAProxy file), never system services.

    python3 tests/it_cluster.py [--build build]      (make test runs it)

What is checked, in order, on one cluster:
  a) a key filled through instance 1 is an `l2` answer on instance 2, and
     through HAProxy a new key answers `miss`, then `l2` or `hit`;
  d) a mode change (each instance's config file edited, then SIGHUP) is
     reloaded on every instance: each one's /stats says the new mode;
  b) one instance SIGKILLed under a bounded load through HAProxy (LOAD
     requests over CONNS keep-alive connections): HAProxy routes around
     it; every failed request is counted and printed, and there are no
     more of them than requests were in flight at the kill;
  c) another instance SIGTERMed under load that lasts until it has exited:
     it answers /healthz with 503 for limits.drain_health_ms, HAProxy takes
     it out, it drains and exits 0, and no request fails.
Every load loop is bounded in count and in time; the whole run takes
about 20 s. Exit status 0 when everything held, 1 otherwise.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "loadtest"))
import cluster  # noqa: E402  (loadtest/cluster.py)

CONNS = 4        # load connections through HAProxy
LOAD = 3000      # requests of the kill's load phase, over all connections
DRAIN_MAX = 300000  # the drain's load runs until the instance has gone; at most this
KEYS = 64        # /cache/k0 .. k63, so L1, L2 and the upstream all work
PHASE_S = 30     # a load phase's bound in time, whatever happens


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, target, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", target)
        r = c.getresponse()
        return r.status, r.getheader("X-Cache"), r.read()
    finally:
        c.close()


def stats(port):
    return json.loads(get(port, "/stats")[2])


class Load:
    """LOAD GETs through HAProxy over CONNS keep-alive connections, one
    request at a time each. A request that gets no 200 answer is a failure,
    counted with why; its connection is then opened anew."""

    def __init__(self, port, total=LOAD):
        self.port = port
        self.total = total
        self.stopped = False  # set: no more requests (stop())
        self.left = total
        self.lock = threading.Lock()
        self.done = 0
        self.failures = []  # (request number, why)
        self.in_flight = 0
        self.deadline = time.monotonic() + PHASE_S
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(CONNS)]

    def take(self):
        with self.lock:
            if self.left == 0 or self.stopped or time.monotonic() > self.deadline:
                return None
            self.left -= 1
            self.in_flight += 1
            return self.left

    def finish(self, n, why):
        with self.lock:
            self.in_flight -= 1
            self.done += 1
            if why:
                self.failures.append((n, why))

    def run(self, i):
        conn = None
        while (n := self.take()) is not None:
            why = None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", f"/cache/k{n % KEYS}")
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    why = f"status {r.status}"
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                why = f"{type(e).__name__}: {e}"
                if conn:
                    conn.close()
                conn = None
            self.finish(n, why)
        if conn:
            conn.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def wait_done(self, fraction):
        total = self.done + self.left + self.in_flight
        while self.done < fraction * total and any(t.is_alive() for t in self.threads):
            time.sleep(0.005)

    def stop(self):
        with self.lock:
            self.stopped = True

    def join(self):
        for t in self.threads:
            t.join(PHASE_S + 10)
        return self


class Test:
    def __init__(self, build):
        self.failed = 0
        self.dir = tempfile.mkdtemp(prefix="hp-it-cluster-")
        a = argparse.Namespace(
            instances=3, workers=1, port=free_port(), instance_base_port=None,
            upstream_port=free_port(), upstream_delay_ms=2, redis_port=free_port(),
            haproxy_threads=1, build=build, config=os.path.join(ROOT, "config", "hotpath.json"),
            redis_server=shutil.which("redis-server") or "redis-server",
            haproxy=shutil.which("haproxy") or "haproxy", health_timeout_s=10, stop_timeout_s=10)
        self.args = a
        self.c = cluster.Cluster(a)
        self.c.dir = self.dir
        self.ports = [free_port() for _ in range(a.instances)]

    def check(self, ok, what):
        print(f"it_cluster: {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.failed += 1
        return ok

    def start(self):
        c = self.c
        c.start_redis()
        c.start_upstream()
        # Ephemeral ports, one per instance, rather than base + i.
        for i, port in enumerate(self.ports, 1):
            conf = c.instance_config(i, port)
            p = c.spawn(f"hotpath-{i}", [os.path.join(self.args.build, "hotpath"), "--config",
                                         conf], f"instance-{i}.log")
            c.instances.append((i, port, p))
        for i, port, p in c.instances:
            cluster.wait_until(f"hotpath instance {i}", lambda port=port: cluster.listening(port),
                               10, p)
        c.start_haproxy()
        cluster.wait_until("every instance in service",
                           lambda: c.servers_up() == len(c.instances), 10)
        for i, port, _ in c.instances:
            cluster.wait_until(f"instance {i}'s L2", lambda port=port:
                               stats(port)["l2"]["connected"] == 1, 5)

    def l2_across_instances(self):
        p1, p2 = self.ports[0], self.ports[1]
        s1, x1, _ = get(p1, "/cache/shared")
        cluster.wait_until("the L2 store", lambda: stats(p1)["l2"]["stored"] >= 1, 5)
        s2, x2, _ = get(p2, "/cache/shared")
        s3, x3, _ = get(p2, "/cache/shared")
        self.check((s1, x1, s2, x2, s3, x3) == (200, "miss", 200, "l2", 200, "hit"),
                   f"a) filled on instance 1 ({x1}), instance 2 answers {x2}, then {x3}")
        s4, x4, _ = get(self.args.port, "/cache/through-haproxy")
        time.sleep(0.05)  # the SET is fire and forget
        s5, x5, _ = get(self.args.port, "/cache/through-haproxy")
        self.check(s4 == s5 == 200 and x4 == "miss" and x5 in ("l2", "hit"),
                   f"a) through HAProxy: {x4}, then {x5}")

    def mode_change_everywhere(self):
        for i, port, p in self.c.instances:
            path = self.c.path(f"instance-{i}.json")
            with open(path) as f:
                cfg = json.load(f)
            cfg["mode"] = "task"
            with open(path, "w") as f:
                json.dump(cfg, f)
            p.send_signal(signal.SIGHUP)
        modes = {}
        for i, port, _ in self.c.instances:
            try:
                cluster.wait_until(f"instance {i} in task mode",
                                   lambda port=port: stats(port)["server"]["mode"] == "task", 5)
            except RuntimeError:
                pass
            modes[i] = stats(port)["server"]["mode"]
        self.check(all(m == "task" for m in modes.values()),
                   f"d) after SIGHUP, each instance's /stats mode: {modes}")

    def kill_under_load(self):
        i, port, p = self.c.instances[1]
        load = Load(self.args.port).start()
        load.wait_done(0.3)
        with load.lock:
            in_flight = load.in_flight
            p.send_signal(signal.SIGKILL)
        load.join()
        p.wait()
        n = len(load.failures)
        print(f"it_cluster: kill: {load.done} requests, {n} failed, {in_flight} in flight at the "
              f"SIGKILL of instance {i}", flush=True)
        for req, why in load.failures:
            print(f"it_cluster:   failed request #{req}: {why}", flush=True)
        self.check(load.done == LOAD, f"b) the load ran to its end ({load.done} of {LOAD})")
        self.check(n <= in_flight, f"b) failures ({n}) <= requests in flight at the kill "
                                   f"({in_flight})")
        cluster.wait_until("HAProxy to take the killed instance out",
                           lambda: self.c.servers_up() == 2, 5)

    def drain_under_load(self):
        i, port, p = self.c.instances[2]
        load = Load(self.args.port, DRAIN_MAX).start()
        load.wait_done(3000 / DRAIN_MAX)  # well under way (a count, not a share of the bound)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        saw_503 = False
        while p.poll() is None and time.monotonic() - t0 < 10:
            try:
                saw_503 |= get(port, "/healthz", timeout=1)[0] == 503
            except OSError:
                pass  # the listener has closed: the drain has begun
            time.sleep(0.05)
        took = time.monotonic() - t0
        done_at_exit = load.done
        time.sleep(0.3)
        running_after_exit = load.done > done_at_exit
        load.stop()
        load.join()
        n = len(load.failures)
        print(f"it_cluster: drain: {load.done} requests, {n} failed; instance {i} exited "
              f"{p.returncode} {took:.1f} s after SIGTERM", flush=True)
        for req, why in load.failures:
            print(f"it_cluster:   failed request #{req}: {why}", flush=True)
        self.check(saw_503, "c) the draining instance answered /healthz with 503")
        self.check(p.returncode == 0, f"c) it exited 0 (status {p.returncode})")
        self.check(p.returncode is not None and running_after_exit,
                   "c) the load was still running when the instance had exited")
        self.check(n == 0, f"c) no request failed ({n} of {load.done})")

    def run(self):
        t0 = time.monotonic()
        try:
            self.start()
            self.l2_across_instances()
            self.mode_change_everywhere()
            self.kill_under_load()
            self.drain_under_load()
        except (RuntimeError, OSError, KeyError) as e:
            self.check(False, f"error: {e}")
            for name in os.listdir(self.dir):
                if name.endswith(".log"):
                    with open(os.path.join(self.dir, name), errors="replace") as f:
                        tail = f.read()[-2000:]
                    print(f"--- {name}\n{tail}")
        finally:
            self.c.stop()
            shutil.rmtree(self.dir, ignore_errors=True)
        print(f"it_cluster: {'passed' if not self.failed else f'{self.failed} check(s) FAILED'} "
              f"in {time.monotonic() - t0:.1f} s", flush=True)
        return 1 if self.failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    for tool in ("redis-server", "haproxy"):
        if shutil.which(tool) is None:
            print(f"it_cluster: FAIL: {tool} is not on PATH (make deps installs it)")
            return 1
    return Test(os.path.abspath(args.build)).run()


if __name__ == "__main__":
    sys.exit(main())
