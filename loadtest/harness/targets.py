"""The servers under test, as data.

A Runtime says how to start one server program (its command line, its
config), how its port is learnt, whether one process serves every mode
(switched live) or each mode needs its own process, where in its /stats
JSON the counters are, and what else the report needs from it. Server is
one running process of a Runtime: its pid is what the CPU is read from and
what the cgroup holds. A target of a comparison is a (runtime, mode) pair,
labelled "runtime mode" ("hotpath task", "kestrel valuetask"; nginx's one
target is "nginx"). The sweep, the scenarios and the report only ever see
Runtimes, Servers and labels, so adding a runtime is adding one entry to
RUNTIMES.

The runtimes:
  hotpath           one process, modes switched live (config rewritten,
                    SIGHUP, /stats polled until it says so)
  hotpath-split     the same program one process per mode: a cross-check
                    that switching live biases nothing
  kestrel           the Kestrel twin (loadtest/kestrel, `make twin`), one
                    process per mode (--mode is fixed at start, so no mode
                    inherits another's gen0 budget or JIT state), pinned to
                    the server CPU like every server: one CPU means
                    workstation GC whatever the project asks (stated here
                    with DOTNET_gcServer=0, so an unpinned run measures the
                    same thing)
  kestrel-servergc  the twin with server GC (Sdk.Web's default), which one
                    CPU only gets when told there are two:
                    DOTNET_PROCESSOR_COUNT=2 (one heap)
  kestrel-nospin    the twin whose thread-pool workers block at once instead
                    of spinning first (DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0):
                    the full run's sweep runs it, because under a CPU cap at
                    low rates the default's spinning used most of the quota
                    (loadtest/kestrel/README.md, kestrel/threadpool_spin.py)
  nginx             the yardstick of the closed-loop scenarios

Counters are deltas of GET /stats between two reads, named here once:
requests, allocations (hotpath: the route's chain), bytes, outside_chain
(hotpath: its requests' allocations around the chain), worker_allocations
(hotpath: every allocation of the worker, through all three doors), gen0,
gen1, gen2, gc_pause_ms and wall_ms (the twin: per mode, over the mode's
time). per_request() turns them into the report's figures.
"""

import json
import os
import re
import resource
import shutil
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
    counters: dict                     # name -> path in /stats ("{mode}", "{route}" filled
                                       # in), or a list of paths, summed
    config: Optional[Callable] = None  # (ctx, name, mode, port) -> config file path
    baseline: str = "valuetask"        # the comparison is compared / baseline
    compared: str = "task"
    sweep_modes: Optional[tuple] = None  # the modes in the capped sweep (None: all)
    jit: bool = False                  # compiles as it runs: warm-ups are priming passes
    jit_thread: Optional[str] = None   # its background compiler thread's name (/proc comm)
    extras: Optional[Callable] = None  # (s0, s1, mode, routes) -> non2xx, cache hit ratio...
    describe: Optional[Callable] = None  # (/stats) -> what the report states about it
    env: dict = field(default_factory=dict)
    start_timeout: float = 10
    available: Callable = lambda ctx: None  # None, or why it cannot run here

    def label(self, mode):
        return self.name if mode == self.name else f"{self.name} {mode}"


def split_label(label):
    """(runtime, mode) of a target label; nginx's is ("nginx", "nginx")."""
    runtime, _, mode = label.partition(" ")
    return runtime, mode or runtime


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


def status_non2xx(s0, s1, mode, routes):
    """Answers other than 2xx on routes in mode, between two /stats (both
    servers keep routes[route][mode].status by class)."""
    total = 0
    for route in routes:
        a = at(s0, ("routes", route, mode, "status"), {}) or {}
        b = at(s1, ("routes", route, mode, "status"), {}) or {}
        total += sum(v - a.get(k, 0) for k, v in b.items() if k != "2xx")
    return total


