"""Serial link benchmarks, every number next to its limit or peer in the same run.

- framing overhead (bytes on the wire / payload bytes) for 256-byte payloads;
- RPC round trip host <-> unix board and host <-> QEMU board over a pty, p50/p99;
- RPC goodput vs a raw frame echo over the same pty, same board, same run (ratio), with the bytes each
  sends to the board per message (their ratio bounds a link limited by bytes into the board);
- boot-to-first-RPC of the QEMU board;
- the noisy line: >= 100,000 frames at a 1e-3 bit-error rate through the fault proxy (no corrupt
  frame delivered), then calls over it (each completes exactly once or times out).

Run: .venv/bin/python bench/bench_serial.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

from spoolbus import errors, frame
from spoolbus_host.boards import profiles
from spoolbus_host.serialport import PySerialPort
from spoolbus_host.testing.faultproxy import FaultProxy
from spoolbus_host.testing.hil import Board

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "host"))
from noisy_line import take_all  # noqa: E402

# The payload the goodput target applies to: a bulk transfer fills most of a frame (max_frame 1024 B).
# At 256 B the envelope is a fifth of every call frame: see the byte ceiling column and docs/serial.md.
BULK = 900
PAIRS = 7  # alternated raw/RPC runs per row; a row's ratio is the median of the pairs' ratios


def framing_overhead() -> list[tuple[str, float]]:
    rng = random.Random(1)
    rows = []
    for label, payload in (
        ("random bytes", bytes(rng.randrange(256) for _ in range(256))),
        ("no zero bytes", bytes(rng.randrange(1, 256) for _ in range(256))),
        ("all zero bytes", bytes(256)),
    ):
        rows.append((label, len(frame.encode(payload)) / len(payload)))
    return rows


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


class _CountingPort:
    """The host's port with a count of the bytes written to the board (frames, pings and all)."""

    def __init__(self, port: PySerialPort) -> None:
        self.port = port
        self.written = 0

    def read_into(self, buf: bytearray, timeout_ms: int) -> int:
        return self.port.read_into(buf, timeout_ms)

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.written += len(data)

    def close(self) -> None:
        self.port.close()


def rtt(board: Board, n: int) -> tuple[float, float]:
    for i in range(5):  # warm-up: boot to first RPC is measured on its own (boot_to_first_rpc)
        board.call("board.add", {"a": i, "b": 1})
    times = []
    for i in range(n):
        t = time.perf_counter()
        board.call("board.add", {"a": i, "b": 1})
        times.append(time.perf_counter() - t)
    return _pct(times, 0.5) * 1000, _pct(times, 0.99) * 1000


def raw_echo_goodput(board: Board, size: int, n: int, window: int) -> float:
    """Payload bytes/s of frames echoed by the board's link (first byte 0x00: no node involved)."""
    link = board.link
    payload = b"\x00" + bytes(random.Random(2).randrange(256) for _ in range(size - 1))
    sent = got = 0
    t = time.perf_counter()
    while got < n:
        while sent < n and sent - got < window:
            link.send(None, payload)
            sent += 1
        data = link.recv(5000)
        if data is None:
            raise RuntimeError("raw echo: no answer within 5 s")
        if data[:1] != b"\x00":
            continue  # an envelope for the node (e.g. the board's hello), not an echo
        assert data == payload
        got += 1
    return n * size / (time.perf_counter() - t)


def rpc_goodput(board: Board, size: int, n: int, window: int) -> float:
    """Payload bytes/s of board.echo calls carrying `size` bytes, `window` calls in flight."""
    node = board.node
    payload = bytes(random.Random(3).randrange(256) for _ in range(size))
    tickets = []
    done = 0
    t = time.perf_counter()
    while done < n:
        while len(tickets) < window and done + len(tickets) < n:
            tickets.append(node.send_call(board.name, "board.echo", {"data": payload}, timeout=10))
        node.poll(100)
        while tickets and node.ready(tickets[0]):
            assert node.result(tickets.pop(0)) == payload
            done += 1
    return n * size / (time.perf_counter() - t)


def boot_to_first_rpc(profile: profiles.BoardProfile) -> tuple[float, float]:
    """(start to hello, start to first reply) in seconds: the board process started, link and node fresh."""
    with tempfile.TemporaryDirectory() as tmp:
        board = Board(profile, Path(tmp))
        try:
            t0 = time.perf_counter()
            board.start()
            hello = time.perf_counter() - t0
            board.call("board.add", {"a": 1, "b": 2})
            return hello, time.perf_counter() - t0
        finally:
            board.close()


