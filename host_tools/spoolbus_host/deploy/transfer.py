"""Windowed chunk transfer over RPC calls of a board's update service (docs/deploy.md, "Over the bus").

A round trip through a bridge costs tens of milliseconds, a chunk a fraction of that: `Window` keeps
several calls in flight (node.send_call tickets) and hands their outcomes back in the order they were
sent. `Sender` writes file pieces with `update.put`, raw or as raw deflate streams sized so that each
compressed put fits the board's chunk; `read` fetches a file with `update.read`.
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from spoolbus import errors, wire
from spoolbus.node import Node

_MAX_INFLATE = 8  # an uncompressed piece is at most this many chunks: bounds a put's work on the board


@dataclass
class Outcome:
    """One call of a window: `tag` as given to `Window.push`, then its reply or the exception it ended in
    (RemoteError, Timeout, LinkReset, LinkDown)."""

    tag: object
    reply: object = None
    error: Exception | None = None


class Window:
    """Up to `size` calls to `dst` in flight; `pop` waits for the oldest and returns its Outcome."""

    def __init__(self, node: Node, dst: str, size: int, timeout: float):
        self.node = node
        self.dst = dst
        self.size = max(1, min(size, node.max_pending))  # send_call refuses beyond max_pending
        self.timeout = timeout
        self._flight: deque[tuple[object, object]] = deque()

    def __len__(self) -> int:
        return len(self._flight)

    def full(self) -> bool:
        return len(self._flight) >= self.size

    def push(self, method: str, args: dict, tag: object = None) -> None:
        """Send a call (the caller pops first when the window is full)."""
        ticket = self.node.send_call(self.dst, method, args, timeout=self.timeout, retries=0)
        self._flight.append((tag, ticket))

    def pop(self) -> Outcome:
        """The outcome of the oldest call in flight, polling the node until it is ready.

        The board answers a link's calls in order: once a later call has its error reply, the oldest
        one's call or reply was lost, and it is given up at once (a Timeout) rather than at its timeout.
        """
        tag, ticket = self._flight.popleft()
        node = self.node
        while not node.ready(ticket):
            if any(getattr(t.reply, "kind", None) == wire.ERROR for _, t in self._flight):
                node._calls.pop(ticket.env.id, None)  # its slot is free for the calls that follow
                return Outcome(tag, error=errors.Timeout(f"the reply to {ticket.env.method} was lost"))
            node.poll(node._wait_ms(ticket))
        try:
            return Outcome(tag, node.result(ticket))
        except (errors.RemoteError, errors.Timeout, errors.LinkError) as e:
            return Outcome(tag, error=e)

    def drain(self) -> list[Outcome]:
        return [self.pop() for _ in range(len(self._flight))]

    def abandon(self) -> list[Outcome]:
        """The outcomes of the calls in flight that have their replies by now; the others are given up
        (a Timeout): after a failure the caller asks the board where it stands rather than waiting."""
        self.node.poll(0)
        out = []
        while self._flight:
            tag, ticket = self._flight.popleft()
            if ticket.reply is None:
                self.node._calls.pop(ticket.env.id, None)
                out.append(Outcome(tag, error=errors.Timeout(f"{ticket.env.method} given up")))
                continue
            try:
                out.append(Outcome(tag, self.node.result(ticket)))
            except (errors.RemoteError, errors.LinkError) as e:
                out.append(Outcome(tag, error=e))
        return out


@dataclass
class Pass:
    """What one pass of `Sender.send` did: `failed` is the first call that went wrong (None: every piece
    arrived); `done` the files the board reported complete and hash-checked."""

    failed: Outcome | None
    done: list[int]
    progressed: bool


class Sender:
    """Sends file pieces with `update.put` through a Window.

    `chunk`: the largest put data the board takes; `wbits`: the board's deflate window (0: raw puts).
    Compressed, one pass is one deflate stream over its files (a new one at a file the board holds part
    of), flushed (Z_SYNC_FLUSH) at the end of every put, so each put inflates to exactly its `n` bytes.
    `on_bytes(n)` and `on_file(f)` follow what the board acknowledged; `wire_bytes` counts the put data
    sent.
    """

    def __init__(self, window: Window, chunk: int, wbits: int = 0,
                 on_bytes: Callable[[int], None] | None = None, on_file: Callable[[int], None] | None = None):
        if chunk < 64:
            raise ValueError(f"a chunk of {chunk} bytes is too small to carry a put")
        self.window = window
        self.chunk = chunk
        self.wbits = wbits
        self.on_bytes = on_bytes
        self.on_file = on_file
        self.wire_bytes = 0
        self._acked: dict[int, int] = {}  # file -> the most bytes the board said it has
        self._stream = int.from_bytes(os.urandom(2), "big") | 1  # ids of earlier runs are not reused at once
        self._ratio = 2.0  # uncompressed bytes a compressed byte, learned as the pass goes

    def send(self, files: list[tuple[int, bytes, int]]) -> Pass:
        """One pass over `files`, each (file number, its bytes, bytes the board has), in order; stops
        sending at the first error and waits for the calls in flight."""
        w = self.window
        outcome = Pass(None, [], False)
        comp = None
        first = False
        for i, (f, data, have) in enumerate(files):
            o = have
            if self.wbits and (i == 0 or have):  # a stream moves on to a file only at its byte 0
                self._stream = self._stream % 0xFFFF + 1
                comp = zlib.compressobj(9, zlib.DEFLATED, -self.wbits)
                first = True
            while True:
                if comp is None:
                    piece = data[o : o + self.chunk]
                    args: dict = {"f": f, "o": o, "d": piece}
                    n = len(piece)
                else:
                    comp, d, n = self._deflate(comp, data, o)
                    args = {"f": f, "o": o, "d": d, "z": self._stream, "n": n}
                    if first:
                        args["s"] = True
                    piece = d
                first = False
                while w.full():
                    if not self._settle(w.pop(), outcome):
                        return self._finish(outcome)
                w.push("update.put", args, (f, o + n, len(data)))
                self.wire_bytes += len(piece)
                o += n
                if o >= len(data):
                    break
        return self._finish(outcome)

    def _deflate(self, comp, data: bytes, o: int):
        """The next put of a compressed stream: (the compressor after it, its bytes, bytes it inflates to).
        A piece whose compressed bytes do not fit the chunk is compressed again smaller, from a copy of
        the compressor as it was before it."""
        left = len(data) - o
        u = min(left, max(1, int(self.chunk * self._ratio * 0.95)), self.chunk * _MAX_INFLATE)
        while True:
            c = comp.copy()
            d = c.compress(data[o : o + u]) + c.flush(zlib.Z_SYNC_FLUSH)
            if len(d) <= self.chunk or u == 1:
                if u:
                    self._ratio = max(0.5, u / max(1, len(d)))
                return c, d, u
            u = max(1, min(u - 1, int(u * self.chunk / len(d) * 0.95)))

    def _settle(self, out: Outcome, p: Pass) -> bool:
        """Account for one put's outcome; False at the first failure (the pass stops there)."""
        if out.error is not None or not isinstance(out.reply, dict):
            if p.failed is None:
                p.failed = out if out.error is not None else Outcome(out.tag, error=errors.SpoolbusError(
                    f"unexpected reply to update.put: {out.reply!r}"))
            return False
        f, end, size = out.tag
        have = out.reply.get("have", end)
        before = self._acked.get(f, 0)
        if isinstance(have, int) and have > before:
            self._acked[f] = have
            p.progressed = True
            if self.on_bytes and f >= 0:
                self.on_bytes(have - before)
        if out.reply.get("done"):
            p.done.append(f)
            if self.on_file and f >= 0:
                self.on_file(f)
        return True

    def _finish(self, p: Pass) -> Pass:
        w = self.window
        for out in w.abandon() if p.failed else w.drain():
            self._settle(out, p)  # after a failure too: what arrived still counts
        return p

    def seen(self, f: int, have: int) -> None:
        """The board holds `have` bytes of file `f` (from begin): progress counts from there."""
        self._acked[f] = max(self._acked.get(f, 0), have)


