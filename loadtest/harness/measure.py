"""Measurement: the load generators (wrk, closed loop; hotpath-load, open
loop), the reads of a process's CPU and memory, callgrind's instruction
counts, and the idle-connection memory probe.

CPU. cpu_sample() reads the per-thread scheduler clocks of a process tree
(/proc/PID/task/TID/schedstat, nanoseconds) - precise enough for a 1 s
window at a 10% cap (100 ms of CPU), where /proc/PID/stat's clock ticks
(10 ms) would be a 10% error - and cpu_used() is the CPU between two
samples, thread by thread: a thread born in between counts from zero, one
that exited in between loses only what it used after the first sample.
Summing the live threads instead would be wrong for .NET, whose thread
pool retires idle threads (20 s idle): the whole past of a thread that
exits during a run would come off the run's figure. Without schedstat the
per-thread clock ticks stand in.
"""

import http.client
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import time

from .procs import HOST, ROOT, process_tree, record, run

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def http_get(port, path, method="GET", timeout=5):
    """(status, body) of one request on a fresh connection."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, headers={"Content-Length": "0"} if method == "POST" else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def parse_result(text):
    """The JSON of the 'HOTPATH_RESULT {...}' line that wrk's common.lua and
    hotpath-load print."""
    m = re.search(r"^HOTPATH_RESULT (\{.*\})$", text, re.M)
    if not m:
        raise RuntimeError("no HOTPATH_RESULT line in output:\n" + text[-600:])
    return json.loads(m.group(1))


# --- CPU and memory -------------------------------------------------------------------

def threads(pid):
    """(pid, tid) of every live thread of pid's process tree."""
    for p in process_tree(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            yield p, tid


def cpu_sample(pid):
    """{(pid, tid): CPU nanoseconds so far} for every live thread of pid's
    process tree."""
    out = {}
    for p, tid in threads(pid):
        try:
            with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                out[(p, tid)] = int(f.read().split()[0])
        except FileNotFoundError:  # no schedstat in this kernel: the ticks
            try:
                with open(f"/proc/{p}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[(p, tid)] = (int(fields[11]) + int(fields[12])) * 10**9 // CLK_TCK
            except (OSError, ValueError, IndexError):
                pass
        except (OSError, ValueError, IndexError):
            pass
    return out


def cpu_used(a, b):
    """CPU seconds between two cpu_samples, thread by thread (a thread new
    in b counts from zero, as does one whose clock went back: its id was
    reused; one gone from b is left out)."""
    total = 0
    for k, ns in b.items():
        d = ns - a.get(k, 0)
        total += d if d >= 0 else ns
    return total / 1e9


def thread_sample(pid):
    """{(pid, tid): (name, CPU ns, times scheduled in)} for every live thread
    of pid's process tree, from /proc/PID/task/TID/comm and schedstat (no
    schedstat in this kernel: an empty dict). Names are what a runtime calls
    its threads (.NET: ".NET TP Worker", ".NET Tiered Com", ...)."""
    out = {}
    for p, tid in threads(pid):
        try:
            with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                v = f.read().split()
            with open(f"/proc/{p}/task/{tid}/comm") as f:
                name = f.read().strip()
            out[(p, tid)] = (name, int(v[0]), int(v[2]))
        except (OSError, ValueError, IndexError):
            pass
    return out


def by_thread_name(a, b, classes=None):
    """{name: (CPU seconds, times scheduled in)} between two thread_samples,
    summed over the threads of each name, counted as cpu_used() counts (a
    thread new in b, or whose clock went back, from zero; one gone from b
    left out). classes: names to group under (a thread whose name contains
    one counts under it, any other under "other"); None: each name its own."""
    out = {}
    for k, (name, ns, runs) in b.items():
        _, ns0, runs0 = a.get(k, (name, 0, 0))
        if ns < ns0:
            ns0 = runs0 = 0
        if classes is not None:
            name = next((c for c in classes if c in name), "other")
        s, r = out.get(name, (0.0, 0))
        out[name] = (s + (ns - ns0) / 1e9, r + runs - runs0)
    return out


def machine_busy_s():
    """CPU seconds every CPU of the machine has spent busy so far (all of
    /proc/stat's "cpu" line but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK  # user..steal, less idle, iowait


def rss_bytes(pid):
    """Resident memory of pid's process tree."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


# --- load generators ------------------------------------------------------------------

def wrk(pin, port, script, args, connections, duration, env=None):
    """wrk (one thread, closed loop) with a loadtest/ script; the result
    line's JSON: requests, rps, latency_us {p50, p90, p99, p99_9, max},
    errors."""
    cmd = pin.load + ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
                      "-s", os.path.join("loadtest", script), f"http://{HOST}:{port}"]
    if args:
        cmd += ["--"] + list(args)
    r = parse_result(run(cmd, duration + 30, env=env,
                         note="HOTPATH_NONCE=<fresh>" if env and "HOTPATH_NONCE" in env else ""))
    # wrk 4.1 corrects its histogram for coordinated omission assuming one
    # request in flight per connection; with pipelining that goes wrong
    # and its high percentiles come out as 0. Not a latency: no number.
    lat = r["latency_us"]
    for k in ("p90", "p99", "p99_9"):
        if lat[k] == 0 and lat["p50"] > 0:
            lat[k] = None
            r["wrk_percentile_bug"] = True
    return r


def open_loop(pin, build, port, path, rate, connections, duration, warmup, drain, spin,
              on_phase=None):
    """One build/hotpath-load run: offered rate for warmup + duration
    seconds, latency from each request's intended send time. on_phase(name)
    is called as the generator announces "measure" (its window opens) and
    "drain" (it closes), so the caller can sample the server exactly over
    the window. Returns the result JSON."""
    cmd = pin.load + [os.path.join(build, "hotpath-load"), "--port", str(port), "--path", path,
                      "--rate", str(rate), "--connections", str(connections),
                      "--duration", str(duration), "--warmup", str(warmup),
                      "--drain", str(drain)] + (["--spin"] if spin else [])
    record(cmd)
    timeout = warmup + duration + drain + 30
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    deadline = time.monotonic() + timeout
    out, buf = [], b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"hotpath-load ran past {timeout:.0f}s: {' '.join(cmd)}")
            ready, _, _ = select.select([p.stdout], [], [], left)
            if not ready:
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                out.append(text)
                if text.startswith("HOTPATH_PHASE ") and on_phase:
                    on_phase(text.split()[1])
        p.wait(max(1, deadline - time.monotonic()))
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        p.stdout.close()
    text = "\n".join(out + [buf.decode(errors="replace")])
    if p.returncode != 0:
        raise RuntimeError(f"hotpath-load exited {p.returncode}: {text[-400:]}")
    return parse_result(text)


