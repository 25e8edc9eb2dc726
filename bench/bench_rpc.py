"""RPC round trips per second between two processes over the spool, against a bare spool ping-pong.

Run: .venv/bin/python bench/bench_rpc.py [--count N] [--rounds R]
For CPython<->CPython and MicroPython<->MicroPython, two processes (bench/rpc_worker.py) exchange COUNT
messages: a bare put/claim/ack ping-pong through SpoolTransport (the transport's limit), then node.call
round trips without and with HMAC signing, all polling their inbox every 1 ms (the default); each
figure is the median of ROUNDS interleaved runs. Then the cost of signing and verifying one envelope,
measured in-process on each interpreter, as a fraction of a signed round trip.
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = ROOT / "bench" / "rpc_worker.py"
MICROPYTHON = os.environ.get("SPOOLBUS_MICROPYTHON", str(ROOT / ".cache/micropython-1.25.0/bin/micropython"))
INTERPRETERS = {"CPython": [sys.executable], "MicroPython": [MICROPYTHON]}
ENV = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime", PYTHONPATH=f"{ROOT}/runtime")

SIGN_COST = """
import time
from spoolbus import auth, wire
KEYS = {"client": b"bench client key", "server": b"bench server key"}
a, b = auth.Auth("client", KEYS), auth.Auth("server", KEYS)
now = time.ticks_us if hasattr(time, "ticks_us") else lambda: int(time.perf_counter() * 1e6)
diff = time.ticks_diff if hasattr(time, "ticks_diff") else lambda x, y: x - y
N = 400
envs = []
for i in range(N):
    envs.append(wire.Envelope(kind=wire.CALL, id=i, src="client", dst="server", method="echo.echo",
                              version="1.0", body={"x": {"sensor": "t0", "value": 21.5, "seq": 0}},
                              seq=[7, i + 1]))
t0 = now()
for e in envs:
    a.sign(e)
t1 = now()
for e in envs:
    assert b.check(e) is None
t2 = now()
print("%d %d" % (diff(t1, t0) // N, diff(t2, t1) // N))
"""


def _pair(interp: list[str], mode: str, count: int, poll_ms: int, signed: int) -> float:
    """Seconds the client took for `count` round trips (after warm-up)."""
    d = tempfile.mkdtemp(prefix="bench-rpc-")
    try:
        args = [str(count), str(poll_ms), str(signed)]
        server = subprocess.Popen(interp + [str(WORKER), d, f"{mode}-server"] + args, env=ENV)
        out = subprocess.run(interp + [str(WORKER), d, f"{mode}-client"] + args, env=ENV, check=True,
                             capture_output=True, text=True, timeout=600).stdout
        server.wait(60)
        return float(out.strip())
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _sign_cost(interp: list[str]) -> tuple[int, int]:
    out = subprocess.run(interp + ["-c", SIGN_COST], env=ENV, check=True, capture_output=True,
                         text=True).stdout
    sign, verify = out.split()
    return int(sign), int(verify)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    opts = ap.parse_args()
    configs = [("raw", 0, "bare put/claim/ack ping-pong (limit)"), ("rpc", 0, "node.call"),
               ("rpc", 1, "node.call, signed")]
    print("| peers | what | round trips/s | vs bare ping-pong |")
    print("| --- | --- | ---: | ---: |")
    fractions = []
    for name, interp in INTERPRETERS.items():
        times: dict[tuple[str, int], list[float]] = {(m, s): [] for m, s, _ in configs}
        for _ in range(opts.rounds):
            for mode, signed, _ in configs:
                times[(mode, signed)].append(_pair(interp, mode, opts.count, 1, signed))
        rate = {k: opts.count / statistics.median(v) for k, v in times.items()}
        for mode, signed, label in configs:
            r = rate[(mode, signed)]
            print(f"| {name}<->{name} | {label} | {r:,.0f} | {r / rate[('raw', 0)]:.2f}x |")
        sign_us, verify_us = _sign_cost(interp)
        fractions.append((name, sign_us, verify_us, 1e6 / rate[("rpc", 1)]))
    print()
    print("| interpreter | sign one envelope | verify one | per round trip (2 messages) | share of a signed "
          "round trip |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, s, v, rtt in fractions:
        per_rt = 2 * (s + v)
        print(f"| {name} | {s} us | {v} us | {per_rt} us | {per_rt / rtt:.0%} of {rtt:,.0f} us |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
