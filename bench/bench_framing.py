"""Framing benchmark: bytes on the wire per payload byte against the 1.03 target, and the cost of
spoolbus.frame against the `cobs` C extension + zlib.crc32 (CPython) and against the envelope codec
and built-in json (MicroPython).

Run: .venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/bench_framing.py [--quick]
Prints Markdown tables (overhead exact; times in microseconds, best of 5 rounds) with the ratios.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import subprocess
import time
import zlib

from cobs import cobs
from mp_timing import ENVELOPE as WIRE_MAP
from spoolbus import cbor, frame, wire

ROOT = pathlib.Path(__file__).resolve().parents[1]
MICROPYTHON = os.environ.get("SPOOLBUS_MICROPYTHON", str(ROOT / ".cache/micropython-1.25.0/bin/micropython"))
TARGET = 1.03
ENVELOPE = wire.decode(cbor.dumps(WIRE_MAP))  # the call bench_codec times

# Run by MicroPython: best of 5 rounds of N operations; prints "name us" lines.
_MP_SPEED = """
import sys, json
sys.path.insert(0, %(runtime)r)
sys.path.insert(0, %(bench)r)
from spoolbus import cbor, frame, wire
from mp_timing import ENVELOPE as WIRE_MAP, best as timed, str_keys
env = wire.decode(cbor.dumps(WIRE_MAP))
N = %(n)d
def best(name, f, x):
    print(name, timed(f, x, N))
data = wire.encode(env)
p256 = bytes((i * 7 + 1) %% 256 or 1 for i in range(256))
dec = frame.Decoder()
jenv = str_keys(WIRE_MAP)
js = json.dumps(jenv)
best("frame.encode(envelope)", frame.encode, data)
best("frame.decode(envelope)", dec.feed, frame.encode(data))
best("frame.encode(256)", frame.encode, p256)
best("frame.decode(256)", dec.feed, frame.encode(p256))
best("wire.encode", wire.encode, env)
best("wire.decode", wire.decode, data)
best("json.dumps", json.dumps, jenv)
best("json.loads", json.loads, js)
stream = frame.encode(data) * 16
chunks = [stream[i:i + 64] for i in range(0, len(stream), 64)]
def feed_chunks(cs):
    for c in cs:
        dec.feed(c)
best("decode 16 frames in 64-byte chunks", feed_chunks, chunks)
"""


ENV_FRAME = len(frame.encode(wire.encode(ENVELOPE)))


def _best(fn, arg, n: int) -> float:
    """Microseconds per call, best of 5 rounds of n calls."""
    fn(arg)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn(arg)
        best = min(best, time.perf_counter() - t)
    return best / n * 1e6


def _peer_encode(p: bytes) -> bytes:
    return cobs.encode(p + zlib.crc32(p).to_bytes(4, "little")) + b"\x00"


def _peer_decode(f: bytes) -> bytes | None:
    d = cobs.decode(f[:-1])
    p = d[:-4]
    return p if zlib.crc32(p).to_bytes(4, "little") == d[-4:] else None


def overhead() -> list[tuple[str, int, int, float]]:
    rng = random.Random(1)
    rows = []
    cases = [
        ("256 B random", [rng.randbytes(256) for _ in range(1000)], 0),
        ("256 B, no zero bytes (worst case)", [bytes(rng.randrange(1, 256) for _ in range(256))], 0),
        ("256 B random, leading 0x00 on every frame", [rng.randbytes(256) for _ in range(1000)], 1),
        ("256 B, 8 frames a write, one leading 0x00", [rng.randbytes(256) for _ in range(1000)], 1 / 8),
        ("envelope", [wire.encode(ENVELOPE)], 0),
        ("1024 B random", [rng.randbytes(1024) for _ in range(200)], 0),
    ]
    for name, payloads, lead in cases:
        wire_bytes = max(len(frame.encode(p)) for p in payloads) + lead
        n = len(payloads[0])
        rows.append((name, n, wire_bytes, wire_bytes / n))
    return rows


def cpython_speed(n: int) -> list[tuple[str, float, float]]:
    env = wire.encode(ENVELOPE)
    p256 = random.Random(2).randbytes(256)
    rows = []
    for name, p in ((f"envelope ({len(env)} B)", env), ("256 B", p256)):
        f = frame.encode(p)
        assert _peer_encode(p) == f and _peer_decode(f) == p  # same bytes as the reference COBS
        dec = frame.Decoder()
        rows.append((f"encode {name}", _best(frame.encode, p, n), _best(_peer_encode, p, n)))
        rows.append((f"decode {name}", _best(dec.feed, f, n), _best(_peer_decode, f, n)))
    return rows


def micropython_speed(n: int, heap: str) -> dict[str, float]:
    src = _MP_SPEED % {"runtime": str(ROOT / "runtime"), "bench": str(ROOT / "bench"), "n": n}
    cmd = [MICROPYTHON, "-X", f"heapsize={heap}", "-c", src]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = {}
    for line in out.splitlines():
        name, _, us = line.rpartition(" ")
        result[name] = float(us)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    args = ap.parse_args()
    n = 2000 if args.quick else 20000

    print("### Overhead (bytes on the wire per payload byte; target <= 1.03 for 256-byte payloads)\n")
    print("| payload | payload bytes | wire bytes (max) | wire / payload | vs 1.03 target |")
    print("| --- | --- | --- | --- | --- |")
    for name, size, on_wire, ratio in overhead():
        print(f"| {name} | {size} | {on_wire:g} | {ratio:.4f} | {ratio / TARGET:.3f}x |")

    print("\n### CPython: spoolbus.frame vs cobs (C extension) + zlib.crc32, same bytes\n")
    print("| operation | spoolbus.frame us | cobs+zlib us | ratio |")
    print("| --- | --- | --- | --- |")
    for name, ours, peer in cpython_speed(n):
        print(f"| {name} | {ours:.2f} | {peer:.2f} | {ours / peer:.1f}x |")

    heaps = ("2M", "256k")  # the unix port's default heap, and a board-sized one
    mp = {h: micropython_speed(n // 4, h) for h in heaps}
    print("\n### MicroPython 1.25 (unix port): framing against the envelope codec and built-in json\n")
    print("| operation | us, 2 MB heap | us, 256 KB heap |")
    print("| --- | --- | --- |")
    for name in mp[heaps[0]]:
        print(f"| {name} | {mp[heaps[0]][name]:.1f} | {mp[heaps[1]][name]:.1f} |")
    for h in heaps:
        r = mp[h]
        codec = r["wire.encode"] + r["wire.decode"]
        js = r["json.dumps"] + r["json.loads"]
        framing = r["frame.encode(envelope)"] + r["frame.decode(envelope)"]
        per_frame = r["decode 16 frames in 64-byte chunks"] / 16
        print(
            f"\n{h} heap: frame encode+decode of the envelope {framing:.1f} us = {framing / codec:.2f}x "
            f"wire encode+decode ({codec:.1f} us) = {framing / js:.2f}x json dumps+loads ({js:.1f} us); "
            f"stream decode in 64-byte chunks {per_frame:.1f} us a frame "
            f"({ENV_FRAME / per_frame:.2f} MB/s)"
        )


if __name__ == "__main__":
    main()