def hit_ratio(c0, c1):
    """Hits (fresh and stale) / lookups between two /stats "cache" objects."""
    d = {k: c1.get(k, 0) - c0.get(k, 0) for k in ("hits", "stale", "misses", "coalesced")}
    hits = d["hits"] + d["stale"]
    looked = hits + d["misses"] + d["coalesced"]
    return hits / looked if looked else None


def hotpath_extras(s0, s1, mode, routes):
    return dict(non2xx=status_non2xx(s0, s1, mode, routes),
                cache_hit_ratio=hit_ratio(s0["cache"], s1["cache"]),
                upstream_errors=sum(s1["upstream"]["errors"].values())
                - sum(s0["upstream"]["errors"].values()))


HOTPATH_COUNTERS = dict(
    requests=("routes", "{route}", "{mode}", "requests"),
    allocations=("routes", "{route}", "{mode}", "allocations"),
    bytes=("routes", "{route}", "{mode}", "allocated_bytes"),
    # Around the chain: reading the request, pipelined input kept, output
    # the kernel refused (0 in steady keep-alive traffic).
    outside_chain=("routes", "{route}", "{mode}", "outside_chain", "allocations"),
    # Everything the worker allocated over the run, through every door -
    # its connections, wrk's, /stats itself: the route's figure is a part
    # of this, never more.
    worker_allocations=[("allocations", door, "count") for door in ("own", "libuv", "cjson")],
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
    extras=hotpath_extras,
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

# --- the Kestrel twin (loadtest/kestrel; its README has the /stats keys) ---------

def kestrel_bin(ctx):
    return os.path.join(ctx.build, "kestrel", "hotpath-kestrel")


def kestrel_available(ctx):
    if not shutil.which("dotnet"):
        return "dotnet is not on PATH (the .NET 10 SDK builds and runs it)"
    if not os.access(kestrel_bin(ctx), os.X_OK):
        return f"{os.path.relpath(kestrel_bin(ctx), ROOT)} is not built (make twin)"
    return None


def kestrel_extras(s0, s1, mode, routes):
    u0, u1 = s0["upstream"], s1["upstream"]
    return dict(non2xx=status_non2xx(s0, s1, mode, routes),
                cache_hit_ratio=hit_ratio(s0["cache"], s1["cache"]),
                upstream_errors=sum(u1[k] - u0[k] for k in ("timeouts", "failures")))


def kestrel_describe(stats):
    return stats.get("runtime")


KESTREL_MODE = ("modes", "{mode}")
KESTREL = Runtime(
    name="kestrel",
    modes=("valuetask", "task", "valuetask-nopool", "aspnet"),
    argv=lambda ctx, mode, port, cfg: [kestrel_bin(ctx), "--config", cfg, "--port", "0",
                                       "--mode", mode],
    config=hotpath_config,  # the twin reads hotpath's file: the stub's port, the mode
    live_modes=False,
    port_line=r"hotpath-kestrel listening on http://[0-9.]+:(\d+)",
    mode_path=("server", "mode"),
    counters=dict(  # the GC's counters are per mode, not per route
        requests=KESTREL_MODE + ("requests",),
        bytes=KESTREL_MODE + ("allocated_bytes",),
        gen0=KESTREL_MODE + ("gen0",), gen1=KESTREL_MODE + ("gen1",),
        gen2=KESTREL_MODE + ("gen2",),
        gc_pause_ms=KESTREL_MODE + ("gc_pause_ms",), wall_ms=KESTREL_MODE + ("wall_ms",)),
    sweep_modes=("valuetask", "task"),
    jit=True,
    jit_thread=".NET Tiered Com",  # tiered compilation's worker (comm keeps 15 characters)
    extras=kestrel_extras,
    describe=kestrel_describe,
    env=dict(DOTNET_CLI_TELEMETRY_OPTOUT="1", DOTNET_NOLOGO="1", DOTNET_gcServer="0"),
    start_timeout=30,
    available=kestrel_available,
)

KESTREL_SERVERGC = replace(
    KESTREL, name="kestrel-servergc", modes=("valuetask", "task"),
    env=dict(KESTREL.env, DOTNET_gcServer="1", DOTNET_PROCESSOR_COUNT="2"))

# Idle thread-pool workers spin before they block; under a CFS quota at low
# rates that spinning, not the request path, is most of the twin's CPU.
SPIN_KNOB = "DOTNET_ThreadPool_UnfairSemaphoreSpinLimit"
KESTREL_NOSPIN = replace(KESTREL, name="kestrel-nospin", env=dict(KESTREL.env, **{SPIN_KNOB: "0"}))

RUNTIMES = {r.name: r for r in (HOTPATH, HOTPATH_SPLIT, KESTREL, KESTREL_SERVERGC,
                                KESTREL_NOSPIN)}


def runtime_env(rt):
    """The environment a runtime's processes get beyond the runner's own,
    for the report: 'DOTNET_gcServer=0 ...'."""
    return " ".join(f"{k}={v}" for k, v in rt.env.items()
                    if k not in ("DOTNET_CLI_TELEMETRY_OPTOUT", "DOTNET_NOLOGO"))


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
        self.proc = ctx.procs.start(self.name, argv, env=env, note=runtime_env(rt),
                                    preexec=cgroup.preexec() if cgroup else None)
        timeout = timeout or rt.start_timeout
        if rt.port_line:
            port = int(ctx.procs.wait_line(self.proc, rt.port_line, timeout).group(1))
        else:
            wait_port(port, self.proc, timeout)
        self.port = port
        self.pid = self.proc.pid  # taskset and valgrind exec: this is the server
        self.primed = set()  # the scenarios a JIT runtime has been primed on
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
        """The runtime's counters between two /stats (deltas())."""
        return deltas(self.rt.counters, s0, s1, mode, routes)

    def describe(self):
        """What the report states about this process (the twin: .NET's
        version and the GC in use), or None."""
        return self.rt.describe(self.stats()) if self.rt.describe else None

    def stop(self):
        return self.ctx.procs.stop(self.proc, timeout=15)


def deltas(counters, s0, s1, mode, routes):
    """{name: s1 - s0} for every counter (a path, or a list of paths summed;
    a path with "{route}" summed over routes); None where s1 lacks one."""
    out = {}
    for name, paths in counters.items():
        total = 0
        for path in ([paths] if isinstance(paths, tuple) else paths):
            for route in (routes if "{route}" in path else (None,)):
                p = [k.format(mode=mode, route=route) for k in path]
                a, b = at(s0, p, 0), at(s1, p, None)
                if b is None:
                    total = None
                    break
                total += b - a
            if total is None:
                break
        out[name] = total
    return out


# counter -> (figure, scale): what a run's deltas become per request.
FIGURES = dict(allocations=("allocs_per_req", 1), bytes=("bytes_per_req", 1),
               outside_chain=("outside_chain_per_req", 1),
               worker_allocations=("worker_allocs_per_req", 1),
               gen0=("gen0_per_1k", 1000), gen1=("gen1_per_1k", 1000), gen2=("gen2_per_1k", 1000))


def per_request(d):
    """A run's figures from its counter deltas: each counter per request
    (collections per 1,000 requests), and the GC pause share (pause time /
    the wall time the same counters cover). Figures the runtime does not
    count are absent."""
    n = d.get("requests")
    out = {}
    if n:
        for name, (figure, scale) in FIGURES.items():
            if d.get(name) is not None:
                out[figure] = d[name] * scale / n
    if d.get("gc_pause_ms") is not None and d.get("wall_ms"):
        out["gc_pause_share"] = d["gc_pause_ms"] / d["wall_ms"]
    return out


def at(d, path, default=None):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def start_servers(rt, ctx, cgroup=None, modes=None):
    """{mode: Server} for every mode of rt (or those in modes): one process
    for a live runtime, one per mode otherwise."""
    modes = [m for m in rt.modes if modes is None or m in modes]
    if rt.live_modes:
        s = Server(rt, ctx, cgroup=cgroup)
        return {m: s for m in modes}
    return {m: Server(rt, ctx, mode=m, cgroup=cgroup) for m in modes}


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
