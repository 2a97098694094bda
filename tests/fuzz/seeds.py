#!/usr/bin/env python3
"""Writes the fuzz target's seed corpus (tests/fuzz/corpus): requests for
every endpoint, pipelined, chunked, split, and each kind of malformed input
the rejection table covers, over each transport of the target. Byte 0 of
each seed: bit 0 the mode, bits 1-4 the number of split points that follow,
bits 5-7 the transport (fuzz_conn.c: half-close, slow reader, failing
writes, deadlines). Files named crash-* are inputs that once crashed the
target: kept, never rewritten here."""
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
    "chunk-ext": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5 ;a=b; c = \"q\\\"s\"\r\nhello\r\n0;z\r\n\r\n",
    "chunk-ext-long": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"1;" + b"e" * 5000 + b"\r\na\r\n0\r\n\r\n",
    "te-gzip": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "http10-te": b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "empty-name": b"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n",
    "unknown-method": b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
    "options": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "echo-html": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/html\r\nContent-Length: 8\r\n\r\n<b>x</b>",
    "expect-pipelined": b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "behind-upstream": b"GET /upstream/x HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n" * 8,
    "half-head": b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\nHo",
    "half-body": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234",
    # Paths that go upstream (handlers/target.h) and requests pending when the connection goes.
    "upstream-trailer": b"GET /upstream/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"0\r\nX-T: y\r\n\r\n",
    "upstream-dots": b"GET /upstream/a/./b/../c%41%c3?x=%2F HTTP/1.1\r\nHost: x\r\n\r\n",
    "upstream-refused": b"GET /upstream/..%2Fa%5c#f HTTP/1.1\r\nHost: x\r\n\r\n",
    "cache-escapes": b"GET /cache/k%41 HTTP/1.1\r\nHost: x\r\n\r\nGET /cache/%2e%2e HTTP/1.1\r\nHost: x\r\n\r\n",
    "upstream-pipelined": b"GET /upstream/x HTTP/1.1\r\nHost: x\r\n\r\nGET /cache/k HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n",
}
# Transports (bits 5-7 of byte 0), each over a few seeds that reach it.
transports = {"halfclose": 1, "slow": 2, "fail1": 3, "fail2": 4, "fail3": 5, "slowclose": 6,
              "deadlines": 7}
transport_seeds = ["pipelined", "expect", "expect-pipelined", "behind-upstream", "half-head",
                   "half-body", "echo-chunked", "cache", "upstream-pipelined"]
os.makedirs(here, exist_ok=True)
for name, body in seeds.items():
    for mode in (0, 1):
        with open(os.path.join(here, f"{name}-{mode}"), "wb") as f:
            f.write(bytes([mode]) + body)
    # one split variant: three cut points
    with open(os.path.join(here, f"{name}-split"), "wb") as f:
        f.write(bytes([(3 << 1) | 0, 40, 128, 200]) + body)
for name in transport_seeds:
    for tname, t in transports.items():
        for mode in (0, 1):
            with open(os.path.join(here, f"{name}-{tname}-{mode}"), "wb") as f:
                f.write(bytes([(t << 5) | (2 << 1) | mode, 60, 180]) + seeds[name])
print(f"{len(os.listdir(here))} seeds in {here}")
