#!/usr/bin/env python3
"""bench.py - the load test: both modes under real load, nginx as the
yardstick, the fixed-rate sweep that finds the threshold, and a report.

What `make bench` (full) and `make bench-quick` (< 3 minutes) run. Python 3
standard library only. The runner measures and reports; it never asserts.

Layout of one run:
  1. start the upstream stub (pinned with the load generators) and one
     hotpath (workers 1, pinned to the server CPU) on a temp copy of
     config/hotpath.json, and nginx (1 worker, same CPU) on a config made
     from loadtest/nginx.conf.in;
  2. scenarios with wrk (closed loop): per scenario, rounds of
     valuetask / task / nginx, interleaved (A B N A B N ...: a burst of
     noise from another tenant lands on one run of each, not on all runs of
     one target); modes are switched by rewriting the temp config's
     "mode" and sending SIGHUP - the same process throughout - and each
     switch is verified through /stats server.mode;
  3. the sweep with build/hotpath-load (open loop, fixed rate) over rising
     offered rates, both modes at each rate, until both saturate;
  4. instructions per request with callgrind on a separate hotpath;
  5. RSS growth over 5,000 idle keep-alive connections, hotpath and nginx;
  6. report.md, results.json and gnuplot plots in
     loadtest/results/<date>/, copied to loadtest/results/latest/.

Every process started here runs in its own process group and is stopped on
the way out, whatever the way out is (exception, Ctrl-C, SIGTERM). Every
load is bounded in time and only ever aims at 127.0.0.1.
"""

import argparse
import datetime
import http.client
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
MODES = ("valuetask", "task")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# --- profiles ---------------------------------------------------------------

# quick: must finish in under 3 minutes with the builds, so fewer rounds,
# short runs, a coarse sweep and small callgrind counts (callgrind counts are
# deterministic, so small counts lose nothing but warm-up amortisation).
PROFILES = {
    "quick": dict(
        rounds=2, duration_s=2, warmup_s=1, connections=64,
        sweep_rates=[5000, 20000, 50000, 80000, 110000, 140000, 170000, 200000, 300000, 400000],
        sweep_duration_s=1.5, sweep_warmup_s=0.5, sweep_repeats=1, sweep_paths=["/plaintext"],
        sweep_budget_s=60,
        callgrind_counts=(1000, 4000), callgrind_warmup=500, idle_connections=5000,
    ),
    "full": dict(
        rounds=5, duration_s=10, warmup_s=2, connections=64,
        sweep_rates=[5000, 10000, 20000, 30000, 40000, 50000, 60000, 80000, 100000, 120000,
                     140000, 160000, 180000, 200000, 250000, 300000, 400000, 500000, 600000,
                     800000, 1000000],
        sweep_duration_s=5, sweep_warmup_s=1, sweep_repeats=2, sweep_budget_s=900,
        sweep_paths=["/plaintext", "/cache/hot0"],
        callgrind_counts=(5000, 20000), callgrind_warmup=2000, idle_connections=5000,
    ),
}

# Scenarios: the wrk script, its arguments, the hotpath routes whose /stats
# deltas give the allocations, and whether nginx has the same endpoint.
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

# The sweep's verdicts. A mode is saturated at a rate where it answers less
# than 95% of what is offered or its p99 explodes (over 10x its p99 at the
# lowest rate and over 5 ms: an open-loop queue that grows for seconds, not a
# hiccup from another tenant of the machine); a verdict is confirmed by one
# more run before the mode stops climbing. The modes have parted where task's p99 is above
# valuetask's by more than the run-to-run spread: > 1.2x and > 50 us (and,
# with repeats, every task repeat above every valuetask repeat).
SAT_ACHIEVED = 0.95
SAT_P99_FACTOR, SAT_P99_FLOOR_US = 10.0, 5000.0
PART_RATIO, PART_MIN_US = 1.2, 50.0
CPU_FULL = 0.95           # server CPU share from which the server's core counts as fully used
GENERATOR_LAG_US = 1000.0  # send-lag p99 above this: the generator, not the server, is the limit
GENERATOR_LAG50_US = 100.0  # send-lag p50 above this: it is late on most requests, same verdict


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- processes --------------------------------------------------------------

class Procs:
    """Long-running processes (servers), each in its own process group."""

    def __init__(self):
        self.procs = []

    def start(self, name, cmd, stdout_path, stderr_path, env=None):
        out = open(stdout_path, "wb")
        err = open(stderr_path, "wb")
        p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=ROOT, env=env)
        out.close()
        err.close()
        p.name = name
        self.procs.append(p)
        return p

    def stop(self, p, timeout=10):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        else:
            # The leader exited; make sure nothing of its group lingers.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    def stop_all(self):
        for p in list(reversed(self.procs)):
            try:
                self.stop(p)
            except Exception as e:  # keep stopping the others
                print(f"bench: stopping {p.name} (pid {p.pid}): {e}", file=sys.stderr)


PROCS = Procs()
COMMANDS = []  # every command line run, for the report


def record(cmd, env_note=""):
    line = (env_note + " " if env_note else "") + " ".join(shlex.quote(c) for c in cmd)
    if line not in COMMANDS:
        COMMANDS.append(line)


def run(cmd, timeout, env=None, env_note=""):
    """Run a bounded command in its own process group; returns stdout text.
    On timeout the whole group is killed and TimeoutError raised."""
    record(cmd, env_note)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise TimeoutError(f"timed out after {timeout}s: {' '.join(cmd)}")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if p.returncode not in (0, None):
        tail = err.decode(errors="replace")[-400:]
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}: {tail}")
    return out.decode(errors="replace")


def wait_for_line(path, pattern, proc, timeout):
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.returncode}) before it listened")
        try:
            with open(path, errors="replace") as f:
                m = rx.search(f.read())
            if m:
                return m
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{proc.name}: no '{pattern}' within {timeout}s")


def wait_port(port, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.returncode}) before it listened")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{proc.name}: port {port} not open within {timeout}s")


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def process_tree(pid):
    """pid and its descendants (nginx: master and workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_ticks(pid):
    """utime + stime of pid's process tree, in clock ticks (all threads)."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total


def rss_bytes(pid):
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


def http_get(port, path, timeout=5):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, body
    finally:
        c.close()


def parse_result(text):
    for line in text.splitlines():
        if line.startswith("HOTPATH_RESULT "):
            return json.loads(line[len("HOTPATH_RESULT "):])
    raise RuntimeError("no HOTPATH_RESULT line in output:\n" + text[-600:])


# --- the servers ------------------------------------------------------------

class Hotpath:
    def __init__(self, build, tmp, stub_port, taskset, name="hotpath", wrapper=None):
        self.tmp = tmp
        self.name = name
        with open(os.path.join(ROOT, "config", "hotpath.json")) as f:
            self.cfg = json.load(f)
        self.cfg["listen"]["port"] = 0
        self.cfg["workers"] = 1
        self.cfg["mode"] = "valuetask"
        self.cfg["upstream"]["port"] = stub_port
        # The advisor decides on its last window: one second, so the advice
        # taken right after a scenario reflects that scenario alone.
        self.cfg.setdefault("advice", {})["window_s"] = 1
        self.cfg_path = os.path.join(tmp, f"{name}.json")
        self.write_config()
        # No --mode flag: a flag would override the file across reloads too.
        cmd = (wrapper or []) + [os.path.join(build, "hotpath"), "--config", self.cfg_path,
                                 "--port", "0", "--workers", "1"]
        cmd = taskset + cmd
        record(cmd)
        out = os.path.join(tmp, f"{name}.out")
        self.err = os.path.join(tmp, f"{name}.err")
        self.proc = PROCS.start(name, cmd, out, self.err)
        m = wait_for_line(out, r"hotpath listening on http://[0-9.]+:(\d+)", self.proc,
                          60 if wrapper else 10)
        self.port = int(m.group(1))
        self.pid = self.proc.pid  # taskset and valgrind exec, so this is the server
        self.mode = "valuetask"

    def write_config(self):
        tmp = self.cfg_path + ".new"
        with open(tmp, "w") as f:
            json.dump(self.cfg, f, indent=2)
        os.replace(tmp, self.cfg_path)

    def stats(self):
        status, body = http_get(self.port, "/stats", timeout=30)
        if status != 200:
            raise RuntimeError(f"/stats answered {status}")
        return json.loads(body)

    def set_mode(self, mode, timeout=10):
        """Rewrite "mode", SIGHUP, and wait until /stats says so."""
        if self.mode == mode and self.stats()["server"]["mode"] == mode:
            return
        self.cfg["mode"] = mode
        self.write_config()
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats()["server"]["mode"] == mode:
                self.mode = mode
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.name}: mode did not switch to {mode} after SIGHUP")

    def advice(self):
        status, body = http_get(self.port, "/advice", timeout=30)
        if status != 200:
            raise RuntimeError(f"/advice answered {status}")
        return json.loads(body)

    def stop(self):
        return PROCS.stop(self.proc, timeout=15)


