"""The benchmark envelope and best-of-5 timing, for bench_codec.py and bench_framing.py: plain Python that
their MicroPython scripts import (bench/ on the script's sys.path) and their CPython side reads too."""

import gc
import time

# A call from sensor-1 to controller as its wire map (integer keys): ~90 bytes of CBOR.
ENVELOPE = {0: [1, 0], 1: 0, 2: 12345, 3: "sensor-1", 4: "controller", 5: "thermo.read", 6: "1.2",
            7: {"unit": "C", "samples": [21.5, 21.7]}, 8: 1764000000000}


def str_keys(m):
    """The map with string keys, for json (which has no integer keys)."""
    out = {}
    for k in m:
        out[str(k)] = m[k]
    return out


def best(f, x, n):
    """Microseconds per f(x) under MicroPython: best of 5 rounds of n calls, each after a collection."""
    b = 1e9
    for _ in range(5):
        gc.collect()
        t = time.ticks_us()
        for _ in range(n):
            f(x)
        b = min(b, time.ticks_diff(time.ticks_us(), t) / n)
    return b