def board_numbers(name: str, quick: bool) -> dict:
    profile = profiles.load(name)
    boots = [boot_to_first_rpc(profile) for _ in range(5)]
    with tempfile.TemporaryDirectory() as tmp:
        board = Board(profile, Path(tmp))
        try:
            board.start()
            board.node.max_pending = 16
            n_rtt = 100 if quick or profile.port == "qemu" else 500
            p50, p99 = rtt(board, n_rtt)
            n_put = 60 if profile.port == "qemu" else 300
            if quick:
                n_put //= 4
            result = {"boot_to_first_rpc_s": statistics.median(b[1] for b in boots),
                      "hello_s": statistics.median(b[0] for b in boots),
                      "rtt_p50_ms": p50, "rtt_p99_ms": p99, "rtt_n": n_rtt, "goodput": {}}
            port = board.link.port = _CountingPort(board.link.port)
            for size in (256, BULK):
                for window in (1, 8):
                    raws, rpcs = [], []
                    sent = port.written
                    for _ in range(PAIRS):  # alternate, so both see the same load on a shared machine
                        raws.append(raw_echo_goodput(board, size, n_put, window))
                        raw_bytes, sent = port.written - sent, port.written
                        rpcs.append(rpc_goodput(board, size, n_put, window))
                        rpc_bytes, sent = port.written - sent, port.written
                    ratio = statistics.median(rpc / raw for raw, rpc in zip(raws, rpcs, strict=True))
                    result["goodput"][(size, window)] = (statistics.median(raws), statistics.median(rpcs),
                                                         ratio, raw_bytes / n_put, rpc_bytes / n_put)
            return result
        finally:
            board.close()


