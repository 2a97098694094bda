"""The servers under test, as data.

A Runtime says how to start one server program (its command line, its
config), how its port is learnt, whether one process serves every mode
(switched live) or each mode needs its own process, and where in its
/stats JSON the counters are. Server is one running process of a Runtime:
its pid is what the CPU is read from and what the cgroup holds. A target
of a comparison is a (runtime, mode) pair. The sweep, the scenarios and the
report only ever see Runtimes and Servers, so adding a runtime is adding
one entry to RUNTIMES.

Adding the Kestrel twin (loadtest/kestrel, built into build/kestrel/): one
entry. The twin's branch was seen running as
`build/kestrel/hotpath-kestrel --config F --port 0 --mode task|valuetask`
(an apphost; `dotnet build/kestrel/<dll>` works the same way): check its
name, whether it reads hotpath's config, and its /stats keys, then:

    def kestrel_bin(ctx):
        return os.path.join(ctx.build, "kestrel", "hotpath-kestrel")

    KESTREL = Runtime(
        name="kestrel",
        modes=("valuetask", "task", "aspnet"),
        argv=lambda ctx, mode, port, cfg: [kestrel_bin(ctx), "--config", cfg,
                                           "--port", str(port), "--mode", mode],
        config=hotpath_config,   # or None, and no --config
        live_modes=False,        # one process per mode: --mode is fixed at start
        port_line=None,          # the runner picks a free port and waits for it
        mode_path=None,
        counters=dict(           # deltas of GET /stats, per mode
            requests=("modes", "{mode}", "requests"),
            bytes=("modes", "{mode}", "allocated_bytes"),
            gen0=("modes", "{mode}", "gen0"), gen1=("modes", "{mode}", "gen1"),
            gen2=("modes", "{mode}", "gen2"),
            gc_pause_ms=("modes", "{mode}", "gc_pause_ms")),
        env=dict(DOTNET_CLI_TELEMETRY_OPTOUT="1", DOTNET_NOLOGO="1"),
        start_timeout=30,
        available=lambda ctx: None if os.access(kestrel_bin(ctx), os.X_OK)
        else "build/kestrel/hotpath-kestrel not built")
    RUNTIMES["kestrel"] = KESTREL

and add "kestrel" to bench.py's --runtimes default. The sweep then runs the
twin's modes beside hotpath's (every process in the run's cgroup, pinned
to the server CPU, CPU read from its pid), compares its task with its
valuetask, and the report gives it its own rows, band paragraphs and
plot; counters other than requests/allocations/bytes (the GC ones) are
kept per request in results.json ("per_request"). `hotpath-split` below
runs hotpath exactly that way - one process per mode - so the path the
twin will take is exercised today.
"""

import json
import os
import re
import resource
import signal
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

from . import measure
from .procs import HERE, ROOT, free_port, wait_port


@dataclass
class Context:
    """What starting a server needs: the build dir, the process set, the
    pinning, the upstream stub's port."""
    build: str
    procs: object
    pin: object
    stub_port: int = 0


@dataclass(frozen=True, eq=False)  # identity: one Runtime, one entry
class Runtime:
    name: str
    modes: tuple                       # every mode it serves, in report order
    argv: Callable                     # (ctx, mode, port, config_path) -> command line
    live_modes: bool                   # one process serves every mode, switched at run time
    port_line: Optional[str]           # regex (group 1: the port) on its stdout; None: we pick
    mode_path: Optional[tuple]         # where /stats says the current mode (checked on switch)
    counters: dict                     # name -> path in /stats ("{mode}", "{route}" filled in)
    config: Optional[Callable] = None  # (ctx, name, mode, port) -> config file path
    baseline: str = "valuetask"        # the comparison is compared / baseline
    compared: str = "task"
    env: dict = field(default_factory=dict)
    start_timeout: float = 10
    available: Callable = lambda ctx: None  # None, or why it cannot run here


# --- hotpath -------------------------------------------------------------------

def hotpath_config(ctx, name, mode, port):
    """A temp copy of config/hotpath.json: one worker, the stub's port, the
    mode, and a 1 s advisor window (so /advice taken right after a
    scenario reflects that scenario alone)."""
    with open(os.path.join(ROOT, "config", "hotpath.json")) as f:
        cfg = json.load(f)
    cfg["listen"]["port"] = 0
    cfg["workers"] = 1
    cfg["mode"] = mode
    cfg["upstream"]["port"] = ctx.stub_port
    cfg.setdefault("advice", {})["window_s"] = 1
    path = os.path.join(ctx.procs.tmp, f"{name}.json")
    write_json(path, cfg)
    return path


def write_json(path, obj):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


HOTPATH_COUNTERS = dict(
    requests=("routes", "{route}", "{mode}", "requests"),
    allocations=("routes", "{route}", "{mode}", "allocations"),
    bytes=("routes", "{route}", "{mode}", "allocated_bytes"),
)

# No --mode flag: a flag would win over the file across reloads too.
HOTPATH = Runtime(
    name="hotpath",
    modes=("valuetask", "task"),
    argv=lambda ctx, mode, port, cfg: [os.path.join(ctx.build, "hotpath"), "--config", cfg,
                                       "--port", "0", "--workers", "1"],
    config=hotpath_config,
    live_modes=True,
    port_line=r"hotpath listening on http://[0-9.]+:(\d+)",
    mode_path=("server", "mode"),
    counters=HOTPATH_COUNTERS,
)

# The same program, one process per mode: the twin's way (a cross-check
# that switching modes live biases nothing).
HOTPATH_SPLIT = replace(HOTPATH, name="hotpath-split", live_modes=False)


# --- nginx, the yardstick of the closed-loop scenarios -----------------------------

