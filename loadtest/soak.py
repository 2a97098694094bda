#!/usr/bin/env python3
"""soak.py - a bounded mixed load that must lose nothing and leak nothing.

What `make soak` runs (SOAK_SECONDS, default 600, sets the length; 60 is a
useful smoke run). Python 3 standard library only. Unlike bench.py this
runner asserts: it exits 1, saying why, when

  * any request is lost: wrk reports a socket error (connect, read, write,
    timeout), or any status >= 400 on the good paths;
  * a fault request (the stub told, per request, to reset, send garbage,
    stall, ...) does not get exactly the status hotpath owes it (502/504);
  * a slow client is not treated as the limits say (a slowloris head and a
    stalled body get 408 at their timeout, a silent connection is closed
    unanswered, a slow reader gets every answer, a reader that never reads
    is cut at the idle timeout);
  * hotpath's RSS keeps growing after the warm-up (the rule is printed with
    the verdict: over the samples after warm-up, the last third's maximum
    may exceed the first third's maximum by at most 10% + 2 MiB);
  * hotpath does not exit 0 on SIGTERM at the end, or /stats says an
    upstream connection is still busy once the load has stopped.

The load, all at once, for the whole run, on 127.0.0.1 only:
  1. the stub (build/hotpath-upstream, 2 ms delay + 0..8 ms jitter) and
     hotpath (--workers 2) on a temp copy of config/hotpath.json with short
     limits (header and body timeouts 2 s, idle 5 s, upstream response
     timeout 1 s) and a 2 MiB-per-worker cache, so the cold keys reach the
     eviction steady state inside the warm-up (at the default 64 MiB the
     cache's legitimate filling would read as growth for minutes);
  2. wrk -t1 -c32 with loadtest/mixed.lua: /plaintext, /json, hot and cold
     /cache keys, /upstream/items/x;
  3. a fault client: /upstream/items/f{n}?fault=reset|garbage|stall|headers|
     truncate|drop in turn, five a second, each checked;
  4. a control client toggling the stub's fail modes for a few seconds at a
     time - fault=close (every answer then a close), drop_next (the
     keep-alive race, which hotpath retries), delay spikes - modes that
     hotpath must absorb without a good-path request failing;
  5. slow clients in batches: slowloris heads, silent connections, stalled
     bodies, slow readers, readers that never read;
  6. a sampler: hotpath's and the stub's VmRSS from /proc every 10 s, and
     /stats.

A summary (requests, errors, RSS start/end/max, the per-sample table) is
printed and written to loadtest/results/soak-<date>.txt. Every process
started here runs in its own process group and is killed on the way out,
whatever the way out is; every thread stops at the deadline.
"""

import argparse
import datetime
import http.client
import json
import os
import re
import select
import shutil
import socket
import sys
import threading
import time

from harness import targets
from harness.measure import http_get, parse_result
from harness.procs import HERE, HOST, ROOT, Procs, logger, stop_signals_raise

# The limits the slow clients are judged against (written into the config).
HEADER_TIMEOUT_MS = 2000
BODY_GRACE_MS = 2000
IDLE_TIMEOUT_MS = 5000
UPSTREAM_TIMEOUT_MS = 1000
TICK_MS = 250        # the server checks deadlines on this tick
MARGIN_MS = 2500     # a loaded 2-core machine shared with other work
SAMPLE_S = 10
RSS_GROWTH_PCT = 10
RSS_GROWTH_KIB = 2048

FAULTS = (("reset", 502), ("garbage", 502), ("stall", 504), ("headers", 504),
          ("truncate", 502), ("drop", 502))


log = logger("soak")


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def stats(port):
    status, body = http_get(port, "/stats")
    if status != 200:
        raise RuntimeError(f"/stats answered {status}")
    return json.loads(body)


def at(d, *keys, default=0):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


