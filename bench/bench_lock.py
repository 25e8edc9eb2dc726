"""Uncontended acquire+release: spoolbus.Lock against the filelock package and raw flock, in one run.

Run: .venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/bench_lock.py [--cycles N] [--dir DIR]
Prints a Markdown table (microseconds per acquire+release, best of 5 interleaved rounds) and the ratios the
issue asks for. By default it runs on /tmp and on /dev/shm (tmpfs), and times spoolbus.Lock under
MicroPython too.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pathlib
import subprocess
import tempfile
import time

import filelock
from spoolbus.lock import Lock

ROOT = pathlib.Path(__file__).resolve().parents[1]
MICROPYTHON = os.environ.get("SPOOLBUS_MICROPYTHON", str(ROOT / ".cache/micropython-1.25.0/bin/micropython"))
ROUNDS = 5

MP_SCRIPT = """
import sys, time
from spoolbus.lock import Lock
lk = Lock(sys.argv[1])
n = int(sys.argv[2])
best = None
for _ in range(int(sys.argv[3])):
    t = time.ticks_us()
    for _ in range(n):
        lk.acquire()
        lk.release()
    dt = time.ticks_diff(time.ticks_us(), t)
    best = dt if best is None or dt < best else best
print(best / n)
"""


def _best(cycles: list[tuple[str, object]], n: int) -> list[tuple[str, float]]:
    """Microseconds per call of each cycle, best of ROUNDS rounds of n calls; the rounds of all the locks
    interleave, so that a change of machine load hits every lock alike."""
    best = {name: float("inf") for name, _ in cycles}
    for _, cycle in cycles:
        cycle()
    for _ in range(ROUNDS):
        for name, cycle in cycles:
            t = time.perf_counter()
            for _ in range(n):
                cycle()
            best[name] = min(best[name], time.perf_counter() - t)
    return [(name, best[name] / n * 1e6) for name, _ in cycles]


def _spoolbus(d: str):
    lk = Lock(d + "/spoolbus.lock")

    def cycle():
        lk.acquire()
        lk.release()

    return cycle


def _filelock(d: str, cls):
    lk = cls(d + "/" + cls.__name__ + ".lock")

    def cycle():
        lk.acquire()
        lk.release()

    return cycle


def _flock(d: str):
    fd = os.open(d + "/flock.lock", os.O_RDWR | os.O_CREAT, 0o644)

    def cycle():
        fcntl.flock(fd, fcntl.LOCK_EX)
        fcntl.flock(fd, fcntl.LOCK_UN)

    return cycle


def _two_renames(d: str):
    """The floor of spoolbus's scheme: the two renames an uncontended cycle costs, nothing else."""
    a, b = d + "/r/a", d + "/r/b"
    os.mkdir(d + "/r")
    open(a, "w").close()

    def cycle():
        os.rename(a, b)
        os.rename(b, a)

    return cycle


def _micropython(d: str, n: int) -> float | None:
    if not os.path.exists(MICROPYTHON):
        return None
    env = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen")
    cmd = [MICROPYTHON, "-c", MP_SCRIPT, d + "/mp.lock", str(n), str(ROUNDS)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return float(out)


def run(d: str, n: int) -> list[tuple[str, float]]:
    rows = _best([
        ("spoolbus.Lock (CPython)", _spoolbus(d)),
        ("filelock.FileLock", _filelock(d, filelock.FileLock)),
        ("filelock.SoftFileLock", _filelock(d, filelock.SoftFileLock)),
        ("raw flock, fd kept open (no owner, no staleness)", _flock(d)),
        ("limit of the scheme: two os.rename", _two_renames(d)),
    ], n)
    mp = _micropython(d, n)
    if mp is not None:
        rows.append(("spoolbus.Lock (MicroPython unix port)", mp))
    return rows


def _fs_type(d: str) -> str:
    best = ("?", "")
    with open("/proc/mounts") as f:
        for line in f:
            dev, point, fstype = line.split()[:3]
            if d.startswith(point) and len(point) > len(best[1]):
                best = (fstype, point)
    return best[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=5000, help="acquire+release cycles a round (default 5000)")
    ap.add_argument("--dir", action="append", help="directory to run in (repeatable; default /tmp, /dev/shm)")
    args = ap.parse_args()
    dirs = args.dir or [d for d in ("/tmp", "/dev/shm") if os.path.isdir(d)]
    for base in dirs:
        with tempfile.TemporaryDirectory(dir=base) as d:
            rows = run(d, args.cycles)
        ours = rows[0][1]
        print(f"\n{base} ({_fs_type(os.path.realpath(base))}), {args.cycles} cycles x best of {ROUNDS}\n")
        print("| lock | µs per acquire+release | time ÷ spoolbus.Lock |")
        print("| --- | ---: | ---: |")
        for name, us in rows:
            print(f"| {name} | {us:.1f} | {us / ours:.2f}x |")
        print(f"\nratio FileLock/spoolbus = {rows[1][1] / ours:.1f}x, SoftFileLock/spoolbus = "
              f"{rows[2][1] / ours:.1f}x (target: at least 4x)")


if __name__ == "__main__":
    main()