def nginx_config(ctx, name, mode, port):
    prefix = os.path.join(ctx.procs.tmp, name)
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    os.chmod(ctx.procs.tmp, 0o755)
    os.chmod(prefix, 0o755)
    with open(os.path.join(HERE, "nginx.conf.in")) as f:
        text = f.read()
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if nofile == resource.RLIM_INFINITY:
        nofile = 65536
    subst = {"PREFIX": prefix, "PORT": str(port), "UPSTREAM_PORT": str(ctx.stub_port),
             "WORKER_CONNECTIONS": "8192", "NOFILE": str(max(1024, min(nofile, 1 << 20)))}
    for k, v in subst.items():
        text = text.replace(f"@{k}@", v)
    if "@" in re.sub(r"#.*", "", text):
        raise RuntimeError("nginx.conf.in: unsubstituted placeholder")
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


NGINX = Runtime(
    name="nginx",
    modes=("nginx",),
    argv=lambda ctx, mode, port, cfg: ["nginx", "-c", cfg, "-p", os.path.dirname(cfg) + "/",
                                       "-e", os.path.join(os.path.dirname(cfg), "error.log")],
    config=nginx_config,
    live_modes=True,
    port_line=None,
    mode_path=None,
    counters={},
)

RUNTIMES = {r.name: r for r in (HOTPATH, HOTPATH_SPLIT)}


# --- a running server ---------------------------------------------------------------

class Server:
    """One process of a runtime, started in ctx.procs (pinned to the server
    CPU, inside cgroup when one is given). mode: the mode it starts in
    (every mode of a live runtime is served by this one process)."""

    def __init__(self, rt, ctx, mode=None, name=None, cgroup=None, wrapper=None, timeout=None):
        self.rt, self.ctx = rt, ctx
        self.mode = mode or rt.modes[0]
        self.name = name or (rt.name if rt.live_modes else f"{rt.name}-{self.mode}")
        port = 0 if rt.port_line else free_port()
        self.cfg_path = rt.config(ctx, self.name, self.mode, port) if rt.config else None
        argv = ctx.pin.server + (wrapper or []) + rt.argv(ctx, self.mode, port, self.cfg_path)
        env = dict(os.environ, **rt.env) if rt.env else None
        self.proc = ctx.procs.start(self.name, argv, env=env,
                                    preexec=cgroup.preexec() if cgroup else None)
        timeout = timeout or rt.start_timeout
        if rt.port_line:
            port = int(ctx.procs.wait_line(self.proc, rt.port_line, timeout).group(1))
        else:
            wait_port(port, self.proc, timeout)
        self.port = port
        self.pid = self.proc.pid  # taskset and valgrind exec: this is the server
        self.cgroup = cgroup
        if cgroup:
            outside = cgroup.threads_outside(self.pid)
            if outside:
                raise RuntimeError(f"{self.name}: threads {outside} are not in {cgroup.path}")

    def modes(self):
        return self.rt.modes if self.rt.live_modes else (self.mode,)

    def stats(self):
        status, body = measure.http_get(self.port, "/stats", timeout=30)
        if status != 200:
            raise RuntimeError(f"{self.name}: /stats answered {status}")
        return json.loads(body)

    def use(self, mode, timeout=10):
        """Make mode the one being served: live runtimes rewrite the mode in
        their config, get SIGHUP and are polled until /stats says so."""
        if mode == self.mode and (not self.rt.mode_path or
                                  at(self.stats(), self.rt.mode_path) == mode):
            return
        if not self.rt.live_modes:
            raise RuntimeError(f"{self.name} serves {self.mode} only, not {mode}")
        with open(self.cfg_path) as f:
            cfg = json.load(f)
        cfg["mode"] = mode
        write_json(self.cfg_path, cfg)
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if at(self.stats(), self.rt.mode_path) == mode:
                self.mode = mode
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.name}: mode did not switch to {mode} after SIGHUP")

    def counters(self, s0, s1, mode, routes=("/plaintext",)):
        """The runtime's counters between two /stats: deltas, summed over
        routes where the path has a route; None where /stats lacks it."""
        out = {}
        for name, path in self.rt.counters.items():
            keys = routes if "{route}" in path else (None,)
            total = 0
            for route in keys:
                p = [k.format(mode=mode, route=route) for k in path]
                a, b = at(s0, p, 0), at(s1, p, None)
                if b is None:
                    total = None
                    break
                total += b - a
            out[name] = total
        return out

    def stop(self):
        return self.ctx.procs.stop(self.proc, timeout=15)


def at(d, path, default=None):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def start_servers(rt, ctx, cgroup=None):
    """{mode: Server} for every mode of rt: one process for a live runtime,
    one per mode otherwise."""
    if rt.live_modes:
        s = Server(rt, ctx, cgroup=cgroup)
        return {m: s for m in rt.modes}
    return {m: Server(rt, ctx, mode=m, cgroup=cgroup) for m in rt.modes}


def start_stub(ctx, delay_ms):
    """The upstream stub (the "remote service" of /cache misses and
    /upstream), on the load CPU; sets ctx.stub_port."""
    cmd = ctx.pin.load + [os.path.join(ctx.build, "hotpath-upstream"), "--port", "0",
                          "--delay-ms", str(delay_ms)]
    p = ctx.procs.start("stub", cmd)
    m = ctx.procs.wait_line(p, r"hotpath-upstream listening on [0-9.]+:(\d+)", 10)
    ctx.stub_port = int(m.group(1))
    return p


def stub_stats(port):
    try:
        status, body = measure.http_get(port, "/_stats")
        return json.loads(body) if status == 200 else None
    except (OSError, ValueError):
        return None