def read(window: Window, path: str, chunk: int) -> bytes:
    """The file `path` (under the board's deploy root) through `update.read`, `chunk` bytes a call, a
    window of calls in flight once the first reply has told the size. Raises RemoteError (not_found,
    bad_path), Timeout or a link error."""
    first = _read_one(window, path, 0, chunk)
    data, size = bytes(first["d"]), int(first["size"])
    while len(data) < size:
        pieces: dict[int, bytes] = {}
        o = len(data)
        failure: Exception | None = None
        while (o < size and failure is None) or len(window):
            if o < size and failure is None and not window.full():
                window.push("update.read", {"path": path, "o": o, "n": chunk}, o)
                o += chunk
                continue
            out = window.pop()
            if out.error is not None:
                failure = failure or out.error
            elif isinstance(out.reply, dict):
                pieces[out.tag] = bytes(out.reply.get("d", b""))
                size = min(size, int(out.reply.get("size", size)))  # a file that shrank ends sooner
        before = len(data)
        while len(data) in pieces and pieces[len(data)]:
            data += pieces.pop(len(data))
        if failure is not None and len(data) == before:
            raise failure
        if len(data) == before:
            break  # nothing more comes: the file ended before its size said
    return data[:size]


def _read_one(window: Window, path: str, o: int, n: int) -> dict:
    window.push("update.read", {"path": path, "o": o, "n": n}, o)
    out = window.pop()
    if out.error is not None:
        raise out.error
    if not isinstance(out.reply, dict) or "size" not in out.reply:
        raise errors.SpoolbusError(f"unexpected reply to update.read: {out.reply!r}")
    return out.reply
