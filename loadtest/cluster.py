#!/usr/bin/env python3
"""cluster.py - what `make cluster` runs: N hotpath instances behind HAProxy,
sharing one Redis as their L2 cache and one upstream stub.

    python3 loadtest/cluster.py [--instances N] [--port 8080] ...  (--help)

Everything runs on 127.0.0.1, in the foreground; Ctrl-C (or SIGTERM) stops
all of it: the hotpath instances first (they drain), then HAProxy, the stub
and Redis. Generated files and every process's log go to build/cluster/:

    instance-<i>.json   the instance's config: config/hotpath.json with its
                        port, workers, the stub's port and cache.l2.url
    haproxy.cfg         round robin over the instances, health-checked with
                        GET /healthz; haproxy.sock is its admin socket
    *.log               each process's output

HAProxy takes an instance out after `fall` failed checks `inter` apart and
back after `rise` good ones, so an instance that answers /healthz with 503
while it drains stops getting requests within about a second. Its state
changes ("Server hotpath/h2 is DOWN") print on this terminal; kill an
instance (see the pids printed at start) to watch the others take over.

Needs from hotpath (issue 13, part 2): the cache.l2.url option and
GET /healthz. The script checks the first before it starts anything, and
gives up with a message if no instance passes the health check.
"""
import argparse
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

HEALTH_PATH = "/healthz"


def log(msg):
    print(f"cluster: {msg}", flush=True)


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_until(what, check, timeout_s, proc=None):
    """Poll check() until true; fail if proc exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it was ready")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready within {timeout_s} s")


def tcp_exchange(port, data, expect):
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(data)
        got = b""
        while len(got) < len(expect):
            chunk = s.recv(256)
            if not chunk:
                break
            got += chunk
        return got.startswith(expect)


def listening(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


class Cluster:
    """The processes this run started, in start order, and how to stop them."""

    def __init__(self, args):
        self.args = args
        self.dir = os.path.join(args.build, "cluster")
        self.procs = []  # (name, Popen, log file), in start order
        self.instances = []  # (i, port, Popen)

    def path(self, name):
        return os.path.join(self.dir, name)

    def spawn(self, name, argv, logname, stderr_to_terminal=False):
        logf = open(self.path(logname), "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                             stderr=None if stderr_to_terminal else subprocess.STDOUT,
                             start_new_session=True)  # Ctrl-C reaches us, not them
        self.procs.append((name, p, logf))
        return p

    # --- the pieces -------------------------------------------------------

    def start_redis(self):
        a = self.args
        os.makedirs(self.path("redis"), exist_ok=True)
        p = self.spawn("redis", [a.redis_server, "--port", str(a.redis_port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--daemonize", "no",
                                 "--dir", os.path.abspath(self.path("redis"))], "redis.log")
        wait_until("redis-server", lambda: tcp_exchange(a.redis_port, b"PING\r\n", b"+PONG"), 10, p)
        log(f"redis    127.0.0.1:{a.redis_port}  pid {p.pid}")

    def start_upstream(self):
        a = self.args
        p = self.spawn("upstream", [os.path.join(a.build, "hotpath-upstream"), "--port",
                                    str(a.upstream_port), "--delay-ms", str(a.upstream_delay_ms)],
                       "upstream.log")
        wait_until("hotpath-upstream", lambda: listening(a.upstream_port), 10, p)
        log(f"upstream 127.0.0.1:{a.upstream_port}  pid {p.pid}  ({a.upstream_delay_ms} ms delay)")

    def instance_config(self, i, port):
        a = self.args
        with open(a.config) as f:
            cfg = json.load(f)
        cfg.setdefault("listen", {})["port"] = port
        cfg["listen"]["host"] = "127.0.0.1"
        cfg["workers"] = a.workers
        cfg.setdefault("upstream", {})["port"] = a.upstream_port
        cfg["upstream"]["host"] = "127.0.0.1"
        cfg.setdefault("cache", {}).setdefault("l2", {})["url"] = \
            f"redis://127.0.0.1:{a.redis_port}/0"
        path = self.path(f"instance-{i}.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        return path

    def start_instances(self):
        a = self.args
        for i in range(1, a.instances + 1):
            port = a.instance_base_port + i
            conf = self.instance_config(i, port)
            p = self.spawn(f"hotpath-{i}", [os.path.join(a.build, "hotpath"), "--config", conf],
                           f"instance-{i}.log")
            self.instances.append((i, port, p))
        for i, port, p in self.instances:
            wait_until(f"hotpath instance {i}", lambda port=port: listening(port), 10, p)
            log(f"hotpath  127.0.0.1:{port}  pid {p.pid}  (h{i}, {a.workers} worker(s), "
                f"{self.path(f'instance-{i}.json')})")

    def haproxy_config(self):
        a = self.args
        servers = "\n".join(f"    server h{i} 127.0.0.1:{port} check"
                            for i, port, _ in self.instances)
        text = f"""# Generated by loadtest/cluster.py; rewritten on every run.