class Nginx:
    def __init__(self, tmp, stub_port, taskset, connections):
        self.prefix = os.path.join(tmp, "nginx")
        os.makedirs(os.path.join(self.prefix, "tmp"), exist_ok=True)
        os.chmod(tmp, 0o755)
        os.chmod(self.prefix, 0o755)
        self.port = free_port()
        with open(os.path.join(HERE, "nginx.conf.in")) as f:
            text = f.read()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if nofile == resource.RLIM_INFINITY:
            nofile = 65536
        subst = {"PREFIX": self.prefix, "PORT": str(self.port), "UPSTREAM_PORT": str(stub_port),
                 "WORKER_CONNECTIONS": str(max(1024, connections)),
                 "NOFILE": str(max(1024, min(nofile, 1 << 20)))}
        for k, v in subst.items():
            text = text.replace(f"@{k}@", v)
        if "@" in re.sub(r"#.*", "", text):
            raise RuntimeError("nginx.conf.in: unsubstituted placeholder")
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(text)
        cmd = taskset + ["nginx", "-c", self.conf, "-p", self.prefix + "/",
                         "-e", os.path.join(self.prefix, "error.log")]
        record(cmd)
        self.proc = PROCS.start("nginx", cmd, os.path.join(self.prefix, "stdout"),
                                os.path.join(self.prefix, "stderr"))
        self.pid = self.proc.pid
        wait_port(self.port, self.proc, 10)

    def stop(self):
        return PROCS.stop(self.proc, timeout=10)


