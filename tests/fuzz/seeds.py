#!/usr/bin/env python3
"""Writes the fuzz target's seed corpus (tests/fuzz/corpus): requests for
every endpoint, pipelined, chunked, split, and each kind of malformed input
the rejection table covers. Byte 0 of each seed: bit 0 the mode, bits 1-4
the number of split points that follow."""
import os

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
seeds = {
    "plaintext": b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n",
    "json": b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n",
    "head": b"HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\n",
    "index": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "stats": b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n",
    "metrics": b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    "advice": b"GET /advice HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
    "dashboard": b"GET /dashboard HTTP/1.1\r\nHost: x\r\n\r\n",
    "dashboard-data": b"GET /dashboard/data HTTP/1.1\r\nHost: x\r\n\r\n",
    "cache": b"GET /cache/k HTTP/1.1\r\nHost: x\r\n\r\n",
    "upstream": b"GET /upstream/items/x?a=b HTTP/1.1\r\nHost: x\r\n\r\n",
    "echo": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    "echo-chunked": b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
    "expect": b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "pipelined": b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n" * 4 + b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n",
    "http10": b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "request-id": b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123\r\n\r\n",
    "not-found": b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    "method": b"DELETE /plaintext HTTP/1.1\r\nHost: x\r\n\r\n",
    "cl-te": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad-chunk": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "version": b"GET / HTTP/2.0\r\n\r\n",
    "upgrade": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    "smuggle": b"POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 28\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n",
    "long-line": b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "many-headers": b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(25)) + b"\r\n",
}
os.makedirs(here, exist_ok=True)
for name, body in seeds.items():
    for mode in (0, 1):
        with open(os.path.join(here, f"{name}-{mode}"), "wb") as f:
            f.write(bytes([mode]) + body)
    # one split variant: three cut points
    with open(os.path.join(here, f"{name}-split"), "wb") as f:
        f.write(bytes([(3 << 1) | 0, 40, 128, 200]) + body)
print(f"{len(os.listdir(here))} seeds in {here}")
