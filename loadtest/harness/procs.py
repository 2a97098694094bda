"""Process control: start, pin, wait for and stop the processes of a run.

Every process started here runs in its own session (its own process group)
and is stopped on the way out, whatever the way out is: Procs.close() in a
finally, and callers turn SIGINT/SIGTERM into KeyboardInterrupt so the
finally runs. Every command run to completion is bounded in time; only
127.0.0.1 is ever a target. Used by bench.py and soak.py alike.
"""

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # loadtest/
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"

COMMANDS = []  # every command line started, in order, for the report


def logger(tag):
    """A log function that prints '[tag HH:MM:SS] msg', flushed."""
    def log(msg):
        print(f"[{tag} {time.strftime('%H:%M:%S')}] {msg}", flush=True)
    return log


def record(cmd, note=""):
    line = (note + " " if note else "") + " ".join(shlex.quote(str(c)) for c in cmd)
    if line not in COMMANDS:
        COMMANDS.append(line)


def stop_signals_raise():
    """SIGINT and SIGTERM raise KeyboardInterrupt, so every finally runs
    (a background job of a non-interactive shell inherits SIGINT ignored,
    and Python then never raises it by itself); SIGHUP is ignored."""
    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


class Pinning:
    """Which CPU the server gets and which the load generators get. With two
    CPUs or more and taskset: the first for the server, the second for the
    generators (and the upstream stub); otherwise nothing is pinned."""

    def __init__(self):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2 and shutil.which("taskset"):
            self.server_cpu, self.load_cpu = cpus[0], cpus[1]
            self.server = ["taskset", "-c", str(cpus[0])]
            self.load = ["taskset", "-c", str(cpus[1])]
        else:
            self.server_cpu = self.load_cpu = None
            self.server = self.load = []


class Procs:
    """The long-running processes of a run (servers, the stub, wrk in the
    background), with a temp dir for their output. A context manager:
    leaving it stops them all and removes the temp dir (unless keep)."""

    def __init__(self, prefix, keep=False):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.keep = keep
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self, name, cmd, env=None, preexec=None, note=""):
        """Start cmd in its own session; stdout and stderr go to files in
        the temp dir. preexec runs in the child before exec (joining a
        cgroup); note (the environment it adds) goes before the command in
        the report's list. Returns the Popen, with name, out_path and
        err_path."""
        record(cmd, note)
        out = os.path.join(self.tmp, name + ".out")
        err = os.path.join(self.tmp, name + ".err")
        with open(out, "wb") as o, open(err, "wb") as e:
            p = subprocess.Popen(cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                                 start_new_session=True, cwd=ROOT, env=env,
                                 preexec_fn=preexec)
        p.name, p.out_path, p.err_path = name, out, err
        self.procs.append(p)
        return p

    def adopt(self, p, name):
        """A process started elsewhere, stopped with the others."""
        p.name = name
        self.procs.append(p)
        return p

    def wait_line(self, p, pattern, timeout):
        """Wait until p's stdout has a line matching pattern; the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(p.out_path, errors="replace") as f:
                m = rx.search(f.read())
            if m:
                return m
            if p.poll() is not None:
                raise RuntimeError(f"{p.name} exited ({p.returncode}) before it listened: "
                                   + self.stderr(p, 400))
            time.sleep(0.02)
        raise TimeoutError(f"{p.name}: no line matching '{pattern}' within {timeout}s")

    def stderr(self, p, n=4000):
        try:
            with open(p.err_path, errors="replace") as f:
                return f.read()[-n:]
        except (OSError, AttributeError):
            return ""

    def stop(self, p, timeout=15):
        """SIGTERM to p's group, SIGKILL after timeout; the exit status, or
        None when it had to be killed."""
        killed = False
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                killed = True
        # Whatever the leader did, nothing of its group may linger.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if p in self.procs:
            self.procs.remove(p)
        return None if killed else p.returncode

    def close(self):
        for p in list(reversed(self.procs)):
            try:
                self.stop(p, timeout=5)
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                print(f"stopping {p.name} (pid {p.pid}): {e}", flush=True)
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def run(cmd, timeout, env=None, note=""):
    """Run a bounded command in its own process group; its stdout as text.
    On timeout the whole group is killed and TimeoutError raised; a
    non-zero exit raises RuntimeError with the end of its stderr."""
    record(cmd, note)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise TimeoutError(f"timed out after {timeout}s: {' '.join(map(str, cmd))}")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(map(str, cmd))}: "
                           + err.decode(errors="replace")[-400:])
    return out.decode(errors="replace")


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
    """An ephemeral port that was free a moment ago (for servers that must
    be told their port; hotpath takes --port 0 and prints it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


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
