"""The twin's micro-benchmark in the report: `make micro` (BenchmarkDotNet,
loadtest/kestrel/micro) run by the full bench, or a report.md it wrote
before, read back and set beside hotpath's callgrind counts.

`make micro` writes a report.md: a first line naming its date and commit,
HybridCache's facts, and BenchmarkDotNet's GitHub-markdown tables (each
after a code block that names the machine and the job). parse() turns it
into {header, date, commit, facts, rows: {benchmark name: {mean_ns,
allocated_b, ...}}, text}; a benchmark's name is its Method without the
quotes, with its Mode parameter in brackets where it has one
("twin GET /plaintext [task]").
"""

import os
import re
import time

from .procs import ROOT, run

# The rows of the report's side-by-side table: (what, {column: benchmark}).
# The columns are hotpath's modes and the twin's "other" synchronous shape
# (the idiomatic Task, aspnet mode, HybridCache for the cache).
SIDE_BY_SIDE = [
    ("the bare 4-layer chain (3 `async` middleware + handler)",
     dict(valuetask="ValueTask<T> chain", task="Task<T> chain", other="idiomatic Task chain")),
    ("the twin's GET /plaintext, its own code, no I/O",
     dict(valuetask="twin GET /plaintext [valuetask]", task="twin GET /plaintext [task]",
          other="twin GET /plaintext [aspnet]")),
    ("a cache hit, the twin's cache",
     dict(valuetask="twin cache hit (ValueTask)", task="twin cache hit (Task)",
          other="HybridCache hit, key from the path")),
]

UNITS_NS = {"ns": 1.0, "μs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
UNITS_B = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def quantity(text, units):
    """'34.14 ns' -> 34.14, '1.2 KB' -> 1228.8 (in the first unit's terms),
    '-' -> 0 (BenchmarkDotNet's "nothing allocated"); None if unreadable."""
    text = text.strip().replace(",", "")
    if text in ("-", "0"):
        return 0.0
    m = re.fullmatch(r"([0-9.]+)\s*(\S+)", text)
    if not m or m.group(2) not in units:
        return None
    return float(m.group(1)) * units[m.group(2)]


def parse(text):
    """A `make micro` report.md, parsed (see the module's docstring)."""
    lines = text.splitlines()
    head = lines[0] if lines else ""
    m = re.search(r"micro-benchmark, (\S+), commit (\S+)", head)
    out = dict(header=head.lstrip("# "), date=m and m.group(1), commit=m and m.group(2),
               facts=[ln[len("- facts: "):] for ln in lines if ln.startswith("- facts: ")],
               rows={}, text=text)
    cols = None
    for ln in lines:
        if not ln.startswith("|"):
            cols = None
            continue
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        if cols is None:
            cols = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue  # the header's rule
        row = dict(zip(cols, cells))
        name = row.get("Method", "").strip("'")
        if row.get("Mode"):
            name += f" [{row['Mode']}]"
        out["rows"][name] = dict(mean_ns=quantity(row.get("Mean", ""), UNITS_NS),
                                 allocated_b=quantity(row.get("Allocated", ""), UNITS_B),
                                 stddev_ns=quantity(row.get("StdDev", ""), UNITS_NS))
    return out


def run_micro(build, out_dir, timeout, log, args=""):
    """`make micro` with its tables written to out_dir; the parsed report
    with the wall time it took."""
    t0 = time.monotonic()
    os.makedirs(out_dir, exist_ok=True)
    cmd = ["make", "--no-print-directory", "micro", f"BUILD={os.path.relpath(build, ROOT)}",
           f"MICRO_OUT={out_dir}"] + ([f"MICRO_ARGS={args}"] if args else [])
    log(f"micro: {' '.join(cmd)} (BenchmarkDotNet; minutes)")
    run(cmd, timeout)
    res = read(os.path.join(out_dir, "report.md"))
    res["wall_s"] = time.monotonic() - t0
    res["ran"] = True
    return res


def read(path):
    with open(path) as f:
        res = parse(f.read())
    res["path"] = os.path.relpath(path, ROOT)
    res["ran"] = False
    return res