# --- callgrind --------------------------------------------------------------------------

# The paths callgrind measures, each with the route its /stats counters sit
# under: the two synchronous answers and a cache hit (the warm-up's first
# request for the key is the miss that fills it; the rest are hits).
CALLGRIND_PATHS = (("/plaintext", "/plaintext"), ("/json", "/json"),
                   ("/cache/callgrind-hot", "/cache/"))


def callgrind(start_server, pin, requests, connections, warmup, paths, modes, cgdir, log):
    """Instructions per request, per path and mode, on a server started by
    start_server(wrapper) under callgrind, measured the way the project
    quotes it: keep-alive, `connections` connections with one request in
    flight each (h2load --h1), `warmup` requests, then the counters zeroed
    (callgrind_control -z), `requests` requests, a dump; Ir/request = the
    dump's total / requests. What does not scale with the count (opening
    the 8 connections, a timer tick) is inside, a few instructions per
    request at 20k. paths: (path, route) pairs, route naming the /stats
    counters the allocations per request are read from."""
    h2load = shutil.which("h2load")
    os.makedirs(cgdir, exist_ok=True)
    wrapper = ["valgrind", "--tool=callgrind", "--dump-instr=no",
               f"--callgrind-out-file={cgdir}/callgrind.out.%p"]
    srv = start_server(wrapper)
    out = {}
    try:
        def send(path, n):
            if h2load:
                o = run(pin.load + [h2load, "--h1", "-n", str(n), "-c", str(connections),
                                    f"http://{HOST}:{srv.port}{path}"], 600)
                m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", o)
                if not m or int(m.group(2)) != n:
                    raise RuntimeError(f"h2load did not complete {n} requests: {o[-300:]}")
            else:  # the same requests round-robin over as many keep-alive connections
                cs = [http.client.HTTPConnection(HOST, srv.port, timeout=30)
                      for _ in range(connections)]
                for i in range(n):
                    cs[i % connections].request("GET", path)
                    r = cs[i % connections].getresponse()
                    r.read()
                    if r.status != 200:
                        raise RuntimeError(f"GET {path} answered {r.status}")
                for c in cs:
                    c.close()

        dumps = [0]

        def control(flag):
            run(["callgrind_control", flag, str(srv.pid)], 120)

        def dump():
            """Dump the counters; the Ir since they were last zeroed."""
            control("-d")
            dumps[0] += 1
            f = os.path.join(cgdir, f"callgrind.out.{srv.pid}.{dumps[0]}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if os.path.exists(f):
                    with open(f) as fh:
                        m = re.search(r"^(?:summary|totals): (\d+)", fh.read(), re.M)
                    if m:
                        return int(m.group(1)), f
                time.sleep(0.1)
            raise RuntimeError(f"callgrind dump {f} not written")

        for mode in modes:
            srv.use(mode, timeout=60)
            for path, route in paths:
                send(path, warmup)
                s0 = srv.stats()
                control("-z")
                send(path, requests)
                ir, f = dump()
                c = srv.counters(s0, srv.stats(), mode, (route,))
                per = ir / requests
                allocs = c["allocations"] / c["requests"] if c.get("requests") else None
                out.setdefault(path, {})[mode] = dict(
                    requests=requests, connections=connections, ir=ir, ir_per_request=per,
                    allocs_per_req=allocs, dump=f)
                log(f"  {path:<21} {mode:<9} {per:7.0f} instructions/request "
                    f"({allocs} allocs/req)")
    finally:
        srv.stop()
    return out, " ".join(wrapper) + " build/hotpath ..."


# --- idle connections -------------------------------------------------------------------

def idle_memory(port, pid, n, log, name):
    """RSS growth of a server over n idle keep-alive connections, each of
    which sent one GET /plaintext and read its answer."""
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
                while len(body) < (int(m.group(1)) if m else 0):
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
    log(f"idle memory {name}: {open_n} connections, RSS {before / 2**20:.1f} -> "
        f"{after / 2**20:.1f} MiB = {(after - before) / max(open_n, 1):.0f} B/connection"
        + (f" ({failed} failed)" if failed else ""))
    return dict(connections=open_n, failed=failed, rss_before=before, rss_after=after,
                per_connection_bytes=(after - before) / open_n if open_n else None)


# --- system calls per request -------------------------------------------------------------

def strace_counts(text):
    """{syscall: calls} from `strace -c`'s table."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) in (5, 6) and f[0][0].isdigit() and f[-1] != "total":
            out[f[-1]] = int(f[3])
    return out


def syscalls(procs, srv, mode, pin, path, n, connections, log):
    """System calls per request of srv in mode: `strace -c -f` attached to
    every process of its tree (every thread) while h2load sends n requests
    on connections connections, one in flight each. strace makes every
    call slow, so the rate is not the server's; the counts per request
    are (how many reads, writes, polls and yields a request takes)."""
    srv.use(mode)
    s0 = srv.stats() if srv.rt.counters else None
    out = os.path.join(procs.tmp, f"strace-{srv.name}-{mode}.txt")
    cmd = ["strace", "-c", "-f", "-o", out]
    for pid in process_tree(srv.pid):
        cmd += ["-p", str(pid)]
    p = procs.start(f"strace-{srv.name}-{mode}", cmd)
    try:
        deadline = time.monotonic() + 30
        while "attached" not in procs.stderr(p):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"strace did not attach to {srv.name}: {procs.stderr(p, 300)}")
            time.sleep(0.05)
        o = run(pin.load + ["h2load", "--h1", "-n", str(n), "-c", str(connections),
                            f"http://{HOST}:{srv.port}{path}"], 600)
        m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", o)
        if not m or int(m.group(2)) != n:
            raise RuntimeError(f"h2load did not complete {n} requests: {o[-300:]}")
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGINT)  # strace detaches and writes its table
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                pass
        procs.stop(p, timeout=10)
    with open(out) as f:
        counts = strace_counts(f.read())
    served = (srv.counters(s0, srv.stats(), mode, (path,)).get("requests") if s0 else None) or n
    log(f"syscalls {srv.name} {mode}: {served} requests, "
        + ", ".join(f"{k} {v / served:.2f}" for k, v in
                    sorted(counts.items(), key=lambda kv: -kv[1])[:6]) + " per request")
    return dict(requests=served, connections=connections, path=path,
                calls=counts, per_request={k: v / served for k, v in counts.items()})