global
    # no maxconn: HAProxy derives it from the file descriptor limit
    nbthread {a.haproxy_threads}
    stats socket {os.path.abspath(self.path('haproxy.sock'))} mode 600 level admin

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # A request whose connection to an instance fails, or that an instance
    # closes without answering (killed), is retried on another one: only a
    # request an instance had begun to answer when it died can fail.
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response

frontend hotpath
    bind 127.0.0.1:{a.port}
    default_backend instances

backend instances
    balance roundrobin
    # The health check: 200 in service, 503 while draining. Every 500 ms,
    # every 250 ms once one failed; out after 2 failures, back after 2
    # successes: a draining instance gets no new request within ~1 s.
    option httpchk GET {HEALTH_PATH}
    http-check expect status 200
    default-server inter 500ms fastinter 250ms downinter 1s fall 2 rise 2
{servers}
"""
        path = self.path("haproxy.cfg")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_haproxy(self):
        a = self.args
        cfg = self.haproxy_config()
        check = subprocess.run([a.haproxy, "-c", "-q", "-f", cfg], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused {cfg}:\n{check.stdout}{check.stderr}")
        # -db: foreground; its warnings (servers going DOWN/UP) on this terminal.
        p = self.spawn("haproxy", [a.haproxy, "-db", "-f", cfg], "haproxy.log",
                       stderr_to_terminal=True)
        wait_until("haproxy", lambda: listening(a.port), 10, p)
        log(f"haproxy  127.0.0.1:{a.port}  pid {p.pid}  ({cfg})")
        try:
            wait_until(f"an instance passing GET {HEALTH_PATH}", lambda: self.servers_up() > 0,
                       a.health_timeout_s, p)
        except RuntimeError as e:
            raise RuntimeError(f"{e}: does build/hotpath answer GET {HEALTH_PATH} with 200? "
                               f"(issue 13, part 2)")
        try:  # the others' first checks are at most one interval (500 ms) behind
            wait_until("every instance passing", lambda: self.servers_up() == len(self.instances),
                       2, p)
        except RuntimeError:
            pass
        log(f"{self.servers_up()} of {len(self.instances)} instances in service")

    def servers_up(self):
        """Instances in service that passed a health check, from HAProxy's
        admin socket (a server starts UP before its first check has run)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(self.path("haproxy.sock"))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return sum(1 for r in rows
                   if r["pxname"] == "instances" and r["svname"] not in ("FRONTEND", "BACKEND")
                   and r["status"].startswith("UP") and "L7OK" in r["check_status"])

    # --- running and stopping ---------------------------------------------

    def supervise(self):
        """Report processes that exit on their own, until told to stop."""
        reported = set()
        while True:
            for name, p, _ in self.procs:
                if p.poll() is not None and name not in reported:
                    reported.add(name)
                    log(f"{name} (pid {p.pid}) exited with status {p.returncode}")
            time.sleep(0.2)

    def stop(self):
        """The hotpath instances first, so they drain while HAProxy still
        runs and takes them out of service; then the rest, newest first."""
        hotpaths = [x for x in self.procs if x[0].startswith("hotpath-")]
        others = [x for x in reversed(self.procs) if not x[0].startswith("hotpath-")]
        for group in (hotpaths, others):
            for name, p, _ in group:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.args.stop_timeout_s
            for name, p, _ in group:
                try:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log(f"{name} (pid {p.pid}) did not stop within {self.args.stop_timeout_s} s: "
                        f"killed")
                    p.kill()
                    p.wait()
        for _, _, logf in self.procs:
            logf.close()
        if self.procs:
            log("stopped everything it started")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", "-n", type=int, default=3, help="hotpath instances (default 3)")
    ap.add_argument("--workers", type=int, default=1, help="workers per instance (default 1)")
    ap.add_argument("--port", type=int, default=8080, help="HAProxy's port (default 8080)")
    ap.add_argument("--instance-base-port", type=int, default=8100,
                    help="instance i listens on this + i (default 8100: 8101, 8102, ...)")
    ap.add_argument("--upstream-port", type=int, default=8081,
                    help="the stub's port (default 8081, as config/hotpath.json)")
    ap.add_argument("--upstream-delay-ms", type=int, default=5, help="the stub's delay (default 5)")
    ap.add_argument("--redis-port", type=int, default=6399,
                    help="Redis's port (default 6399: not a system Redis's 6379)")
    ap.add_argument("--haproxy-threads", type=int, default=1,
                    help="HAProxy threads (default 1: on a small machine the instances need "
                         "the cores)")
    ap.add_argument("--build", default="build", help="where build/hotpath is (default build)")
    ap.add_argument("--config", default="config/hotpath.json",
                    help="the config every instance starts from (default config/hotpath.json)")
    ap.add_argument("--redis-server", default="redis-server")
    ap.add_argument("--haproxy", default="haproxy")
    ap.add_argument("--health-timeout-s", type=float, default=10,
                    help="how long to wait for an instance to pass the health check")
    ap.add_argument("--stop-timeout-s", type=float, default=10,
                    help="how long each process may take to stop before it is killed")
    args = ap.parse_args()
    if not 1 <= args.instances <= 64:
        ap.error("--instances: expected 1..64")

    hotpath = os.path.join(args.build, "hotpath")
    if not os.access(hotpath, os.X_OK):
        sys.exit(f"cluster: no {hotpath}: build it first (`make cluster` does)")
    help_text = subprocess.run([hotpath, "--help"], capture_output=True, text=True).stdout
    if "cache.l2.url" not in help_text:
        sys.exit(f"cluster: {hotpath} has no cache.l2.url option, so its instances cannot share "
                 f"Redis (issue 13, part 2 adds it)")
    ports = [args.port, args.upstream_port, args.redis_port] + \
            [args.instance_base_port + i for i in range(1, args.instances + 1)]
    busy = [p for p in ports if not port_free(p)]
    if busy:
        sys.exit(f"cluster: port(s) {', '.join(map(str, busy))} already in use on 127.0.0.1 "
                 f"(another `make run` or `make cluster`?); see --help for the port options")

    c = Cluster(args)
    os.makedirs(c.dir, exist_ok=True)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    # Both explicitly: a shell that starts us in the background ignores SIGINT.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    status = 0
    try:
        c.start_redis()
        c.start_upstream()
        c.start_instances()
        c.start_haproxy()
        log(f"serving on http://127.0.0.1:{args.port}/ ; try, twice: "
            f"curl -si localhost:{args.port}/cache/apple | grep -i x-cache")
        log("Ctrl-C stops everything")
        c.supervise()
    except KeyboardInterrupt:
        print()
    except (RuntimeError, OSError) as e:
        log(f"error: {e}")
        status = 1
    finally:
        # A second Ctrl-C while stopping must not leave anything behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        c.stop()
    sys.exit(status)


if __name__ == "__main__":
    main()