# --- load generators --------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.p = dict(PROFILES["quick" if args.quick else "full"])
        self.build = os.path.abspath(args.build)
        cpus = sorted(os.sched_getaffinity(0))
        self.cpus = cpus
        if len(cpus) >= 2 and shutil.which("taskset"):
            self.server_cpu, self.load_cpu = cpus[0], cpus[1]
            self.ts_server = ["taskset", "-c", str(cpus[0])]
            self.ts_load = ["taskset", "-c", str(cpus[1])]
        else:
            self.server_cpu = self.load_cpu = None
            self.ts_server = self.ts_load = []
        self.nonce = 0
        self.results = dict(scenarios={}, sweep={}, callgrind={}, idle_memory={}, notes=[])

    def next_nonce(self):
        self.nonce += 1
        return f"{int(time.time())}x{self.nonce}"

    def wrk(self, port, sc, duration, url_note=""):
        nonce = self.next_nonce()
        cmd = self.ts_load + ["wrk", "-t1", f"-c{self.p['connections']}", f"-d{duration}s",
                              "--timeout", "5s", "-s", os.path.join("loadtest", sc["script"]),
                              f"http://{HOST}:{port}"]
        if sc["args"]:
            cmd += ["--"] + sc["args"]
        env = dict(os.environ, HOTPATH_NONCE=nonce)
        r = parse_result(run(cmd, duration + 30, env=env, env_note="HOTPATH_NONCE=<fresh>"))
        # wrk 4.1 corrects its histogram for coordinated omission assuming one
        # request in flight per connection; with pipelining that goes wrong
        # and its high percentiles come out as 0. Not a latency: no number.
        lat = r["latency_us"]
        for k in ("p90", "p99", "p99_9"):
            if lat[k] == 0 and lat["p50"] > 0:
                lat[k] = None
                r["wrk_percentile_bug"] = True
        return r

    def load(self, port, path, rate, duration, warmup):
        cmd = self.ts_load + [os.path.join(self.build, "hotpath-load"), "--port", str(port),
                              "--path", path, "--rate", str(rate),
                              "--connections", str(self.p["connections"]),
                              "--duration", str(duration), "--warmup", str(warmup),
                              "--drain", "1"]
        return parse_result(run(cmd, duration + warmup + 30))

    # --- scenarios -----------------------------------------------------------

    def measure_hotpath(self, hp, sc, mode, duration):
        hp.set_mode(mode)
        s0 = hp.stats()
        c0 = cpu_ticks(hp.pid)
        r = self.wrk(hp.port, sc, duration)
        c1 = cpu_ticks(hp.pid)
        s1 = hp.stats()
        if s1["server"]["mode"] != mode:
            raise RuntimeError(f"mode changed during the run: {s1['server']['mode']}")
        reqs = allocs = nbytes = outside = non2xx = 0
        for route in sc["routes"]:
            a = s0["routes"].get(route, {}).get(mode, {})
            b = s1["routes"].get(route, {}).get(mode, {})
            reqs += b.get("requests", 0) - a.get("requests", 0)
            allocs += b.get("allocations", 0) - a.get("allocations", 0)
            nbytes += b.get("allocated_bytes", 0) - a.get("allocated_bytes", 0)
            outside += (b.get("outside_chain", {}).get("allocations", 0)
                        - a.get("outside_chain", {}).get("allocations", 0))
            for cls in ("other", "1xx", "3xx", "4xx", "5xx"):
                non2xx += b.get("status", {}).get(cls, 0) - a.get("status", {}).get(cls, 0)
        ca, cb = s0["cache"], s1["cache"]
        hits = cb["hits"] - ca["hits"] + cb["stale"] - ca["stale"]
        looked = hits + cb["misses"] - ca["misses"] + cb["coalesced"] - ca["coalesced"]
        r.update(target=mode, server_requests=reqs,
                 cpu_us_per_req=(c1 - c0) / CLK_TCK * 1e6 / r["requests"] if r["requests"] else None,
                 cpu_s=(c1 - c0) / CLK_TCK,
                 allocs_per_req=allocs / reqs if reqs else None,
                 bytes_per_req=nbytes / reqs if reqs else None,
                 # Around the chain (reading, pipelining, blocked writes), and
                 # everything the worker allocated over the run (its
                 # connections, wrk's, /stats itself): the route's figure is
                 # a part of this, never more.
                 outside_chain_per_req=outside / reqs if reqs else None,
                 worker_allocs_per_req=(worker_allocs(s1) - worker_allocs(s0)) / reqs
                 if reqs else None,
                 non2xx=non2xx,
                 cache_hit_ratio=hits / looked if looked else None,
                 upstream_errors=sum(s1["upstream"]["errors"].values())
                 - sum(s0["upstream"]["errors"].values()))
        return r

    def measure_nginx(self, ng, sc, duration):
        c0 = cpu_ticks(ng.pid)
        r = self.wrk(ng.port, sc, duration)
        c1 = cpu_ticks(ng.pid)
        r.update(target="nginx", cpu_s=(c1 - c0) / CLK_TCK,
                 cpu_us_per_req=(c1 - c0) / CLK_TCK * 1e6 / r["requests"] if r["requests"] else None)
        return r

    def scenarios(self, hp, ng):
        dur, rounds = self.p["duration_s"], self.p["rounds"]
        names = self.args.scenarios.split(",") if self.args.scenarios else None
        for sc in SCENARIOS:
            if names and sc["name"] not in names:
                continue
            log(f"scenario {sc['name']}: warm-up, then {rounds} rounds of {dur}s per target")
            runs = []
            advice = None
            try:
                # Warm-up, not recorded: connections, upstream pool, hot keys.
                hp.set_mode("valuetask")
                self.wrk(hp.port, sc, self.p["warmup_s"])
                if ng and sc["nginx"]:
                    self.wrk(ng.port, sc, self.p["warmup_s"])
                for rnd in range(rounds):
                    for mode in MODES:
                        r = self.measure_hotpath(hp, sc, mode, dur)
                        r["round"] = rnd
                        runs.append(r)
                        log(f"  {sc['name']:<12} {mode:<9} {r['rps']:>10.0f} req/s  "
                            f"p99 {fmt_n(r['latency_us']['p99']):>8} us  "
                            f"{r['allocs_per_req'] or 0:.2f} allocs/req "
                            f"({r['worker_allocs_per_req'] or 0:.2f} on the worker)  "
                            f"{r['cpu_us_per_req'] or 0:.2f} cpu-us/req")
                        if rnd == rounds - 1 and mode == "valuetask":
                            # Right after the last valuetask run: the advisor's
                            # last window saw this load, and its inline results.
                            advice = hp.advice()
                    if ng and sc["nginx"]:
                        r = self.measure_nginx(ng, sc, dur)
                        r["round"] = rnd
                        runs.append(r)
                        log(f"  {sc['name']:<12} {'nginx':<9} {r['rps']:>10.0f} req/s  "
                            f"p99 {fmt_n(r['latency_us']['p99']):>8} us  "
                            f"{r['cpu_us_per_req'] or 0:.2f} cpu-us/req")
            except (RuntimeError, TimeoutError, OSError, ValueError) as e:
                log(f"  {sc['name']}: failed: {e}")
                self.results["notes"].append(f"scenario {sc['name']} failed: {e}")
            self.results["scenarios"][sc["name"]] = dict(
                what=sc["what"], script=sc["script"], args=sc["args"], routes=sc["routes"],
                runs=runs, summary=summarize(runs), advice=advice)

    # --- sweep ------------------------------------------------------------------

    def sweep_run(self, hp, path, rate, mode):
        """One hotpath-load run at rate in mode, with the server's /stats and
        CPU around it. A run whose generator lagged (it could not send on
        schedule: another tenant had its CPU) is retried up to twice; the
        retried ones are kept in discarded with the reason."""
        p = self.p
        discarded = []
        for attempt in range(3):
            hp.set_mode(mode)
            s0 = hp.stats()
            c0 = cpu_ticks(hp.pid)
            r = self.load(hp.port, path, rate, p["sweep_duration_s"], p["sweep_warmup_s"])
            c1 = cpu_ticks(hp.pid)
            s1 = hp.stats()
            route = route_of(path)
            a = s0["routes"].get(route, {}).get(mode, {})
            b = s1["routes"].get(route, {}).get(mode, {})
            n = b.get("requests", 0) - a.get("requests", 0)
            r["allocs_per_req"] = (b.get("allocations", 0) - a.get("allocations", 0)) / n if n else None
            r["server_cpu_share"] = (c1 - c0) / CLK_TCK / (p["sweep_duration_s"] + p["sweep_warmup_s"])
            r["mode"] = mode
            if r["send_lag_us"]["p99"] <= GENERATOR_LAG_US or attempt == 2:
                return r, discarded
            r["discarded"] = f"generator send lag p99 {r['send_lag_us']['p99']:.0f} us"
            discarded.append(r)
        return r, discarded

    @staticmethod
    def saturation(runs, rate, base_p99):
        """Why the runs say the server is saturated at rate, or None."""
        p99 = statistics.median(x["latency_us"]["p99"] for x in runs)
        ach = statistics.median(x["achieved_rps"] for x in runs)
        lag = statistics.median(x["send_lag_us"]["p99"] for x in runs)
        lag50 = statistics.median(x["send_lag_us"]["p50"] for x in runs)
        why = []
        if ach < SAT_ACHIEVED * rate:
            why.append(f"achieved {ach:.0f} < {SAT_ACHIEVED:.0%} of offered")
        if base_p99 is not None and p99 > SAT_P99_FACTOR * base_p99 and p99 > SAT_P99_FLOOR_US:
            why.append(f"p99 {p99:.0f} us > {SAT_P99_FACTOR:.0f}x its lowest-rate p99 and > "
                       f"{SAT_P99_FLOOR_US / 1000:.0f} ms")
        # The generator's verdict is kept apart ("generator-limited" in the
        # text is what the callers look for): it says nothing about the server.
        if lag > GENERATOR_LAG_US:
            why.append(f"generator-limited: its send lag p99 was {lag:.0f} us")
        elif lag50 > GENERATOR_LAG50_US:
            why.append(f"generator-limited: its send lag p50 was {lag50:.0f} us, late on most "
                       "requests")
        return "; ".join(why) or None

    def sweep(self, hp):
        p = self.p
        for path in p["sweep_paths"]:
            log(f"sweep {path}: offered rates {p['sweep_rates'][0]}..{p['sweep_rates'][-1]} req/s, "
                f"{p['sweep_repeats']} repeat(s) of {p['sweep_duration_s']}s per mode")
            if path.startswith("/cache/"):
                hp.set_mode("valuetask")
                http_get(hp.port, path)  # fill the key before measuring
            points, base_p99, saturated, limited = [], {}, {}, False
            t_sweep = time.monotonic()
            for i, rate in enumerate(p["sweep_rates"]):
                live = [m for m in MODES if m not in saturated]
                if not live:
                    break
                if time.monotonic() - t_sweep > p["sweep_budget_s"]:
                    note = (f"sweep {path}: stopped at {rate:,} req/s, its time budget of "
                            f"{p['sweep_budget_s']} s spent")
                    log("  " + note)
                    self.results["notes"].append(note)
                    break
                point = dict(offered=rate, runs={m: [] for m in MODES},
                             discarded={m: [] for m in MODES})
                try:
                    # Repeats interleaved, the order alternating: A B, B A, ...
                    for rep in range(p["sweep_repeats"]):
                        order = live if (i + rep) % 2 == 0 else list(reversed(live))
                        for mode in order:
                            r, disc = self.sweep_run(hp, path, rate, mode)
                            point["runs"][mode].append(r)
                            point["discarded"][mode] += disc
                    for mode in live:
                        why = self.saturation(point["runs"][mode], rate, base_p99.get(mode))
                        if why and "generator-limited" not in why:
                            # One confirmation run: a p99 spike from another
                            # tenant does not reproduce, a saturated server does.
                            r, disc = self.sweep_run(hp, path, rate, mode)
                            point["discarded"][mode] += disc
                            if self.saturation([r], rate, base_p99.get(mode)) is None:
                                for x in point["runs"][mode]:
                                    x["discarded"] = f"not reproduced by a confirmation run ({why})"
                                point["discarded"][mode] += point["runs"][mode]
                                point["runs"][mode] = [r]
                            else:
                                point["runs"][mode].append(r)
                            why = self.saturation(point["runs"][mode], rate, base_p99.get(mode))
                        base_p99.setdefault(mode, statistics.median(
                            x["latency_us"]["p99"] for x in point["runs"][mode]))
                        if why:
                            gen_only = all("generator-limited" in w for w in why.split("; "))
                            saturated[mode] = dict(rate=rate, why=why,
                                                   kind="generator" if gen_only else "server")
                            limited = limited or "generator-limited" in why
                        rs = point["runs"][mode]
                        log(f"  {path} {rate:>7} req/s {mode:<9} achieved "
                            f"{statistics.median(x['achieved_rps'] for x in rs):>9.0f}  p99 "
                            f"{statistics.median(x['latency_us']['p99'] for x in rs):>9.1f} us  "
                            f"lag p99 {max(x['send_lag_us']['p99'] for x in rs):>7.1f} us"
                            + (f"  [{len(point['discarded'][mode])} run(s) discarded]"
                               if point["discarded"][mode] else "")
                            + (f"  SATURATED: {why}" if why else ""))
                except (RuntimeError, TimeoutError, OSError, ValueError) as e:
                    log(f"  {path} {rate}: failed: {e}")
                    self.results["notes"].append(f"sweep {path} at {rate} req/s failed: {e}")
                    break
                points.append(point)
            self.results["sweep"][path] = analyse_sweep(points, saturated, p["sweep_repeats"])
            self.results["sweep"][path]["generator_limited"] = limited

    # --- callgrind ----------------------------------------------------------------

    def callgrind(self, stub_port, tmp):
        if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
            self.results["notes"].append("callgrind skipped: valgrind not installed")
            return
        h2load = shutil.which("h2load")
        n1, n2 = self.p["callgrind_counts"]
        cgdir = os.path.join(tmp, "callgrind")
        os.makedirs(cgdir)
        wrapper = ["valgrind", "--tool=callgrind", "--dump-instr=no",
                   f"--callgrind-out-file={cgdir}/callgrind.out.%p"]
        log(f"callgrind: hotpath under valgrind; {n1} and {n2} requests per path and mode")
        hp = Hotpath(self.build, tmp, stub_port, self.ts_server, name="hotpath-callgrind",
                     wrapper=wrapper)
        try:
            def send(path, n):
                if h2load:
                    cmd = self.ts_load + [h2load, "--h1", "-n", str(n), "-c", "1",
                                          f"http://{HOST}:{hp.port}{path}"]
                    out = run(cmd, 600)
                    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
                    if not m or int(m.group(2)) != n:
                        raise RuntimeError(f"h2load did not complete {n} requests: {out[-300:]}")
                else:
                    c = http.client.HTTPConnection(HOST, hp.port, timeout=30)
                    for _ in range(n):
                        c.request("GET", path)
                        c.getresponse().read()
                    c.close()

            dumps = [0]

            def dump():
                """Dump and zero the counters; returns the Ir since the last dump."""
                run(["callgrind_control", "-d", str(hp.pid)], 120)
                dumps[0] += 1
                f = os.path.join(cgdir, f"callgrind.out.{hp.pid}.{dumps[0]}")
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if os.path.exists(f):
                        with open(f) as fh:
                            m = re.search(r"^(?:summary|totals): (\d+)", fh.read(), re.M)
                        if m:
                            return int(m.group(1))
                    time.sleep(0.1)
                raise RuntimeError(f"callgrind dump {f} not written")

            for mode in MODES:
                hp.set_mode(mode, timeout=60)
                for path in ("/plaintext", "/json"):
                    send(path, self.p["callgrind_warmup"])
                    s0 = hp.stats()
                    dump()
                    send(path, n1)
                    i1 = dump()
                    send(path, n2)
                    i2 = dump()
                    s1 = hp.stats()
                    route = route_of(path)
                    a = s0["routes"].get(route, {}).get(mode, {})
                    b = s1["routes"].get(route, {}).get(mode, {})
                    n = b.get("requests", 0) - a.get("requests", 0)
                    allocs = (b.get("allocations", 0) - a.get("allocations", 0)) / n if n else None
                    per = (i2 - i1) / (n2 - n1)
                    self.results["callgrind"].setdefault(path, {})[mode] = dict(
                        n1=n1, n2=n2, ir_n1=i1, ir_n2=i2, ir_per_request=per,
                        ir_per_request_raw=i2 / n2, allocs_per_req=allocs)
                    log(f"  {path:<11} {mode:<9} {per:9.0f} instructions/request "
                        f"(raw {i2 / n2:.0f}; {allocs} allocs/req)")
        finally:
            hp.stop()
        self.results["callgrind_command"] = " ".join(wrapper) + " build/hotpath ..."

    # --- idle memory ------------------------------------------------------------

    def idle_memory(self, name, port, pid):
        n = self.p["idle_connections"]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = n + 256
        if soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(hard, max(want, soft))
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        n = min(n, soft - 128)
        req = f"GET /plaintext HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
        time.sleep(0.3)
        before = rss_bytes(pid)
        socks, failed = [], 0
        t0 = time.monotonic()
        try:
            for _ in range(n):
                if time.monotonic() - t0 > 60:
                    break
                try:
                    s = socket.create_connection((HOST, port), timeout=5)
                    s.sendall(req)
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        chunk = s.recv(4096)
                        if not chunk:
                            raise OSError("closed")
                        buf += chunk
                    head, _, body = buf.partition(b"\r\n\r\n")
                    m = re.search(rb"content-length:\s*(\d+)", head, re.I)
                    want_body = int(m.group(1)) if m else 0
                    while len(body) < want_body:
                        chunk = s.recv(4096)
                        if not chunk:
                            raise OSError("closed")
                        body += chunk
                    socks.append(s)
                except OSError:
                    failed += 1
            time.sleep(0.5)
            after = rss_bytes(pid)
        finally:
            for s in socks:
                s.close()
        open_n = len(socks)
        self.results["idle_memory"][name] = dict(
            connections=open_n, failed=failed, rss_before=before, rss_after=after,
            per_connection_bytes=(after - before) / open_n if open_n else None)
        log(f"idle memory {name}: {open_n} connections, RSS {before / 2**20:.1f} -> "
            f"{after / 2**20:.1f} MiB = {(after - before) / max(open_n, 1):.0f} B/connection"
            + (f" ({failed} failed)" if failed else ""))

    # --- the whole run ------------------------------------------------------------

    def main(self):
        t_start = time.monotonic()
        parts = set(self.args.parts.split(","))
        tmp = tempfile.mkdtemp(prefix="hotpath-bench-")
        log(f"{'quick' if self.quick else 'full'} run; temp dir {tmp}; "
            f"server CPU {self.server_cpu}, load CPU {self.load_cpu}")
        if self.server_cpu is None:
            self.results["notes"].append("fewer than 2 CPUs (or no taskset): nothing pinned; "
                                         "server and load generator share the CPU")
        try:
            stub_cmd = self.ts_load + [os.path.join(self.build, "hotpath-upstream"), "--port", "0",
                                       "--delay-ms", str(self.args.upstream_delay_ms)]
            record(stub_cmd)
            stub = PROCS.start("stub", stub_cmd, os.path.join(tmp, "stub.out"),
                               os.path.join(tmp, "stub.err"))
            m = wait_for_line(os.path.join(tmp, "stub.out"),
                              r"hotpath-upstream listening on [0-9.]+:(\d+)", stub, 10)
            stub_port = int(m.group(1))
            hp = Hotpath(self.build, tmp, stub_port, self.ts_server)
            ng = None
            if shutil.which("nginx") and not self.args.no_nginx:
                try:
                    ng = Nginx(tmp, stub_port, self.ts_server, self.p["idle_connections"] + 1024)
                except (RuntimeError, TimeoutError, OSError) as e:
                    self.results["notes"].append(f"nginx did not start: {e}")
                    log(f"nginx did not start: {e}")
            else:
                self.results["notes"].append("nginx not used (not installed or --no-nginx)")

            if "scenarios" in parts:
                self.scenarios(hp, ng)
            if "sweep" in parts:
                self.sweep(hp)
            if "idle" in parts:
                self.idle_memory("hotpath", hp.port, hp.pid)
                if ng:
                    self.idle_memory("nginx", ng.port, ng.pid)
            self.results["hotpath_stderr_tail"] = tail(hp.err, 20)
            rc = hp.stop()
            self.results["hotpath_exit"] = rc
            if rc != 0:
                self.results["notes"].append(f"hotpath exited with {rc} on SIGTERM")
            if ng:
                ng.stop()
            if "callgrind" in parts:
                try:
                    self.callgrind(stub_port, tmp)
                except (RuntimeError, TimeoutError, OSError) as e:
                    self.results["notes"].append(f"callgrind failed: {e}")
                    log(f"callgrind failed: {e}")
            self.results["stub_stats"] = stub_stats(stub_port)
            PROCS.stop_all()
            self.results["wall_s"] = time.monotonic() - t_start
            self.write_report(tmp)
        finally:
            PROCS.stop_all()
            if not self.args.keep_tmp:
                shutil.rmtree(tmp, ignore_errors=True)

    def write_report(self, tmp):
        day = datetime.date.today().isoformat()
        # One folder per day, quick or full (the report says which): a rerun
        # the same day overwrites it.
        out = self.args.out or os.path.join(HERE, "results", day)
        os.makedirs(out, exist_ok=True)
        meta = machine_info()
        meta.update(profile="quick" if self.quick else "full", params=self.p,
                    date=datetime.datetime.now().isoformat(timespec="seconds"),
                    server_cpu=self.server_cpu, load_cpu=self.load_cpu,
                    upstream_delay_ms=self.args.upstream_delay_ms)
        self.results["meta"] = meta
        self.results["commands"] = COMMANDS
        plots = make_plots(self.results["sweep"], out)
        self.results["plots"] = plots
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(self.results, f, indent=1, default=str)
        text = render_report(self.results)
        with open(os.path.join(out, "report.md"), "w") as f:
            f.write(text)
        latest = os.path.join(HERE, "results", "latest")
        if not self.args.out:
            os.makedirs(latest, exist_ok=True)
            for name in os.listdir(latest):
                os.remove(os.path.join(latest, name))
            for name in ["report.md", "results.json"] + plots:
                shutil.copy(os.path.join(out, name), latest)
        log(f"report: {os.path.relpath(out, ROOT)}/report.md"
            + ("" if self.args.out else " (and loadtest/results/latest/)") + "; "
            f"wall {self.results['wall_s']:.0f}s")
        print()
        print(summary_table(self.results))
        print()
        print(verdict_table(self.results))
        for path, sw in self.results["sweep"].items():
            print(f"sweep {path}: {sw['threshold_text']}")