class Tally:
    """Thread-safe outcome counts: kind -> [ok, failed], and the failures."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.failures = []

    def ok(self, kind):
        with self.lock:
            self.counts.setdefault(kind, [0, 0])[0] += 1

    def fail(self, kind, why):
        with self.lock:
            self.counts.setdefault(kind, [0, 0])[1] += 1
            if len(self.failures) < 50:
                self.failures.append(f"{kind}: {why}")

    def total_failed(self):
        with self.lock:
            return sum(v[1] for v in self.counts.values())


# --- the fault client and the control client -----------------------------------------


def fault_client(port, stop_at, tally, interval=0.2):
    """One keep-alive connection; per-request faults in turn, each checked."""
    conn = None
    i = 0
    while time.monotonic() < stop_at:
        fault, want = FAULTS[i % len(FAULTS)]
        path = f"/upstream/items/f{i}?fault={fault}"
        kind = f"fault {fault} -> {want}"
        try:
            if conn is None:
                conn = http.client.HTTPConnection(HOST, port, timeout=UPSTREAM_TIMEOUT_MS / 1000 + 10)
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            if r.status == want:
                tally.ok(kind)
            else:
                tally.fail(kind, f"{path}: got {r.status}")
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            tally.fail(kind, f"{path}: no answer ({e!r})")
            if conn:
                conn.close()
            conn = None
        i += 1
        time.sleep(interval)
    if conn:
        conn.close()


# Phases of the stub's fail modes: (query, seconds). Each leaves a good-path
# request's answer 200 through hotpath; the last one restores the defaults.
CONTROL_PHASES = (
    ("fault=close", 3),
    ("fault=none&drop_next=30", 5),
    ("delay_ms=100&jitter_ms=150", 4),
    ("fault=close&drop_next=10", 2),
    ("fault=none&drop_next=0&delay_ms=2&jitter_ms=8", 16),
)


def control_client(stub_port, stop_at, tally):
    i = 0
    while time.monotonic() < stop_at:
        query, secs = CONTROL_PHASES[i % len(CONTROL_PHASES)]
        try:
            status, body = http_get(stub_port, "/_control?" + query, method="POST")
            if status == 200:
                tally.ok("stub /_control")
            else:
                tally.fail("stub /_control", f"{query}: {status} {body[:100]!r}")
        except (OSError, http.client.HTTPException) as e:
            tally.fail("stub /_control", f"{query}: {e!r}")
        i += 1
        end = min(stop_at, time.monotonic() + secs)
        while time.monotonic() < end:
            time.sleep(0.1)
    # Whatever phase the deadline fell in, the stub ends clean.
    try:
        http_get(stub_port, "/_control?" + CONTROL_PHASES[-1][0], method="POST")
    except (OSError, http.client.HTTPException):
        pass


# --- slow clients ---------------------------------------------------------------------


def connect(port, rcvbuf=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((HOST, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_close(s, deadline):
    """Everything until EOF (or a reset) by deadline; None on timeout."""
    data = b""
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    return None


def status_of(data):
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", data or b"")
    return int(m.group(1)) if m else None


def check_rejection(data, want):
    """The rejection's shape: status, Connection: close, a Content-Length
    that matches the body, and nothing after it."""
    if status_of(data) != want:
        return f"expected {want}, got {data[:80]!r}"
    head, _, body = data.partition(b"\r\n\r\n")
    if b"\r\nconnection: close" not in head.lower():
        return "no Connection: close"
    m = re.search(rb"\r\ncontent-length: *(\d+)", head.lower())
    if not m or int(m.group(1)) != len(body):
        return f"Content-Length does not match a body of {len(body)} bytes"
    return None


def slowloris(port, tally):
    kind = "slowloris head -> 408"
    head = b"GET /plaintext HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"a" * 200
    try:
        s = connect(port)
    except OSError as e:
        return tally.fail(kind, f"connect: {e!r}")
    t0 = time.monotonic()
    limit = t0 + (HEADER_TIMEOUT_MS + TICK_MS + MARGIN_MS) / 1000
    try:
        for b in head:
            try:
                s.send(bytes([b]))
            except OSError:
                break  # answered and closed meanwhile: read what came
            r, _, _ = select.select([s], [], [], 0.2)
            if r or time.monotonic() > limit:
                break
        data = read_until_close(s, limit + 1)
        took = (time.monotonic() - t0) * 1000
        why = "no close in time" if data is None else check_rejection(data, 408)
        if why is None and took < HEADER_TIMEOUT_MS - 10:
            why = f"cut early, after {took:.0f} ms"
        tally.fail(kind, why) if why else tally.ok(kind)
    except OSError as e:
        tally.fail(kind, f"{e!r}")
    finally:
        s.close()


def silent(port, tally):
    kind = "silent connection -> closed unanswered"
    try:
        s = connect(port)
        t0 = time.monotonic()
        data = read_until_close(s, t0 + (HEADER_TIMEOUT_MS + TICK_MS + MARGIN_MS) / 1000)
        took = (time.monotonic() - t0) * 1000
        if data is None:
            tally.fail(kind, "still open")
        elif data:
            tally.fail(kind, f"got {data[:60]!r}")
        elif took < HEADER_TIMEOUT_MS - 10:
            tally.fail(kind, f"closed early, after {took:.0f} ms")
        else:
            tally.ok(kind)
        s.close()
    except OSError as e:
        tally.fail(kind, f"{e!r}")


def stalled_body(port, tally):
    kind = "stalled body -> 408"
    try:
        s = connect(port)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10000\r\n\r\n0123456789")
        t0 = time.monotonic()
        data = read_until_close(s, t0 + (BODY_GRACE_MS + TICK_MS + MARGIN_MS) / 1000 + 1)
        why = "no close in time" if data is None else check_rejection(data, 408)
        tally.fail(kind, why) if why else tally.ok(kind)
        s.close()
    except OSError as e:
        tally.fail(kind, f"{e!r}")


def slow_reader(port, tally, n=2000):
    """A small window, n pipelined /json requests and a last one that asks
    for the close; read 4 KiB every 20 ms: every answer must arrive."""
    kind = "slow reader -> every answer"
    try:
        s = connect(port, rcvbuf=4096)
        reqs = b"GET /json HTTP/1.1\r\nHost: h\r\n\r\n" * n
        reqs += b"GET /plaintext HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        sender = threading.Thread(target=lambda: s.sendall(reqs), daemon=True)
        sender.start()
        data = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            time.sleep(0.02)
        sender.join(5)
        got = data.count(b"HTTP/1.1 200 OK\r\n")
        if got == n + 1 and data.endswith(b"Hello, World!"):
            tally.ok(kind)
        else:
            tally.fail(kind, f"{got} of {n + 1} answers")
        s.close()
    except OSError as e:
        tally.fail(kind, f"{e!r}")


def never_reader(port, tally):
    """Pipeline until the server stops taking requests, never read: the
    server must cut the connection at the idle timeout."""
    kind = "reader that never reads -> cut at the idle timeout"
    try:
        s = connect(port, rcvbuf=4096)
        s.setblocking(False)
        block = b"GET /json HTTP/1.1\r\nHost: h\r\n\r\n" * 2048
        off, last = 0, time.monotonic()
        start = last
        while time.monotonic() - last < 0.3 and time.monotonic() - start < 10:
            try:
                at_ = off % len(block)
                off += s.send(block[at_:])
                last = time.monotonic()
            except BlockingIOError:
                time.sleep(0.005)
        p = select.poll()
        p.register(s, select.POLLRDHUP)
        limit = last + (IDLE_TIMEOUT_MS + TICK_MS + MARGIN_MS) / 1000
        closed = False
        while time.monotonic() < limit and not closed:
            for _, ev in p.poll(50):
                if ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                    closed = True
        tally.ok(kind) if closed else tally.fail(kind, f"still open ({off} bytes sent)")
        s.close()
    except OSError as e:
        tally.fail(kind, f"{e!r}")


SLOW_BATCH = ((slowloris, 4), (silent, 2), (stalled_body, 2), (slow_reader, 1),
              (never_reader, 1))
# Room a batch needs before the deadline (the never-reader's idle timeout).
SLOW_BATCH_S = (IDLE_TIMEOUT_MS + MARGIN_MS) / 1000 + 12


def slow_clients(port, stop_at, tally, every=10):
    batches = 0
    while time.monotonic() + SLOW_BATCH_S < stop_at:
        t0 = time.monotonic()
        threads = [threading.Thread(target=fn, args=(port, tally), daemon=True)
                   for fn, n in SLOW_BATCH for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SLOW_BATCH_S + 30)
        batches += 1
        while time.monotonic() < t0 + every and time.monotonic() < stop_at:
            time.sleep(0.1)
    return batches


# --- wrk --------------------------------------------------------------------------------


WRK_SCRIPT = os.path.join(HERE, "mixed.lua")


# --- the verdict on RSS ------------------------------------------------------------------


def rss_verdict(samples, warmup_s):
    """samples: [(t_s, rss_kib)]. Returns (ok, text)."""
    post = [(t, r) for t, r in samples if t >= warmup_s and r is not None]
    rule = (f"over the samples after the {warmup_s:.0f} s warm-up, the last third's max may "
            f"exceed the first third's max by at most {RSS_GROWTH_PCT}% + "
            f"{RSS_GROWTH_KIB // 1024} MiB")
    if len(post) < 3:
        return True, f"{rule}: only {len(post)} samples after warm-up, not judged"
    k = max(1, len(post) // 3)
    first = max(r for _, r in post[:k])
    last = max(r for _, r in post[-k:])
    allowed = first * (1 + RSS_GROWTH_PCT / 100) + RSS_GROWTH_KIB
    ok = last <= allowed
    return ok, (f"{rule}: first third max {first / 1024:.1f} MiB, last third max "
                f"{last / 1024:.1f} MiB, allowed {allowed / 1024:.1f} MiB -> "
                f"{'steady' if ok else 'STILL GROWING'}")


# --- main ---------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build", help="build directory (default build)")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", "600")),
                    help="length of the load (default $SOAK_SECONDS or 600)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    args = ap.parse_args()
    if args.seconds < 20:
        ap.error("--seconds: at least 20")
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            sys.exit(f"soak: {tool} is not installed (make bench-deps installs it)")
    build = os.path.join(ROOT, args.build) if not os.path.isabs(args.build) else args.build
    warmup_s = min(60.0, max(20.0, args.seconds / 5))

    procs = Procs("hotpath-soak-")
    stop_signals_raise()
    failures = []
    lines = []
    try:
        started = datetime.datetime.now()
        stub = procs.start("upstream", [os.path.join(build, "hotpath-upstream"), "--port", "0",
                                        "--delay-ms", "2", "--jitter-ms", "8"])
        stub_port = int(procs.wait_line(stub, r"hotpath-upstream listening on [0-9.]+:(\d+)",
                                        15).group(1))
        with open(os.path.join(ROOT, "config", "hotpath.json")) as f:
            cfg = json.load(f)
        cfg["listen"]["port"] = 0
        cfg["mode"] = "valuetask"
        cfg["upstream"].update(port=stub_port, response_timeout_ms=UPSTREAM_TIMEOUT_MS)
        cfg["limits"].update(header_timeout_ms=HEADER_TIMEOUT_MS, body_grace_ms=BODY_GRACE_MS,
                             idle_timeout_ms=IDLE_TIMEOUT_MS, drain_timeout_ms=5000)
        cfg["cache"]["max_bytes"] = 2 * 1024 * 1024
        cfg_path = os.path.join(procs.tmp, "hotpath.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2)
        hp = procs.start("hotpath", [os.path.join(build, "hotpath"), "--config", cfg_path,
                                     "--port", "0", "--workers", "2"])
        port = int(procs.wait_line(hp, targets.HOTPATH.port_line, 15).group(1))
        log(f"hotpath pid {hp.pid} on {HOST}:{port} (2 workers), stub pid {stub.pid} on "
            f"{stub_port}; {args.seconds} s of load, warm-up {warmup_s:.0f} s")

        # Warm the routes so the first sample is after start-up allocations.
        for path in ("/plaintext", "/json", "/cache/hot0", "/upstream/items/x"):
            status, _ = http_get(port, path)
            if status != 200:
                raise RuntimeError(f"{path} answered {status} before the load")

        t_start = time.monotonic()
        stop_at = t_start + args.seconds
        tally = Tally()
        nonce = f"soak{os.getpid()}{int(time.time())}"
        wrk = procs.start("wrk", ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s",
                                  "--timeout", "5s", "-s", WRK_SCRIPT, f"http://{HOST}:{port}",
                                  "--", nonce])
        threads = [
            threading.Thread(target=fault_client, args=(port, stop_at, tally), daemon=True),
            threading.Thread(target=control_client, args=(stub_port, stop_at, tally),
                             daemon=True),
        ]
        slow_result = {}
        threads.append(threading.Thread(
            target=lambda: slow_result.update(batches=slow_clients(port, stop_at, tally)),
            daemon=True))
        for t in threads:
            t.start()

        samples = []  # (t_s, hotpath rss KiB, stub rss KiB, requests, open connections)

        def sample():
            t = time.monotonic() - t_start
            try:
                st = stats(port)
                reqs = sum(at(st, "modes", m, "requests") for m in ("valuetask", "task"))
                conns = at(st, "connections", "open")
            except (OSError, http.client.HTTPException, ValueError, RuntimeError) as e:
                failures.append(f"/stats failed during the load: {e!r}")
                reqs = conns = None
            samples.append((t, rss_kib(hp.pid), rss_kib(stub.pid), reqs, conns))
            s = samples[-1]
            log(f"t={t:5.0f}s rss {s[1] / 1024 if s[1] else 0:6.1f} MiB, stub "
                f"{s[2] / 1024 if s[2] else 0:5.1f} MiB, requests {reqs}, open {conns}, "
                f"failures so far {tally.total_failed()}")

        sample()
        next_sample = t_start + SAMPLE_S
        while time.monotonic() < stop_at + 30 and wrk.poll() is None:
            time.sleep(min(0.5, max(0.0, next_sample - time.monotonic())))
            if time.monotonic() >= next_sample and time.monotonic() <= stop_at + 1:
                sample()
                next_sample += SAMPLE_S
            if hp.poll() is not None:
                raise RuntimeError(f"hotpath died (status {hp.returncode}): {procs.stderr(hp)}")
        if wrk.poll() is None:
            failures.append("wrk did not finish within 30 s of its duration")
            procs.stop(wrk)
        if samples[-1][0] < args.seconds - 1:
            sample()
        for t in threads:
            t.join(SLOW_BATCH_S + 60)
            if t.is_alive():
                failures.append(f"a client thread did not stop in time ({t.name})")
        with open(wrk.out_path, errors="replace") as f:
            wrk_text = f.read()
        res = parse_result(wrk_text)
        errs = res.get("errors", {})

        # After the load: the pool has nothing busy, and the server exits 0.
        time.sleep(UPSTREAM_TIMEOUT_MS / 1000 + 0.5)
        final = stats(port)
        busy = at(final, "upstream", "pool", "busy")
        if busy:
            failures.append(f"/stats upstream.pool.busy is {busy} after the load")
        hp_status = procs.stop(hp)
        stub_status = procs.stop(stub)
        if hp_status != 0:
            failures.append(f"hotpath exited with {hp_status} on SIGTERM: {procs.stderr(hp)}")
        if stub_status != 0:
            failures.append(f"the stub exited with {stub_status} on SIGTERM")

        # --- the verdict -------------------------------------------------------------------
        sock_errs = sum(errs.get(k, 0) for k in ("connect", "read", "write", "timeout"))
        if res.get("requests", 0) == 0:
            failures.append("wrk made no requests:\n" + wrk_text[-2000:])
        if sock_errs:
            failures.append(f"wrk socket errors: {errs}")
        if errs.get("status", 0):
            failures.append(f"wrk: {errs['status']} answers with status >= 400 on the good paths")
        if tally.total_failed():
            failures.append(f"{tally.total_failed()} slow/fault/control client checks failed")
        rss_ok, rss_text = rss_verdict([(s[0], s[1]) for s in samples], warmup_s)
        if not rss_ok:
            failures.append("RSS " + rss_text)

        rss = [s[1] for s in samples if s[1]]
        lines += [
            f"hotpath soak - {started:%Y-%m-%d %H:%M:%S}, {args.seconds} s, warm-up "
            f"{warmup_s:.0f} s, build {args.build}, {os.cpu_count()} CPUs",
            f"hotpath: 2 workers, valuetask; limits header/body {HEADER_TIMEOUT_MS} ms, idle "
            f"{IDLE_TIMEOUT_MS} ms, upstream timeout {UPSTREAM_TIMEOUT_MS} ms, cache 2 MiB/worker",
            "stub: 2 ms + 0..8 ms jitter; control phases: "
            + ", ".join(f"{q} {s}s" for q, s in CONTROL_PHASES),
            "",
            f"wrk ({os.path.basename(WRK_SCRIPT)}, -t1 -c{args.connections}): "
            f"{res.get('requests', 0)} requests, {res.get('rps', 0):.0f} req/s, "
            f"errors connect {errs.get('connect', 0)} read {errs.get('read', 0)} write "
            f"{errs.get('write', 0)} timeout {errs.get('timeout', 0)} status>=400 "
            f"{errs.get('status', 0)}",
            f"server: {sum(at(final, 'modes', m, 'requests') for m in ('valuetask', 'task'))} "
            f"requests; connections accepted {at(final, 'connections', 'accepted')}, refused "
            f"{at(final, 'connections', 'refused')}, idle_closed "
            f"{at(final, 'connections', 'idle_closed')}; rejections "
            + json.dumps({k: v for k, v in at(final, 'rejections', default={}).items() if v}),
            f"upstream: {at(final, 'upstream', 'requests')} requests, "
            f"{at(final, 'upstream', 'responses')} responses, errors "
            + json.dumps({k: v for k, v in at(final, 'upstream', 'errors', default={}).items()
                          if v})
            + f", retries {at(final, 'upstream', 'retries')}, connections opened "
            f"{at(final, 'upstream', 'pool', 'connections_opened')}, busy at the end {busy}",
            f"cache: hits {at(final, 'cache', 'hits')}, misses {at(final, 'cache', 'misses')}, "
            f"evictions {at(final, 'cache', 'evictions')}, entries {at(final, 'cache', 'entries')}"
            f", bytes {at(final, 'cache', 'bytes')}",
            "",
            f"checks ({slow_result.get('batches', 0)} slow-client batches):",
        ]
        for kind, (ok, bad) in sorted(tally.counts.items()):
            lines.append(f"  {kind:55s} {ok:6d} ok {bad:4d} failed")
        lines += [f"  ! {f}" for f in tally.failures]
        lines += [
            "",
            f"RSS: start {rss[0] / 1024:.1f} MiB, end {rss[-1] / 1024:.1f} MiB, max "
            f"{max(rss) / 1024:.1f} MiB" if rss else "RSS: no samples",
            f"RSS rule: {rss_text}",
            "",
            f"{'t (s)':>6} {'RSS MiB':>8} {'stub MiB':>8} {'requests':>10} {'open':>5}",
        ]
        for t, r, sr, reqs, conns in samples:
            lines.append(f"{t:6.0f} {r / 1024 if r else 0:8.1f} {sr / 1024 if sr else 0:8.1f} "
                         f"{reqs if reqs is not None else '-':>10} "
                         f"{conns if conns is not None else '-':>5}")
    except KeyboardInterrupt as e:
        failures.append(f"interrupted ({e})")
    except Exception as e:  # noqa: BLE001 - any way out reports and cleans up
        failures.append(f"{type(e).__name__}: {e}")
    finally:
        procs.close()

    lines += ["", "VERDICT: " + ("PASS" if not failures else "FAIL")]
    lines += [f"  - {f}" for f in failures]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    out_dir = os.path.join(HERE, "results")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"soak-{datetime.datetime.now():%Y-%m-%d-%H%M%S}.txt")
    with open(path, "w") as f:
        f.write(text)
    log(f"written to {os.path.relpath(path, ROOT)}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
