"""One side of bench_rpc.py, for CPython or MicroPython: an RPC or a bare spool ping-pong peer.

Usage: rpc_worker.py ROOT MODE COUNT POLL_MS SIGNED, MODE in rpc-server, rpc-client, raw-server,
raw-client. Servers answer COUNT requests and exit; clients send them and print the seconds taken.
"""

import sys
import time

from spoolbus import contract, node
from spoolbus.transport.spool import SpoolTransport

WARMUP = 50
KEYS = {"server": b"bench server key", "client": b"bench client key"}
ECHO = contract.Service("echo", "1.0").method("echo", ("x", None))
PAYLOAD = {"sensor": "t0", "value": 21.5, "seq": 0}


def _now():
    return time.ticks_us() if hasattr(time, "ticks_us") else int(time.perf_counter() * 1e6)


def _elapsed_us(t0):
    return time.ticks_diff(_now(), t0) if hasattr(time, "ticks_diff") else _now() - t0


def main(root, mode, count, poll_ms, signed):
    total = count + WARMUP
    side = mode.split("-")[1]
    t = SpoolTransport(root, side, max_messages=1024, poll_ms=poll_ms)
    if mode.startswith("raw"):
        peer = "client" if side == "server" else "server"
        if side == "server":
            for _ in range(total):
                data = None
                while data is None:
                    data = t.recv(50)
                t.send(peer, data)
            return
        msg = bytes(120)
        t0 = _now()
        for i in range(total):
            if i == WARMUP:
                t0 = _now()
            t.send(peer, msg)
            while t.recv(50) is None:
                pass
        print("%.6f" % (_elapsed_us(t0) / 1e6))
        return
    nd = node.Node(side, t, keys=KEYS if signed else None, require=bool(signed), timeout=30,
                   dedup_size=16)
    if side == "server":
        served = [0]

        def echo(x):
            served[0] += 1
            return x

        nd.serve(ECHO, {"echo": echo})
        while served[0] < total:
            nd.poll(50)
        return
    t0 = _now()
    for i in range(total):
        if i == WARMUP:
            t0 = _now()
        nd.call("server", "echo.echo", {"x": PAYLOAD})
    print("%.6f" % (_elapsed_us(t0) / 1e6))


main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