def tail(path, n):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()[-n:]
    except OSError:
        return []


def stub_stats(port):
    try:
        status, body = http_get(port, "/_stats")
        return json.loads(body) if status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None


def route_of(path):
    for prefix in ("/cache/", "/upstream/"):
        if path.startswith(prefix):
            return prefix
    return path


# --- statistics ---------------------------------------------------------------

def med_spread(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return dict(median=statistics.median(vals), min=min(vals), max=max(vals), n=len(vals))


def summarize(runs):
    out = {}
    for target in MODES + ("nginx",):
        rs = [r for r in runs if r["target"] == target]
        if not rs:
            continue
        out[target] = dict(
            rps=med_spread([r["rps"] for r in rs]),
            p50=med_spread([r["latency_us"]["p50"] for r in rs]),
            p90=med_spread([r["latency_us"]["p90"] for r in rs]),
            p99=med_spread([r["latency_us"]["p99"] for r in rs]),
            max=med_spread([r["latency_us"]["max"] for r in rs]),
            cpu_us_per_req=med_spread([r.get("cpu_us_per_req") for r in rs]),
            allocs_per_req=med_spread([r.get("allocs_per_req") for r in rs]),
            worker_allocs_per_req=med_spread([r.get("worker_allocs_per_req") for r in rs]),
            bytes_per_req=med_spread([r.get("bytes_per_req") for r in rs]),
            cache_hit_ratio=med_spread([r.get("cache_hit_ratio") for r in rs]),
            errors=sum(sum(r["errors"].values()) for r in rs),
            non2xx=sum(r.get("non2xx", 0) for r in rs),
        )
    return out


def ratio(a, b):
    if not a or not b or not b["median"]:
        return None
    return a["median"] / b["median"]


def analyse_sweep(points, saturated, repeats):
    rows = []
    parted_rates = []
    for pt in points:
        row = dict(offered=pt["offered"])
        for mode in MODES:
            rs = pt["runs"][mode]
            if rs:
                row[mode] = dict(
                    achieved=statistics.median(r["achieved_rps"] for r in rs),
                    p50=statistics.median(r["latency_us"]["p50"] for r in rs),
                    p90=statistics.median(r["latency_us"]["p90"] for r in rs),
                    p99=statistics.median(r["latency_us"]["p99"] for r in rs),
                    p99_min=min(r["latency_us"]["p99"] for r in rs),
                    p99_max=max(r["latency_us"]["p99"] for r in rs),
                    p99_9=statistics.median(r["latency_us"]["p99_9"] for r in rs),
                    max=max(r["latency_us"]["max"] for r in rs),
                    send_lag_p99=max(r["send_lag_us"]["p99"] for r in rs),
                    send_lag_p50=statistics.median(r["send_lag_us"]["p50"] for r in rs),
                    generator_cpu_share=statistics.median(
                        r.get("generator_cpu_share", 0) for r in rs),
                    errors=sum(sum(r["errors"].values()) for r in rs),
                    allocs_per_req=statistics.median(
                        [r["allocs_per_req"] for r in rs if r.get("allocs_per_req") is not None]
                        or [0]),
                    server_cpu_share=statistics.median(r["server_cpu_share"] for r in rs),
                    runs=rs, discarded_runs=pt["discarded"][mode])
        v, t = row.get("valuetask"), row.get("task")
        if v and t:
            row["p99_ratio"] = t["p99"] / v["p99"] if v["p99"] else None
            parted = (t["p99"] > PART_RATIO * v["p99"] and t["p99"] - v["p99"] > PART_MIN_US)
            if repeats >= 2:
                parted = parted and t["p99_min"] > v["p99_max"]
            row["parted"] = parted
            if parted:
                parted_rates.append(pt["offered"])
        rows.append(row)
    # The threshold: the lowest rate where they part and stay parted at every
    # higher rate where both modes were measured (a single noisy point that
    # is contradicted by the next one does not count).
    both = [r for r in rows if "parted" in r]
    threshold = None
    for i, r in enumerate(both):
        if r["parted"] and all(x["parted"] for x in both[i:]):
            threshold = r["offered"]
            break
    first = parted_rates[0] if parted_rates else None
    sat = {m: saturated.get(m) for m in MODES}
    max_ok = {}
    for m in MODES:
        ok = [r["offered"] for r in rows if m in r and (not sat[m] or r["offered"] < sat[m]["rate"])]
        max_ok[m] = max(ok) if ok else None
    # Where the server's one CPU is (nearly) all used: from there on, more
    # load is absorbed by batching (pipelined requests answered per read),
    # which shows as latency, not as lost throughput.
    cpu_full = {}
    for m in MODES:
        full = [r["offered"] for r in rows if m in r and r[m]["server_cpu_share"] >= CPU_FULL]
        cpu_full[m] = full[0] if full else None
    text = threshold_text(threshold, first, sat, max_ok, rows, cpu_full)
    return dict(rows=rows, threshold_rate=threshold, first_parted_rate=first,
                saturation=sat, max_unsaturated_rate=max_ok, cpu_full_rate=cpu_full,
                threshold_text=text)


def threshold_text(threshold, first, sat, max_ok, rows, cpu_full):
    parts = []
    if threshold is not None:
        r = next(x for x in rows if x["offered"] == threshold)
        parts.append(f"the modes' p99 part from {threshold:,} req/s offered "
                     f"(task p99 {r['task']['p99']:.0f} us vs valuetask {r['valuetask']['p99']:.0f} us, "
                     f"{r['p99_ratio']:.2f}x) and stay parted above it")
    elif first is not None:
        parts.append(f"task's p99 exceeded valuetask's by > {PART_RATIO}x and > {PART_MIN_US:.0f} us "
                     f"only at isolated rates (first at {first:,} req/s), not sustained: "
                     "within the noise of this run")
    else:
        parts.append(f"no parting: task's p99 stayed within {PART_RATIO}x / {PART_MIN_US:.0f} us "
                     "of valuetask's at every rate measured")
    for m in MODES:
        s = sat[m]
        if s and s.get("kind") == "generator":
            row = next((x for x in rows if x["offered"] == s["rate"] and m in x), None)
            cpu = f", hotpath's CPU there {row[m]['server_cpu_share']:.0%}" if row else ""
            parts.append(f"{m}: not saturated up to {max_ok[m]:,} req/s; the load generator ran "
                         f"out at {s['rate']:,} ({s['why']}{cpu})" if max_ok[m]
                         else f"{m}: the load generator ran out at the lowest rate ({s['why']})")
        elif s:
            parts.append(f"{m} saturates at {s['rate']:,} req/s offered ({s['why']}); "
                         f"highest unsaturated rate {max_ok[m]:,}" if max_ok[m]
                         else f"{m} saturated at the lowest rate ({s['why']})")
        else:
            parts.append(f"{m} did not saturate up to {max_ok[m]:,} req/s" if max_ok[m]
                         else f"{m}: no data")
    for m in MODES:
        if cpu_full.get(m):
            parts.append(f"{m} uses >= {CPU_FULL:.0%} of the server CPU from {cpu_full[m]:,} req/s")
    return "; ".join(parts) + "."


# --- plots --------------------------------------------------------------------

def make_plots(sweep, out):
    files = []
    if not shutil.which("gnuplot"):
        return files
    for path, sw in sweep.items():
        tag = path.strip("/").replace("/", "-") or "root"
        dat = os.path.join(out, f"sweep-{tag}.dat")
        with open(dat, "w") as f:
            f.write("# offered vt_achieved vt_p99_us task_achieved task_p99_us\n")
            for r in sw["rows"]:
                v, t = r.get("valuetask"), r.get("task")
                f.write(f"{r['offered']} "
                        f"{v['achieved'] if v else 'NaN'} {v['p99'] if v else 'NaN'} "
                        f"{t['achieved'] if t else 'NaN'} {t['p99'] if t else 'NaN'}\n")
        files.append(os.path.basename(dat))
        prefix = os.path.join(out, f"sweep-{tag}")
        cmd = ["gnuplot", "-e", f"data='{dat}'; out='{prefix}'; route='{path}'",
               os.path.join(HERE, "plot.gp")]
        try:
            run(cmd, 60)
        except (RuntimeError, TimeoutError) as e:
            print(f"bench: gnuplot failed: {e}", file=sys.stderr)
            continue
        for kind in ("throughput", "p99"):
            for ext in ("png", "svg"):
                name = f"sweep-{tag}-{kind}.{ext}"
                if os.path.exists(os.path.join(out, name)):
                    files.append(name)
    return files


# --- machine --------------------------------------------------------------------

def machine_info():
    info = dict(cores=os.cpu_count(), kernel=platform.release(), python=platform.python_version())
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            info["cpu_model"] = m.group(1) if m else "unknown"
    except OSError:
        info["cpu_model"] = "unknown"
    try:
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemTotal:\s*(\d+) kB", f.read(), re.M)
            info["memory_gib"] = round(int(m.group(1)) / 2**20, 1)
    except OSError:
        pass
    def cmd_out(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT)
            return (p.stdout + p.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return None
    info["git_commit"] = cmd_out(["git", "rev-parse", "HEAD"])
    st = cmd_out(["git", "status", "--porcelain", "--untracked-files=no"])
    info["git_dirty"] = bool(st)
    info["nginx"] = (cmd_out(["nginx", "-v"]) or "").replace("nginx version: ", "")
    wrk_v = cmd_out(["wrk", "-v"]) or ""
    info["wrk"] = wrk_v.splitlines()[0] if wrk_v else None
    info["h2load"] = cmd_out(["h2load", "--version"])
    v = cmd_out(["valgrind", "--version"])
    info["valgrind"] = v
    info["gnuplot"] = cmd_out(["gnuplot", "--version"])
    info["load_average"] = open("/proc/loadavg").read().split()[:3]
    return info


# --- report ---------------------------------------------------------------------

def fmt_n(x, digits=0):
    if x is None:
        return "-"
    if abs(x) >= 10000 and digits == 0:
        return f"{x / 1000:.1f}k"
    return f"{x:,.{digits}f}"


def fmt_ms(s, digits=0):
    """median (min-max)"""
    if not s:
        return "-"
    if s["n"] > 1:
        return f"{fmt_n(s['median'], digits)} ({fmt_n(s['min'], digits)}–{fmt_n(s['max'], digits)})"
    return fmt_n(s["median"], digits)


def fmt_ratio(r):
    return "-" if r is None else f"{r:.3f}"


def worker_allocs(stats):
    """Every allocation the workers made, through every door."""
    return sum(stats["allocations"][door]["count"] for door in ("own", "libuv", "cjson"))


def summary_table(res):
    lines = ["| scenario | target | req/s median (min–max) | p50 µs | p90 µs | p99 µs | max µs "
             "| CPU µs/req | allocs/req | worker allocs/req | bytes/req |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, sc in res["scenarios"].items():
        for target, s in sc["summary"].items():
            lines.append(
                f"| {name} | {target} | {fmt_ms(s['rps'])} | {fmt_ms(s['p50'])} | {fmt_ms(s['p90'])} "
                f"| {fmt_ms(s['p99'])} | {fmt_ms(s['max'])} | {fmt_ms(s['cpu_us_per_req'], 2)} "
                f"| {fmt_ms(s['allocs_per_req'], 2)} | {fmt_ms(s.get('worker_allocs_per_req'), 2)} "
                f"| {fmt_ms(s['bytes_per_req'], 0)} |")
    return "\n".join(lines)


def ratio_table(res):
    lines = ["| scenario | req/s task/vt | p50 task/vt | p99 task/vt | CPU/req task/vt "
             "| allocs/req vt → task | req/s vt/nginx | req/s task/nginx | CPU/req vt/nginx "
             "| hit ratio | errors (non-2xx) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, sc in res["scenarios"].items():
        s = sc["summary"]
        v, t, n = s.get("valuetask"), s.get("task"), s.get("nginx")
        if not v or not t:
            continue
        allocs = (f"{v['allocs_per_req']['median']:.2f} → {t['allocs_per_req']['median']:.2f}"
                  if v["allocs_per_req"] and t["allocs_per_req"] else "-")
        hit = v.get("cache_hit_ratio")
        hit_s = f"{hit['median']:.0%}" if hit and name.startswith(("cache", "mixed")) else "-"
        errs = v["errors"] + t["errors"] + (n["errors"] if n else 0)
        non2 = v["non2xx"] + t["non2xx"]
        lines.append(
            f"| {name} | {fmt_ratio(ratio(t['rps'], v['rps']))} | {fmt_ratio(ratio(t['p50'], v['p50']))} "
            f"| {fmt_ratio(ratio(t['p99'], v['p99']))} "
            f"| {fmt_ratio(ratio(t['cpu_us_per_req'], v['cpu_us_per_req']))} | {allocs} "
            f"| {fmt_ratio(ratio(v['rps'], n['rps'])) if n else '-'} "
            f"| {fmt_ratio(ratio(t['rps'], n['rps'])) if n else '-'} "
            f"| {fmt_ratio(ratio(v['cpu_us_per_req'], n['cpu_us_per_req'])) if n else '-'} "
            f"| {hit_s} | {errs} ({non2}) |")
    return "\n".join(lines)


def beyond_spread(v, t):
    """task vs valuetask, metric by metric: the differences whose round
    ranges do not overlap (with one round each, none can be told apart)."""
    out = []
    for key, label in (("rps", "req/s"), ("p50", "p50"), ("p99", "p99"),
                       ("cpu_us_per_req", "CPU/req")):
        a, b = v.get(key), t.get(key)
        if not a or not b or a["n"] < 2 or b["n"] < 2 or not a["median"]:
            continue
        if b["min"] > a["max"] or b["max"] < a["min"]:
            out.append(f"{label} {b['median'] / a['median'] - 1:+.0%}")
    return ", ".join(out) if out else "none"


def verdict_table(res):
    lines = ["| scenario | task vs valuetask: differences beyond the round-to-round spread |",
             "|---|---|"]
    for name, sc in res["scenarios"].items():
        v, t = sc["summary"].get("valuetask"), sc["summary"].get("task")
        if v and t:
            lines.append(f"| {name} | {beyond_spread(v, t)} |")
    return "\n".join(lines)


def spread_note(res):
    """The run-to-run spread of req/s within one target: (max-min)/median."""
    worst, notes = 0.0, []
    for name, sc in res["scenarios"].items():
        for target, s in sc["summary"].items():
            r = s["rps"]
            if r and r["median"] and r["n"] > 1:
                sp = (r["max"] - r["min"]) / r["median"]
                worst = max(worst, sp)
                notes.append(sp)
    if not notes:
        return "only one round per target: no spread measured."
    return (f"req/s spread between rounds of the same target, (max−min)/median: median "
            f"{statistics.median(notes):.1%}, worst {worst:.1%}.")


def sweep_table(sw):
    lines = ["| offered req/s | vt achieved | vt p50 µs | vt p99 µs | vt p99.9 µs | task achieved "
             "| task p50 µs | task p99 µs | task p99.9 µs | p99 task/vt | parted | "
             "gen. lag p99 µs (vt/task) | gen. CPU (vt/task) | server CPU (vt/task) "
             "| allocs/req (vt/task) "
             "| runs kept+discarded (vt/task) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sw["rows"]:
        v, t = r.get("valuetask"), r.get("task")

        def c(x, k, d=0):
            return fmt_n(x[k], d) if x else "-"

        def kept(x):
            return f"{len(x['runs'])}+{len(x['discarded_runs'])}" if x else "-"

        def share(x, k="server_cpu_share"):
            return f"{x[k]:.0%}" if x else "-"

        def p99(x):
            if not x:
                return "-"
            if x["p99_min"] != x["p99_max"]:
                return f"{x['p99']:.0f} ({x['p99_min']:.0f}–{x['p99_max']:.0f})"
            return f"{x['p99']:.0f}"
        lines.append(
            f"| {r['offered']:,} | {c(v, 'achieved')} | {c(v, 'p50')} | {p99(v)} | {c(v, 'p99_9')} "
            f"| {c(t, 'achieved')} | {c(t, 'p50')} | {p99(t)} | {c(t, 'p99_9')} "
            f"| {fmt_ratio(r.get('p99_ratio'))} | {'yes' if r.get('parted') else ('no' if 'parted' in r else '-')} "
            f"| {c(v, 'send_lag_p99')}/{c(t, 'send_lag_p99')} "
            f"| {share(v, 'generator_cpu_share')}/{share(t, 'generator_cpu_share')} "
            f"| {share(v)}/{share(t)} "
            f"| {c(v, 'allocs_per_req', 2)}/{c(t, 'allocs_per_req', 2)} "
            f"| {kept(v)}/{kept(t)} |")
    return "\n".join(lines)


def advice_section(res):
    """The /advice taken at the end of each scenario: per layer, what the
    decision tree said about the load that scenario put on it."""
    L = ["## Decision advice at the end of each scenario", "",
         "`GET /advice` right after hotpath's last valuetask run of each scenario, with a 1 s "
         "window, so the figures are that scenario's. Thresholds: hot >= "
         "{hot} calls/s, usually synchronous >= {pct}%.".format(**_thresholds(res)), "",
         "| scenario | layer | calls/s | sync % | avoided | allocated | shared waiters | advice |",
         "|---|---|---|---|---|---|---|---|"]
    reasons = []
    for name, sc in res["scenarios"].items():
        adv = sc.get("advice")
        if not adv:
            continue
        for l in adv["layers"]:
            if l.get("figures") != "last window":
                continue
            L.append(f"| {name} | {l['layer']} | {fmt_n(l['calls_per_s'])} | "
                     f"{100 * l['sync_share']:.1f} | {fmt_n(l['allocations_avoided'])} | "
                     f"{fmt_n(l['allocations'])} | {fmt_n(l['shared_waiters'])} | "
                     f"**{l['recommendation']}** |")
            if l["layer"] in ("cache.get", "upstream.request"):
                reasons.append(f"- {name}, `{l['layer']}`: {l['recommendation']} — {l['reason']}")
    L.append("")
    L.append("Why, for the cache and upstream layers:")
    L.append("")
    L += reasons or ["- (no cache or upstream scenario ran)"]
    return "\n".join(L)


def _thresholds(res):
    for sc in res["scenarios"].values():
        if sc.get("advice"):
            t = sc["advice"]["thresholds"]
            return dict(hot=fmt_n(t["hot_rate"]), pct=t["sync_share_pct"])
    return dict(hot="?", pct="?")


def render_report(res):
    m = res["meta"]
    p = m["params"]
    L = []
    L.append(f"# hotpath load test — {m['profile']} run, {m['date']}")
    L.append("")
    L.append("Task vs ValueTask, measured: the same hotpath process serves every scenario in "
             "`valuetask` mode (synchronous paths allocate nothing) and in `task` mode (every "
             "valuetask is a heap task), switched live by SIGHUP, with nginx on the same CPU as "
             "the yardstick. How to read it: `loadtest/README.md`.")
    L.append("")
    if m["profile"] == "quick":
        L.append(f"**Quick run**: {p['rounds']} rounds of {p['duration_s']} s per target, a coarse "
                 "sweep of one repeat per rate. Good for seeing that everything works and for "
                 "large effects; use `make bench` for numbers to quote.")
        L.append("")
    L.append("## Machine")
    L.append("")
    L.append(f"- CPU: {m.get('cpu_model')}, {m['cores']} cores; memory {m.get('memory_gib')} GiB; "
             f"kernel {m['kernel']}; load average at the end {' '.join(m['load_average'])}")
    L.append(f"- pinning: hotpath and nginx on CPU {m['server_cpu']}, wrk / hotpath-load / h2load / "
             f"the upstream stub on CPU {m['load_cpu']}")
    L.append(f"- hotpath commit `{m.get('git_commit')}`"
             + (" (with uncommitted changes to tracked files)" if m.get("git_dirty") else ""))
    L.append(f"- nginx {m.get('nginx')}; {m.get('wrk')}; {m.get('h2load')}; {m.get('valgrind')}; "
             f"{m.get('gnuplot')}")
    L.append(f"- upstream stub delay: {m['upstream_delay_ms']} ms; wrk: 1 thread, "
             f"{p['connections']} connections, {p['duration_s']} s per run, {p['rounds']} rounds")
    L.append(f"- wall clock of the whole run: {res['wall_s']:.0f} s")
    L.append("")
    L.append("The machine is shared and noisy; " + spread_note(res) + " Treat differences "
             "smaller than that spread as no difference.")
    L.append("")
    L.append("## Scenarios (wrk, closed loop)")
    L.append("")
    L.append("Medians over rounds, (min–max) over rounds. Latency percentiles are wrk's "
             "(from each request's write to its answer). CPU µs/req: the server's utime+stime "
             "(/proc/PID/stat, all threads; nginx: master + worker) over the run, divided by the "
             "requests wrk completed; clock-tick resolution is "
             f"{1000 / CLK_TCK:.0f} ms per run. allocs/req and bytes/req: /stats deltas of the "
             "scenario's routes in the mode being measured (hotpath only).")
    L.append("")
    for name, sc in res["scenarios"].items():
        L.append(f"- **{name}**: {sc['what']} (`loadtest/{sc['script']}`"
                 + (f" `{' '.join(sc['args'])}`" if sc["args"] else "") + ")")
    L.append("")
    L.append(summary_table(res))
    L.append("")
    L.append("Ratios of the medians (vt = valuetask). Above 1 in req/s task/vt means task mode "
             "served more; above 1 in p99 or CPU means task mode was slower / costlier.")
    L.append("")
    L.append(ratio_table(res))
    L.append("")
    n = p["rounds"]
    chance = 2 * math.factorial(n) ** 2 / math.factorial(2 * n)
    L.append("Where the modes differ by more than the noise: a metric is listed when every "
             "task round lies outside the range of the valuetask rounds (the change is "
             "median to median). Everything else is within the spread of this run. With "
             f"{n} rounds per target, noise alone puts two sets of rounds fully apart with "
             f"probability {chance:.1%} per metric"
             + (" — so in this quick run, read this table as a hint, not a finding; the "
                "callgrind figures below are the deterministic ones." if chance > 0.05 else "."))
    L.append("")
    L.append(verdict_table(res))
    L.append("")
    if any(sc.get("advice") for sc in res["scenarios"].values()):
        L.append(advice_section(res))
        L.append("")
    L.append("## Fixed-rate sweep (hotpath-load, open loop)")
    L.append("")
    L.append(f"Each point: {p['sweep_warmup_s']} s warm-up, {p['sweep_duration_s']} s measured, "
             f"{p['sweep_repeats']} repeat(s) per mode, modes alternating in order; "
             f"{p['connections']} connections, requests round-robin, pipelined when a connection "
             "is still busy. Latency is measured from each request's *intended* send time, so a "
             "server that falls behind shows it (no coordinated omission). \"gen. lag\" is how "
             "late the generator itself sent (its wake-up latency, the same for both modes) and "
             "\"gen. CPU\" the share of its CPU it used; \"server CPU\" is hotpath's utime+stime "
             "over the run. When the generator is late on most requests (lag p50 > "
             f"{GENERATOR_LAG50_US:.0f} µs) or by over {GENERATOR_LAG_US / 1000:.0f} ms at p99 "
             "(after two retries), it is the limit and the sweep stops there: on a 2-core "
             "machine a one-core generator and a one-core server run out at similar rates.")
    L.append("")
    L.append(f"Definitions: **parted** = task p99 > {PART_RATIO}× valuetask p99 and more than "
             f"{PART_MIN_US:.0f} µs above it" + (" and every task repeat above every valuetask repeat"
                                                if p["sweep_repeats"] >= 2 else "")
             + "; the **threshold** is the lowest offered rate where the modes part and stay parted "
             f"at every higher rate measured. **Saturated** = achieved < {SAT_ACHIEVED:.0%} of "
             f"offered, or p99 > {SAT_P99_FACTOR:.0f}× the mode's lowest-rate p99 and > "
             f"{SAT_P99_FLOOR_US / 1000:.0f} ms.")
    L.append("")
    for path, sw in res["sweep"].items():
        tag = path.strip("/").replace("/", "-")
        L.append(f"### {path}")
        L.append("")
        L.append(f"**Result: {sw['threshold_text']}**")
        if sw.get("generator_limited"):
            L.append("")
            L.append("Note: the load generator ran out at the top rate (it sent late on most "
                     "requests, or by over 1 ms at p99): that point says more about the "
                     "generator than about hotpath, and the sweep stopped there.")
        L.append("")
        L.append(sweep_table(sw))
        L.append("")
        for kind in ("throughput", "p99"):
            name = f"sweep-{tag}-{kind}.png"
            if name in res.get("plots", []):
                L.append(f"![{path} {kind}]({name}) ([SVG](sweep-{tag}-{kind}.svg))")
                L.append("")
    L.append("## Instructions per request (callgrind)")
    L.append("")
    if res["callgrind"]:
        any_cg = next(iter(res["callgrind"].values()))
        any_m = next(iter(any_cg.values()))
        L.append(f"A separate hotpath (workers 1) under `{res.get('callgrind_command')}`; per path "
                 f"and mode, {p['callgrind_warmup']} warm-up requests, then the counters are dumped "
                 f"and zeroed around {any_m['n1']:,} and {any_m['n2']:,} requests sent by "
                 "`h2load --h1 -c 1 -n N`; instructions/request = (I(N2) − I(N1)) / (N2 − N1), "
                 "which cancels everything that does not scale with the count (the dump itself, "
                 "the timer tick, connection set-up). Deterministic: the difference between the "
                 "modes shows even where wall-clock noise is larger. Counts cover all threads.")
        L.append("")
        L.append("| path | valuetask Ir/req | task Ir/req | task − vt | task/vt | allocs/req vt → task |")
        L.append("|---|---|---|---|---|---|")
        for path, d in res["callgrind"].items():
            v, t = d.get("valuetask"), d.get("task")
            if not v or not t:
                continue
            L.append(f"| {path} | {v['ir_per_request']:,.0f} | {t['ir_per_request']:,.0f} "
                     f"| {t['ir_per_request'] - v['ir_per_request']:+,.0f} "
                     f"| {t['ir_per_request'] / v['ir_per_request']:.3f} "
                     f"| {fmt_n(v['allocs_per_req'], 2)} → {fmt_n(t['allocs_per_req'], 2)} |")
    else:
        L.append("Not measured in this run.")
    L.append("")
    L.append("## Idle keep-alive connections (memory)")
    L.append("")
    if res["idle_memory"]:
        L.append("Each connection sent one GET /plaintext, read the answer and stayed open; RSS "
                 "of the server (nginx: master + worker) from /proc before and 0.5 s after.")
        L.append("")
        L.append("| server | connections | RSS before | RSS after | growth per connection |")
        L.append("|---|---|---|---|---|")
        for name, d in res["idle_memory"].items():
            per = d["per_connection_bytes"]
            L.append(f"| {name} | {d['connections']:,}" + (f" ({d['failed']} failed)" if d["failed"] else "")
                     + f" | {d['rss_before'] / 2**20:.1f} MiB | {d['rss_after'] / 2**20:.1f} MiB "
                     f"| {'-' if per is None else f'{per:,.0f} B'} |")
    else:
        L.append("Not measured in this run.")
    L.append("")
    if res["notes"]:
        L.append("## Notes from this run")
        L.append("")
        for n in res["notes"]:
            L.append(f"- {n}")
        L.append("")
    L.append("## Commands")
    L.append("")
    L.append("Run from the repository root (ports were ephemeral; `HOTPATH_NONCE` was fresh per "
             "run so cold cache keys stay cold):")
    L.append("")
    L.append("```")
    L.extend(res["commands"])
    L.append("```")
    L.append("")
    L.append("Raw numbers, every run: `results.json`.")
    L.append("")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build", help="build directory with the binaries")
    ap.add_argument("--quick", action="store_true", help="the < 3 minute profile")
    ap.add_argument("--parts", default="scenarios,sweep,idle,callgrind",
                    help="comma list of: scenarios, sweep, idle, callgrind")
    ap.add_argument("--scenarios", default="", help="comma list of scenario names (default all)")
    ap.add_argument("--upstream-delay-ms", type=int, default=0,
                    help="the stub's answer delay for /cache misses and /upstream (default 0)")
    ap.add_argument("--no-nginx", action="store_true", help="skip the nginx yardstick")
    ap.add_argument("--out", default="",
                    help="report directory (default loadtest/results/DATE, then copied to "
                         "loadtest/results/latest; with --out, latest is left alone)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, configs)")
    args = ap.parse_args()
    for tool in ("wrk",):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found (make bench-deps installs it)")
    for b in ("hotpath", "hotpath-upstream", "hotpath-load"):
        if not os.access(os.path.join(args.build, b), os.X_OK):
            sys.exit(f"bench: {args.build}/{b} missing (make bench builds it)")

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    # SIGINT too: a background job started by a non-interactive shell
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        Bench(args).main()
    except KeyboardInterrupt:
        PROCS.stop_all()
        sys.exit("bench: interrupted; every process it started is stopped")
    finally:
        PROCS.stop_all()


if __name__ == "__main__":
    main()
