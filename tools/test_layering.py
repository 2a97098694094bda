#!/usr/bin/env python3
"""Tests of the layering check (layering.py): it passes on a copy of the
real tree, and fails - exit 1, naming the file, the line and the include -
on that copy with one bad include added, for each rule it enforces."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CHECKER = os.path.join(HERE, "layering.py")
FOLDERS = ["runtime", "server", "cache", "upstream", "middleware", "handlers", "app", "stub",
           "tests", "loadtest"]


def only_sources(directory, names):
    return [n for n in names
            if n in ("node_modules", "build")
            or (os.path.isfile(os.path.join(directory, n)) and not n.endswith((".c", ".h")))]


class Layering(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="layering-")
        for folder in FOLDERS:
            if os.path.isdir(os.path.join(ROOT, folder)):
                shutil.copytree(os.path.join(ROOT, folder), os.path.join(self.tmp, folder),
                                ignore=only_sources)

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def run_checker(self):
        return subprocess.run([sys.executable, CHECKER, self.tmp], capture_output=True,
                              text=True, timeout=60)

    def add(self, path, text):
        """Append text to path in the copy (made if missing); the line
        number of its first line."""
        full = os.path.join(self.tmp, path)
        before = ""
        if os.path.exists(full):
            with open(full) as f:
                before = f.read()
        if before and not before.endswith("\n"):
            before += "\n"
        with open(full, "w") as f:
            f.write(before + text)
        return before.count("\n") + 1

    def assert_refused(self, path, include, why):
        line = self.add(path, f'#include "{include}"\n')
        r = self.run_checker()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(f"{path}:{line}: includes {include}: {why}", r.stderr)

    def test_the_real_tree_passes_and_the_table_is_printed(self):
        r = self.run_checker()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        lines = r.stdout.splitlines()
        self.assertEqual(lines[1].split(),
                         ["runtime", "server", "cache", "upstream", "middleware", "handlers", "app"])
        runtime_row = next(l for l in lines if l.startswith("runtime "))
        self.assertEqual(runtime_row.split()[2:], ["."] * 6)  # runtime includes only itself
        self.assertIn("0 violation(s)", r.stdout)

    def test_a_layer_including_one_above_it(self):
        self.assert_refused("runtime/task.c", "server/http.h", "server/ is above runtime/")
        self.assert_refused("server/parser.c", "handlers/handlers.h",
                            "handlers/ is above server/")

    def test_the_server_including_a_sibling(self):
        self.assert_refused("server/conn.c", "cache/cache.h",
                            "cache/ is a sibling of server/, not below it")
        self.assert_refused("server/worker.c", "upstream/client.h",
                            "upstream/ is a sibling of server/, not below it")

    def test_middleware_including_handlers(self):
        self.assert_refused("middleware/metrics.c", "handlers/handlers.h",
                            "handlers/ is a sibling of middleware/, not below it")

    def test_a_bare_name_is_the_including_folders(self):
        # layers.h is server/'s: from handlers/ it names nothing, so it
        # cannot slip past the rules as a file of handlers/.
        self.assert_refused("handlers/plaintext.c", "layers.h", "no such file in the tree")

    def test_handlers_or_middleware_including_the_workers_header(self):
        self.assert_refused("handlers/plaintext.c", "server/worker.h",
                            "the worker's header is the server's own")
        self.assert_refused("middleware/request_id.c", "server/host.h",
                            "the worker's header is the server's own")

    def test_the_library_including_a_test_or_the_stub(self):
        self.assert_refused("cache/cache.c", "tests/support/counters.h",
                            "tests/ is not a layer of the library")

    def test_the_stub_including_more_than_runtime_and_server(self):
        self.assert_refused("stub/upstream.c", "cache/cache.h",
                            "stub/ is outside the layers and may include only runtime, server")

    def test_a_circle_inside_a_layer(self):
        self.add("server/left.h", '#include "right.h"\n')
        self.add("server/right.h", '#include "left.h"\n')
        r = self.run_checker()
        self.assertEqual(r.returncode, 1)
        self.assertIn("include circle: server/left -> server/right -> server/left", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=1)