def _pty_pair() -> tuple[int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, os.ttyname(slave)


def noisy_frames(n: int, ber: float) -> dict:
    """n frames host -> fault proxy -> host; each payload carries a SHA-256 tag checked on arrival."""
    master, path = _pty_pair()  # "board" end: our writer on the master, the proxy on the slave
    rng = random.Random(4)
    with FaultProxy(path, ber=ber, drop=1e-4, dup=1e-4, seed=5) as proxy:
        port = PySerialPort(proxy.url)
        dec = frame.Decoder(1024)
        good = bad = 0
        done = threading.Event()

        def writer() -> None:
            for i in range(n):
                size = rng.randrange(8, 120)
                body = i.to_bytes(4, "little") + bytes(rng.randrange(256) for _ in range(size))
                data = hashlib.sha256(body).digest()[:8] + body
                os.write(master, frame.encode(data))
                if i % 200 == 199:
                    time.sleep(0.001)  # let the relay keep up instead of filling the pty
            done.set()

        w = threading.Thread(target=writer, daemon=True)
        t = time.perf_counter()
        w.start()
        buf = bytearray(4096)
        quiet = 0
        while quiet < 20:
            k = port.read_into(buf, 100)
            if not k:
                quiet = quiet + 1 if done.is_set() else 0
                continue
            quiet = 0
            for data in dec.feed(bytes(buf[:k])):
                if hashlib.sha256(data[8:]).digest()[:8] == data[:8]:
                    good += 1
                else:
                    bad += 1
        seconds = time.perf_counter() - t
        port.close()
        faults = proxy.to_host  # this run only goes from the "board" end to the host
    os.close(master)
    return {"sent": n, "delivered": good, "corrupt_delivered": bad, "lost": n - good,
            "crc_rejected": dec.corrupt + dec.oversize, "flipped": faults.flipped,
            "dropped": faults.dropped, "duplicated": faults.duplicated, "seconds": seconds}


def noisy_calls(n: int, ber: float) -> dict:
    """n spool.put calls to the unix board through the fault proxy, with retries (same call id)."""
    with tempfile.TemporaryDirectory() as tmp:
        board = Board(profiles.load("unix"), Path(tmp))
        proxy = None
        try:
            board.start(link=False)
            direct = board.url
            proxy = FaultProxy(direct, ber=ber, drop=1e-4, dup=1e-4, seed=7)
            board.url = proxy.url
            board.connect()
            board.link.dead_ms = 600_000
            node = board.node
            node.retries, node.retry_s = 30, 0.03
            done, timed_out, stored = [], [], []
            lost_takes = 0
            t = time.perf_counter()
            for i in range(n):
                data = b"put %06d" % i
                try:
                    node.call("board", "spool.put", {"data": data}, timeout=2.0)
                    done.append(data)
                except errors.Timeout:
                    timed_out.append(data)
                if i % 100 == 99 or i == n - 1:  # drain over the same noisy line: the spool stays small
                    got, lost = take_all(node, 2.0)
                    stored += got
                    lost_takes += lost  # each may have run: its record is then lost with the reply
            seconds = time.perf_counter() - t
            info = node.call("board", "board.info")
            flipped = proxy.to_board.flipped + proxy.to_host.flipped
            return {"calls": n, "completed": len(done), "timed_out": len(timed_out),
                    "stored_twice": len(stored) - len(set(stored)), "takes_timed_out": lost_takes,
                    "completed_missing": len(set(done) - set(stored)),
                    "timed_out_but_ran": len(set(timed_out) & set(stored)),
                    "unknown_stored": len(set(stored) - set(done) - set(timed_out)),
                    "board_malformed": info["node"]["malformed"], "host_malformed": node.stats["malformed"],
                    "frames_rejected_by_board": info["link"]["corrupt"],
                    "frames_rejected_by_host": board.link.decoder.corrupt, "bits_flipped": flipped,
                    "seconds": seconds}
        finally:
            if proxy is not None:
                proxy.close()
            board.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run, not for the table)")
    args = ap.parse_args()
    print("## Serial\n")
    print(f"`.venv/bin/python bench/bench_serial.py{' --quick' if args.quick else ''}` "
          f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores shared, load average "
          f"{os.getloadavg()[0]:.1f} at start, Python {sys.version.split()[0]})\n")

    print("| framing, 256-byte payload | wire bytes / payload bytes | limit |\n|---|---|---|")
    for label, ratio in framing_overhead():
        print(f"| {label} | {ratio:.4f} | 1.03 |")
    print()

    per_board = {name: board_numbers(name, args.quick) for name in ("unix", "qemu-mps2-an385")}
    print("| board | hello after start (median of 5 boots) | boot to first RPC | RPC round trip p50 | p99 "
          "| calls |\n|---|---|---|---|---|---|")
    for name, r in per_board.items():
        print(f"| {name} | {r['hello_s'] * 1000:.0f} ms | {r['boot_to_first_rpc_s'] * 1000:.0f} ms | "
              f"{r['rtt_p50_ms']:.2f} ms | {r['rtt_p99_ms']:.2f} ms | {r['rtt_n']} |")
    print()
    print(f"| board | payload | in flight | raw frame echo (median of {PAIRS}) "
          f"| RPC board.echo (median of {PAIRS}) | RPC / raw (median of the pairs) "
          "| bytes to the board per message, raw / RPC | byte ceiling |\n"
          "|---|---|---|---|---|---|---|---|")
    bulk_ok = True
    for name, r in per_board.items():
        for (size, window), (raw, rpc, ratio, raw_b, rpc_b) in r["goodput"].items():
            print(f"| {name} | {size} B | {window} | {raw / 1000:.1f} kB/s | {rpc / 1000:.1f} kB/s | "
                  f"{ratio:.2f}x | {raw_b:.0f} / {rpc_b:.0f} | {raw_b / rpc_b:.2f}x |")
            if size == BULK:
                bulk_ok = bulk_ok and ratio >= 0.8
    print(f"\nRPC goodput >= 0.8x the raw echo for {BULK}-byte payloads on every board and window: "
          f"{'yes' if bulk_ok else 'NO'}\n")

    n_frames = 20_000 if args.quick else 100_000
    f = noisy_frames(n_frames, 1e-3)
    print("| noisy line, BER 1e-3, drop/dup 1e-4 per byte | value |\n|---|---|")
    for k, v in f.items():
        print(f"| frames: {k} | {v:.1f} |" if isinstance(v, float) else f"| frames: {k} | {v} |")
    c = noisy_calls(100 if args.quick else 1000, 1e-3)
    for k, v in c.items():
        print(f"| calls: {k} | {v:.1f} |" if isinstance(v, float) else f"| calls: {k} | {v} |")
    ok = (f["corrupt_delivered"] == 0 and c["stored_twice"] == 0 and c["unknown_stored"] == 0
          and c["completed_missing"] <= c["takes_timed_out"]
          and c["board_malformed"] == c["host_malformed"] == 0)
    print(f"\nno corrupt frame delivered, every completed call ran exactly once: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
