#!/usr/bin/env python3
"""The layering check: which folder of hotpath may include which.

The library is built in layers, bottom to top (README, "How it is built"):

    runtime                      the task runtime: knows nothing of HTTP
    server, cache, upstream      the request path and host; the two clients
    middleware, handlers         what runs inside the chain
    app                          main, and the wiring that hands routes,
                                 middleware, services and option tables over

A folder may include its own headers and those of the layers below it,
never one above it nor a sibling beside it (server/ does not know the cache
or the upstream client: the app hands them over). Above the server only
service.h and ctx.h's accessors are seen: the worker's own headers
(server/worker.h, and host.h, the worker's request side) are the server's.
Within a folder the modules (a .c and its .h) form no circle.

Outside the layers: stub/ (the upstream stub) and loadtest/ (the load
generator) are other programs, which may use runtime/ and server/'s
helpers and nothing else; tests/ may include
anything, since tests look into every layer; nothing in the library may
include stub/, tests/ or loadtest/.

Usage: layering.py [ROOT]  (ROOT: the repository, by default this file's
parent's parent). Prints the table of which folder includes which, then
every violation; exits 1 when there is one, 0 otherwise.
"""

import os
import re
import sys

# Bottom to top; folders on one level are siblings.
LEVELS = [["runtime"], ["server", "cache", "upstream"], ["middleware", "handlers"], ["app"]]
LEVEL = {folder: i for i, level in enumerate(LEVELS) for folder in level}
LAYERS = [folder for level in LEVELS for folder in level]

# Outside the layers: the folders each may include (None: any).
OUTSIDE = {"stub": {"runtime", "server"}, "tests": None, "loadtest": {"runtime", "server"}}

# The worker's headers: the server's alone.
WORKER_HEADERS = {"server/worker.h", "server/host.h"}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
SKIP_DIRS = {"node_modules", "build", ".git"}


def sources(root, folder):
    """Every .c and .h under root/folder, as paths relative to root."""
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith((".c", ".h")):
                yield os.path.relpath(os.path.join(dirpath, name), root)


def resolve(root, src, inc):
    """The file an include names, relative to root, as the compiler finds it
    (the including file's folder first, then -I. - the root); None when it
    is neither."""
    for base in (os.path.dirname(src), ""):
        path = os.path.normpath(os.path.join(base, inc))
        if os.path.isfile(os.path.join(root, path)):
            return path
    return None


def top(path):
    return path.split(os.sep)[0]


def scan(root):
    """Every quoted include of the layered and outside folders, as
    (source, line, included path); the included path is None when the
    include names no file of the tree (a bare name not in the including
    file's folder, or a typo)."""
    found = []
    for folder in LAYERS + sorted(OUTSIDE):
        for src in sources(root, folder):
            with open(os.path.join(root, src), encoding="utf-8", errors="replace") as f:
                text = f.read()
            for m in INCLUDE.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                found.append((src, line, m.group(1), resolve(root, src, m.group(1))))
    return found


def check(includes):
    """The violations, as messages naming the file, line and include."""
    bad = []
    for src, line, name, target in includes:
        if target is None:
            bad.append(f"{src}:{line}: includes {name}: no such file in the tree (a bare "
                       "name is the including file's folder's; others start at the root)")
            continue
        a, b = top(src), top(target)
        where = f"{src}:{line}: includes {target}"
        if a in OUTSIDE:
            allowed = OUTSIDE[a]
            if allowed is not None and b != a and b not in allowed:
                bad.append(f"{where}: {a}/ is outside the layers and may include only "
                           f"{', '.join(sorted(allowed))}")
            continue
        if b not in LEVEL:
            bad.append(f"{where}: {b}/ is not a layer of the library")
        elif b != a and LEVEL[b] > LEVEL[a]:
            bad.append(f"{where}: {b}/ is above {a}/")
        elif b != a and LEVEL[b] == LEVEL[a]:
            bad.append(f"{where}: {b}/ is a sibling of {a}/, not below it")
        if a != "server" and target in WORKER_HEADERS:
            bad.append(f"{where}: the worker's header is the server's own "
                       "(above it: service.h, ctx.h)")
    bad += circles(includes)
    return bad


def circles(includes):
    """Module circles inside a layer: module = folder/stem (conn.c and
    conn.h are one), an edge when one's files include the other's header."""
    edges = {}
    for src, _, _, target in includes:
        if target is None or top(src) not in LEVEL or top(src) != top(target):
            continue
        a, b = os.path.splitext(src)[0], os.path.splitext(target)[0]
        if a != b:
            edges.setdefault(a, set()).add(b)
    found, state, stack = [], {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                found.append("include circle: " + " -> ".join(cycle))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return found


def table(includes):
    """Rows: the including folder; columns: the included one; cells: how
    many files of the row's folder include a header of the column's."""
    cols = LAYERS
    rows = LAYERS + sorted(OUTSIDE)
    files = {}
    for src, _, _, target in includes:
        if target is not None:
            files.setdefault((top(src), top(target)), set()).add(src)
    width = max(len(c) for c in cols + rows) + 1
    out = ["files of (row) including (column):",
           "".ljust(width) + "".join(c.rjust(width) for c in cols)]
    for r in rows:
        cells = [str(len(files.get((r, c), ()))) if files.get((r, c)) else "." for c in cols]
        out.append(r.ljust(width) + "".join(x.rjust(width) for x in cells))
    return "\n".join(out)


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    includes = scan(root)
    print(table(includes))
    bad = check(includes)
    for b in bad:
        print("layering: " + b, file=sys.stderr)
    print(f"layering: {len(includes)} includes checked, {len(bad)} violation(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
