"""The board's application: its services on a spoolbus node over the console serial link.

Services `board` (info, echo, add, log, notify, reboot) and `spool` (put, count, take) on the board's
spool directory; raw echo of frames starting with 0x00 for link benchmarks. The node is named by
NAME in a `board_config` module when one is importable (deployed with an application), else "board".
Docs: docs/boards.md.
"""

import gc
import sys

import micropython
from spoolbus import contract
from spoolbus.transport.serial import SerialTransport, StreamPort

try:  # a deployed application names the node (e.g. "gw/qemu" on a bridge): docs/boards.md
    from board_config import NAME
except ImportError:
    NAME = "board"
SPOOL_DIR = "/flash/spool" if sys.platform == "qemu" else "spool"

BOARD = contract.Service("board", "1.0")
BOARD.method("info")
BOARD.method("echo", ("data", None))
BOARD.method("add", ("a", int), ("b", int))
BOARD.method("log", ("text", str))
BOARD.method("notify", ("event", str), ("count", int))
BOARD.method("reboot")

SPOOL = contract.Service("spool", "1.0")
SPOOL.method("put", ("data", bytes))
SPOOL.method("count")
SPOOL.method("take")


class _EchoTap:
    """The link for the node, except that frames starting with 0x00 (no envelope does) are echoed."""

    def __init__(self, link):
        self.link = link

    def recv(self, timeout_ms=0):
        link = self.link
        while True:
            data = link.recv(timeout_ms)
            if data is None or data[:1] != b"\x00":
                return data
            link.send(None, data)
            timeout_ms = 0

    def send(self, dst, data):
        self.link.send(dst, data)

    def peers(self):
        return self.link.peers()

    def close(self):
        self.link.close()


class _Board:
    def __init__(self, node, link):
        self.node = node
        self.link = link
        self._spool = None

    def info(self):
        gc.collect()
        dec = self.link.decoder
        return {"name": NAME, "platform": sys.platform, "mem_free": gc.mem_free(),
                "version": list(sys.implementation.version[:3]),
                "link": {"frames": dec.frames, "corrupt": dec.corrupt, "oversize": dec.oversize,
                         "resets": self.link.stats["resets"], "downs": self.link.stats["downs"]},
                "node": {"malformed": self.node.stats["malformed"], "duplicate": self.node.stats["duplicate"],
                         "calls_served": self.node.stats["calls_served"]}}

    def echo(self, data):
        return data

    def add(self, a, b):
        return a + b

    def log(self, text):
        print(text)  # console text between frames: the host's decoder must skip it

    def notify(self, event, count):
        sent = 0
        for i in range(count):
            sent += self.node.notify(event, {"seq": i})
        return sent

    def reboot(self):
        import machine

        machine.soft_reset()  # no reply: the caller learns of it from the link (LinkReset)

    def _spool_open(self):
        if self._spool is None:
            from spoolbus.spool import Spool

            self._spool = Spool(SPOOL_DIR, max_messages=256)
        return self._spool

    def put(self, data):
        return self._spool_open().put(bytes(data))

    def count(self):
        return len(self._spool_open())

    def take(self):
        sp = self._spool_open()
        got = sp.claim()
        if got is None:
            return None
        sp.ack(got[0])
        return got[1]


class _SpoolService:
    def __init__(self, board):
        self.put = board.put
        self.count = board.count
        self.take = board.take


def run():
    """Serve forever on the console: stdin/stdout carry frames, console text is skipped by the host."""
    from spoolbus.node import Node

    micropython.kbd_intr(-1)  # 0x03 bytes inside frames are data, not Ctrl-C
    link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name=NAME)
    # A small dedup cache: replies it keeps (for retried calls) must fit a 64 KB heap.
    node = Node(NAME, _EchoTap(link), clock=False, dedup_size=8)
    board = _Board(node, link)
    node.serve(BOARD, board)
    node.serve(SPOOL, _SpoolService(board))
    link.open()
    while True:
        node.poll(1000)  # a link event or a frame too large for the heap costs that frame only
