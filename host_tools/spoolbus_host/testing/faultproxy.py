"""A fault-injecting serial line: relays bytes between a board's serial port and a new pty, flipping
bits at a bit-error rate and dropping and duplicating bytes, in both directions.

For tests and bench/bench_serial.py: the host opens `proxy.url` instead of the board's own port.
Faults are drawn from a seeded generator, so a run can be repeated; counters say what was done.
"""

from __future__ import annotations

import math
import os
import random
import select
import threading
import tty


class _Faults:
    """Positions of the next bit flip, drop and duplicate, drawn as geometric gaps (cheap at low rates)."""

    def __init__(self, rng: random.Random, ber: float, drop: float, dup: float) -> None:
        self.rng = rng
        self.ber, self.drop, self.dup = ber, drop, dup
        self.next_flip = self._gap(ber)
        self.next_drop = self._gap(drop)
        self.next_dup = self._gap(dup)
        self.flipped = self.dropped = self.duplicated = self.relayed = 0

    def _gap(self, p: float) -> float:
        if p <= 0:
            return math.inf
        return math.floor(math.log(1.0 - self.rng.random()) / math.log(1.0 - p))

    def apply(self, data: bytes) -> bytes:
        buf = bytearray(data)
        bits = 8 * len(buf)
        while self.next_flip < bits:
            pos = int(self.next_flip)
            buf[pos >> 3] ^= 1 << (pos & 7)
            self.flipped += 1
            self.next_flip += 1 + self._gap(self.ber)
        self.next_flip -= bits
        n = len(buf)
        if self.next_drop < n or self.next_dup < n:
            out = bytearray()
            for i in range(n):
                if i >= self.next_drop:
                    self.dropped += 1
                    self.next_drop += 1 + self._gap(self.drop)
                    continue
                out.append(buf[i])
                if i >= self.next_dup:  # >=: a duplicate due on a dropped byte goes to the next one
                    out.append(buf[i])
                    self.duplicated += 1
                    self.next_dup += 1 + self._gap(self.dup)
            buf = out
        self.next_drop -= n
        self.next_dup -= n
        self.relayed += n
        return bytes(buf)


class FaultProxy:
    """Relay between the serial device at `board_path` and a new pty whose slave is `url`.

    ber: probability that a bit is flipped; drop/dup: probability that a byte is dropped/duplicated.
    Counters per direction: `to_board` and `to_host` (flipped, dropped, duplicated, relayed).
    """

    def __init__(self, board_path: str, ber: float = 1e-3, drop: float = 0.0, dup: float = 0.0,
                 seed: int = 1) -> None:
        rng = random.Random(seed)
        self.to_board = _Faults(rng, ber, drop, dup)
        self.to_host = _Faults(rng, ber, drop, dup)
        self._board = os.open(board_path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self._board)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.url = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ends = {self._board: (self._master, self.to_host), self._master: (self._board, self.to_board)}
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(list(ends), [], [], 0.05)
                for fd in ready:
                    data = os.read(fd, 4096)
                    if data:
                        dst, faults = ends[fd]
                        os.write(dst, faults.apply(data))
            except OSError:  # the board went away: the host sees silence, as on a cut cable
                if self._stop.wait(0.05):
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (self._board, self._master, self._slave):
            os.close(fd)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
