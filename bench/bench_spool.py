"""put+claim+ack through spoolbus.Spool against kombu's filesystem transport, persist-queue and raw files.

Run: .venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/bench_spool.py [--dir D] [--durable-dir D]
One producer and one consumer (two handles in one process) cycle put, claim, ack with 200-byte messages
while a backlog of 0, 1,000 or 10,000 messages waits ahead of them; the same loop runs over kombu's
filesystem transport, persist-queue's file Queue and SQLiteAckQueue, and over the limit: a raw loop
of os.open+write, rename into new/, rename into cur/, os.open+read, unlink (no listing, no checks).
Then durable mode: put_many in batches of 100 (one syncfs) against a per-message loop of write, fsync,
rename, fsync dir.
Prints Markdown tables and the ratios against each peer (best of ROUNDS interleaved rounds).
Throughput runs on tmpfs (/dev/shm) by default: on a shared disk, other processes' journal commits
make unlink and rename wait for milliseconds and drown the differences between the queues. The
durable part needs a real disk (syncfs on tmpfs does nothing): /tmp by default.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import tempfile
import time

import persistqueue
from kombu import Connection
from spoolbus.spool import Spool

PAYLOAD = b"x" * 200
ROUNDS = 3


def _fresh(base: pathlib.Path, name: str) -> pathlib.Path:
    d = base / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


class SpoolQ:
    name = "spoolbus Spool"

    def __init__(self, d: pathlib.Path) -> None:
        self.prod = Spool(str(d))
        self.cons = Spool(str(d))

    def fill(self, n: int) -> None:
        for i in range(0, n, 1000):
            self.prod.put_many([PAYLOAD] * min(1000, n - i))

    def cycle(self) -> None:
        self.prod.put(PAYLOAD)
        mid, _ = self.cons.claim()
        self.cons.ack(mid)


class Raw:
    name = "raw write+rename (limit)"

    def __init__(self, d: pathlib.Path) -> None:
        self.d = str(d)
        for sub in ("tmp", "new", "cur"):
            os.mkdir(f"{self.d}/{sub}")
        self.put = 0
        self.got = 0

    def fill(self, n: int) -> None:
        for _ in range(n):
            self._put()

    def _put(self) -> None:
        name = f"{self.put:016d}"
        self.put += 1
        fd = os.open(f"{self.d}/tmp/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, PAYLOAD)
        os.close(fd)
        os.rename(f"{self.d}/tmp/{name}", f"{self.d}/new/{name}")

    def cycle(self) -> None:
        self._put()
        name = f"{self.got:016d}"  # the consumer knows the next name: no listing at all
        self.got += 1
        os.rename(f"{self.d}/new/{name}", f"{self.d}/cur/{name}")
        fd = os.open(f"{self.d}/cur/{name}", os.O_RDONLY)
        os.read(fd, 65536)
        os.close(fd)
        os.remove(f"{self.d}/cur/{name}")


class PQFile:
    name = "persist-queue Queue (file)"

    def __init__(self, d: pathlib.Path) -> None:
        self.q = persistqueue.Queue(str(d / "q"), tempdir=str(d))

    def fill(self, n: int) -> None:
        for _ in range(n):
            self.q.put(PAYLOAD)

    def cycle(self) -> None:
        self.q.put(PAYLOAD)
        self.q.get()
        self.q.task_done()


class PQSqliteAck:
    name = "persist-queue SQLiteAckQueue"

    def __init__(self, d: pathlib.Path) -> None:
        self.q = persistqueue.SQLiteAckQueue(str(d / "q"), multithreading=False, auto_commit=True)

    def fill(self, n: int) -> None:
        for _ in range(n):
            self.q.put(PAYLOAD)

    def cycle(self) -> None:
        self.q.put(PAYLOAD)
        item = self.q.get(block=False)
        self.q.ack(item)


class Kombu:
    name = "kombu filesystem transport"

    def __init__(self, d: pathlib.Path) -> None:
        opts = {"data_folder_in": str(d), "data_folder_out": str(d), "store_processed": False}
        self.conn = Connection(transport="filesystem", transport_options=opts)
        self.q = self.conn.SimpleQueue("bench")

    def fill(self, n: int) -> None:
        for _ in range(n):
            self.q.put(PAYLOAD)

    def cycle(self) -> None:
        self.q.put(PAYLOAD)
        self.q.get(block=False).ack()


# Cycles per round for each peer and backlog: enough for a stable rate, few where a peer is slow.
CYCLES = {
    SpoolQ: {0: 4000, 1000: 4000, 10000: 4000},
    Raw: {0: 4000, 1000: 4000, 10000: 4000},
    PQFile: {0: 3000, 1000: 3000, 10000: 3000},
    PQSqliteAck: {0: 1500, 1000: 1500, 10000: 1500},
    Kombu: {0: 1000, 1000: 300, 10000: 60},
}


def throughput(base: pathlib.Path, backlogs: list[int], scale: float) -> dict:
    rates: dict = {}
    for backlog in backlogs:
        queues = {}
        for cls in CYCLES:
            q = cls(_fresh(base, f"{cls.__name__}-{backlog}"))
            q.fill(backlog)
            queues[cls] = q
        for _ in range(ROUNDS):
            for cls, q in queues.items():
                n = max(10, int(CYCLES[cls][backlog] * scale))
                t = time.perf_counter()
                for _ in range(n):
                    q.cycle()
                rate = n / (time.perf_counter() - t)
                key = (cls, backlog)
                rates[key] = max(rates.get(key, 0.0), rate)
        for cls in CYCLES:
            shutil.rmtree(base / f"{cls.__name__}-{backlog}", ignore_errors=True)
    return rates


def _fsync_loop(d: pathlib.Path, n: int) -> float:
    for sub in ("tmp", "new"):
        (d / sub).mkdir()
    dfd = os.open(d / "new", os.O_RDONLY)
    t = time.perf_counter()
    for i in range(n):
        tmp, new = f"{d}/tmp/{i}", f"{d}/new/{i}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, PAYLOAD)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, new)
        os.fsync(dfd)
    rate = n / (time.perf_counter() - t)
    os.close(dfd)
    return rate


def durable(base: pathlib.Path, n: int, batch: int = 100) -> dict:
    best = {"loop": 0.0, "put_many": 0.0, "put": 0.0}
    for _ in range(ROUNDS):
        best["loop"] = max(best["loop"], _fsync_loop(_fresh(base, "fsync-loop"), n))
        s = Spool(str(_fresh(base, "durable")), durable=True)
        t = time.perf_counter()
        for _ in range(n // batch):
            s.put_many([PAYLOAD] * batch)
        best["put_many"] = max(best["put_many"], n // batch * batch / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(n // 4):
            s.put(PAYLOAD)
        best["put"] = max(best["put"], n // 4 / (time.perf_counter() - t))
        s.close()
    shutil.rmtree(base / "fsync-loop", ignore_errors=True)
    shutil.rmtree(base / "durable", ignore_errors=True)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="where the queues live (default: one in /dev/shm)")
    ap.add_argument("--durable-dir", default=None, help="a disk for durable mode (default: one in /tmp)")
    ap.add_argument("--quick", action="store_true", help="a tenth of the cycles, for a smoke run")
    args = ap.parse_args()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    base = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="bench-spool-", dir=shm))
    disk = pathlib.Path(args.durable_dir or tempfile.mkdtemp(prefix="bench-spool-durable-", dir="/tmp"))
    scale = 0.1 if args.quick else 1.0
    backlogs = [0, 1000, 10000]
    started = time.perf_counter()
    rates = throughput(base, backlogs, scale)
    print(f"put+claim+ack, 200-byte messages, one producer and one consumer, in {base} "
          f"(msg/s, best of {ROUNDS})\n")
    print("| backlog | " + " | ".join(c.name for c in CYCLES) + " |")
    print("|---" * (len(CYCLES) + 1) + "|")
    for b in backlogs:
        print(f"| {b:,} | " + " | ".join(f"{rates[(c, b)]:,.0f}" for c in CYCLES) + " |")
    print("\n| backlog | vs persist-queue file | vs SQLiteAckQueue | vs kombu filesystem | vs raw limit |")
    print("|---|---|---|---|---|")
    for b in backlogs:
        s = rates[(SpoolQ, b)]
        print(f"| {b:,} | {s / rates[(PQFile, b)]:.1f}x | {s / rates[(PQSqliteAck, b)]:.1f}x | "
              f"{s / rates[(Kombu, b)]:.0f}x | {s / rates[(Raw, b)]:.2f}x |")
    d = durable(disk, max(200, int(2000 * scale)))
    print(f"\nDurable (on disk when put returns), 200-byte messages, in {disk} (msg/s):\n")
    print("| per-message loop: write, fsync, rename, fsync dir | Spool.put_many, batches of 100 | ratio "
          "| Spool.put (durable, one at a time) |")
    print("|---|---|---|---|")
    print(f"| {d['loop']:,.0f} | {d['put_many']:,.0f} | {d['put_many'] / d['loop']:.1f}x | {d['put']:,.0f} |")
    print(f"\ntargets at 10,000 backlog: >=2x persist-queue file: "
          f"{rates[(SpoolQ, 10000)] / rates[(PQFile, 10000)]:.1f}x, >=10x kombu: "
          f"{rates[(SpoolQ, 10000)] / rates[(Kombu, 10000)]:.0f}x, >=0.5x raw: "
          f"{rates[(SpoolQ, 10000)] / rates[(Raw, 10000)]:.2f}x; durable put_many >=3x loop: "
          f"{d['put_many'] / d['loop']:.1f}x  ({time.perf_counter() - started:.0f} s)")
    if not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    if not args.durable_dir:
        shutil.rmtree(disk, ignore_errors=True)


if __name__ == "__main__":
    main()
