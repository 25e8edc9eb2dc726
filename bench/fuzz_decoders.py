"""Long fuzz run of spoolbus decoders: only each decoder's typed error may ever escape.

Usage: .venv/bin/python bench/fuzz_decoders.py [N] [--seed S] [--only NAME]
Feeds N random and mutated inputs to every decoder in DECODERS and prints, per decoder, how many
inputs were accepted or rejected, the slowest input, and every input that raised anything else
(saved under /tmp/spoolbus-fuzz-*.bin). Exit status 1 if any did.

To fuzz another decoder, append (name, decode_fn, error_type, seed_corpus) to DECODERS: decode_fn
takes bytes; error_type is the one exception it may raise; seed_corpus is a list of valid inputs.
"""

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime"))

from spoolbus import cbor, frame, wire  # noqa: E402
from spoolbus.errors import CBORDecodeError, DecodeError  # noqa: E402

_CBOR_SEEDS = [
    cbor.dumps(v)
    for v in (
        {0: [1, 0], 1: 0, 2: 12345, 3: "sensor-1", 4: "controller", 5: "thermo.read", 6: "1.2",
         7: {"unit": "C", "samples": [21.5, 21.7]}, 8: 1764000000000},
        {0: [1, 0], 1: 3, 2: 7, 9: 6, 7: {"type": "Timeout", "message": "no reply", "details": None}},
        [0, -1, 23, 24, 255, 256, 65535, 65536, 2**32, 2**64 - 1, -(2**64)],
        [0.0, -0.0, 1.5, 65504.0, 1e-7, 1.1, float("inf"), float("nan"), 2.0**-24],
        {"": b"", "a": [True, False, None], "\u00fc\u6c34\U00010151": {b"k": [[[[]]]]}},
        [b"x" * 30, "y" * 300, list(range(30)), {i: i for i in range(30)}],
    )
]


def _decode_cbor(data):
    return cbor.loads(data, max_size=4096, max_depth=16, max_items=1024)


def _envelope(**fields):
    return wire.encode(wire.Envelope(**fields))


_WIRE_SEEDS = [
    _envelope(kind=wire.CALL, id=12345, src="sensor-1", dst="controller", method="thermo.read", version="1.2",
              body={"unit": "C", "samples": [21.5, 21.7]}, deadline=1764000000000, sig=b"\x5a" * 32,
              seq=[0xDEADBEEF, 42]),
    _envelope(kind=wire.ERROR, id=7, src="controller", reply_to=6,
              body=wire.error_body("Timeout", "no reply", {"after_ms": 2000})),
    _envelope(kind=wire.NOTIFY, id=1, src="door", method="door.opened", version="1.0", body=[1, 2]),
    _envelope(kind=wire.HELLO, id=0, src="board-3", body={"services": {"thermo": "1.3"}}),
    cbor.dumps({0: [1, 4], 1: 2, 2: 9, 3: "a", 7: None, 9: 8, 12: "newer minor", 300: [b"x"]}),
    cbor.dumps({0: [2, 0], 1: 0, 2: 6, 3: "new-board", 7: None}),
]


class NoFrame(Exception):
    """The frame decoder delivered nothing (it never raises: this marks a rejected input here)."""


_FRAME_PAYLOADS = _WIRE_SEEDS + _CBOR_SEEDS + [b"", bytes(600), bytes(range(1, 256)) * 2]
_FRAME_SEEDS = [frame.encode(p) for p in _FRAME_PAYLOADS] + [
    b"boot banner\r\n>>> \x00" + frame.encode(_WIRE_SEEDS[0])
    + b"print()\r\n\x00" + frame.encode(_WIRE_SEEDS[1]),
    b"".join(frame.encode(p) for p in _WIRE_SEEDS),
]


def _decode_frames(data):
    """Feed `data` in two chunks; a delivered payload that was never framed is a corrupt frame let through."""
    dec = frame.Decoder(max_frame=1024)
    cut = len(data) * 7 // 16
    got = dec.feed(data[:cut]) + dec.feed(data[cut:])
    for p in got:
        if p not in _FRAME_PAYLOADS:
            raise AssertionError(f"frame decoder delivered a payload nobody sent: {p[:40]!r}")
    if not got:
        raise NoFrame()
    return got


DECODERS = [
    ("cbor.loads", _decode_cbor, CBORDecodeError, _CBOR_SEEDS),
    ("frame.Decoder", _decode_frames, NoFrame, _FRAME_SEEDS),
    ("wire.decode", wire.decode, DecodeError, _WIRE_SEEDS),
]

# Bytes that make a head claim something: huge lengths, indefinite lengths, breaks, tags, floats.
_INTERESTING = bytes([0x18, 0x19, 0x1A, 0x1B, 0x1F, 0x3B, 0x5B, 0x5F, 0x7B, 0x7F, 0x9B, 0x9F, 0xBB,
                      0xBF, 0xC0, 0xD8, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFF, 0x00, 0x80, 0xA0, 0xC3])


def mutate(rng, corpus):
    """One fuzz input: random bytes, or a corpus entry with a few random edits or a splice."""
    if rng.random() < 0.1:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
    data = bytearray(rng.choice(corpus))
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(7)
        p = rng.randrange(len(data) + 1)
        if op == 0 and p < len(data):
            data[p] = rng.getrandbits(8)
        elif op == 1 and p < len(data):
            data[p] ^= 1 << rng.randrange(8)
        elif op == 2:
            del data[p:p + rng.randrange(1, 9)]
        elif op == 3:
            data[p:p] = bytes([rng.choice(_INTERESTING)]) + b"\xff" * rng.randrange(9)
        elif op == 4:
            del data[p:]
        elif op == 5:
            other = rng.choice(corpus)
            q = rng.randrange(len(other) + 1)
            data[p:] = other[q:]
        elif p < len(data):
            data[p] = rng.choice(_INTERESTING)
    return bytes(data)


def fuzz(name, decode, error_type, corpus, n, rng):
    accepted = rejected = 0
    escaped = []
    slowest = (0.0, b"")
    for _ in range(n):
        data = mutate(rng, corpus)
        t = time.perf_counter()
        try:
            decode(data)
            accepted += 1
        except error_type:
            rejected += 1
        except BaseException as e:  # noqa: BLE001 - anything else is the bug this run looks for
            if isinstance(e, KeyboardInterrupt):
                raise
            path = f"/tmp/spoolbus-fuzz-{name}-{len(escaped)}.bin"
            with open(path, "wb") as f:
                f.write(data)
            escaped.append((type(e).__name__, str(e)[:80], path))
        dt = time.perf_counter() - t
        if dt > slowest[0]:
            slowest = (dt, data)
    return accepted, rejected, escaped, (_retime(decode, error_type, slowest[1]), slowest[1])


def _retime(decode, error_type, data):
    """Best of 5 for the slowest input: a GC pause or a busy machine is not a slow input."""
    best = 1.0
    for _ in range(5):
        t = time.perf_counter()
        try:
            decode(data)
        except error_type:
            pass
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=200000, help="inputs per decoder")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", help="fuzz only the decoder with this name")
    args = ap.parse_args(argv)
    failed = False
    for name, decode, error_type, corpus in DECODERS:
        if args.only and name != args.only:
            continue
        rng = random.Random(args.seed)
        t0 = time.perf_counter()
        accepted, rejected, escaped, slowest = fuzz(name, decode, error_type, corpus, args.n, rng)
        took = time.perf_counter() - t0
        print(f"{name:14} {args.n} inputs in {took:.1f} s: {accepted} accepted, {rejected} rejected with "
              f"{error_type.__name__}, {len(escaped)} escaped; slowest input {slowest[0] * 1e6:.0f} us "
              f"({slowest[1][:24].hex()}...)")
        for kind, msg, path in escaped:
            print(f"  ESCAPED {kind}: {msg}  (input saved in {path})")
        failed = failed or bool(escaped)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
