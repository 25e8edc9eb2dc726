"""Nodes on a real serial link (pipes to a MicroPython board process) through board reboots and link
silences: the host's calls give their slots back, and the board's bare `while True: nd.poll(20)` loop
lives through LinkDown and LinkReset."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time

import pytest
from mpproc import MICROPYTHON, ROOT, PipePort
from spoolbus import errors, frame
from spoolbus.node import Node
from spoolbus.transport.serial import UP, SerialTransport

BOARD = """
import sys
from spoolbus import contract
from spoolbus.node import Node
from spoolbus.transport.serial import SerialTransport, StreamPort

BOARD = contract.Service("board", "1.0").method("add", ("a", int), ("b", int)).method("links")
link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name="board",
                       keepalive_ms=100, dead_ms=400)
nd = Node("board", link)
nd.serve(BOARD, {"add": lambda a, b: a + b,
                 "links": lambda: [nd.stats["link_downs"], nd.stats["link_resets"]]})
link.open()
while True:  # the README's board loop, with nothing around it
    nd.poll(20)
"""


class Board(PipePort):
    """The host end of the board's serial line (its stdin and stdout); reboot() kills it and starts it
    again. With drop_next_message set, the next message written is lost: the board reboots as it
    arrives (link-control frames pass)."""

    def __init__(self, tmp_path):
        self.script = tmp_path / "board.py"
        self.script.write_text(textwrap.dedent(BOARD))
        self.proc: subprocess.Popen | None = None
        self.drop_next_message = False
        self.reboots = 0
        self._start()

    def _start(self) -> None:
        env = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime")
        self.proc = subprocess.Popen([MICROPYTHON, str(self.script)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)

    def reboot(self) -> None:
        self.close()
        self._start()
        self.reboots += 1

    def write(self, data: bytes) -> None:
        if self.drop_next_message and any(p[:1] != b"\xff" for p in frame.Decoder().feed(bytes(data))):
            self.drop_next_message = False
            self.reboot()
            return
        super().write(data)

    def close(self) -> None:
        super().close()
        self.proc.stdout.close()
        try:
            self.proc.stdin.close()
        except BrokenPipeError:  # bytes still buffered for the board that died
            pass


def _link(board: Board) -> SerialTransport:
    link = SerialTransport(board, name="host", keepalive_ms=100, dead_ms=1500)
    link.open()
    return link


def _until_up(host: Node, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while host.transport.state != UP:
        assert time.monotonic() < deadline, "the serial link did not come up"
        host.poll(20)


def _until_reset_seen(host: Node, board: Board, timeout: float = 10.0) -> None:
    """Poll until the host's link has seen the latest reboot (the new board's hello)."""
    deadline = time.monotonic() + timeout
    while host.stats["link_resets"] < board.reboots:
        assert time.monotonic() < deadline, "the rebooted board did not say hello"
        host.poll(20)


@pytest.fixture
def board(tmp_path):
    b = Board(tmp_path)
    yield b
    b.close()


def test_calls_lost_to_board_reboots_free_their_slots_and_the_host_keeps_calling(board):
    host = Node("host", _link(board), max_pending=2)
    _until_up(host)
    assert host.call("board", "board.add", {"a": 1, "b": 2}, timeout=5) == 3
    for i in range(4):  # more lost calls than the host has slots
        board.drop_next_message = True
        with pytest.raises(errors.LinkReset):  # told by the rebooted board's hello, not by a timeout
            host.call("board", "board.add", {"a": i, "b": 0}, timeout=10)
        assert len(host._calls) == 0
        _until_reset_seen(host, board)
    board.drop_next_message = True  # once more, with retries: the resend reaches the rebooted board
    assert host.call("board", "board.add", {"a": 5, "b": 5}, timeout=5, retries=8) == 10
    assert board.reboots == 5 and host.stats["link_resets"] == 5
    assert host.call("board", "board.add", {"a": 2, "b": 2}, timeout=5) == 4
    assert len(host._calls) == 0 and host.stats["internal_errors"] == 0


def test_the_board_loop_outlives_a_silent_link_and_a_restarted_host(board):
    host = Node("host", _link(board))
    _until_up(host)
    assert host.call("board", "board.add", {"a": 1, "b": 1}, timeout=5) == 2
    time.sleep(1.0)  # the host says nothing: the board's link goes DOWN (dead_ms 400)
    host.transport = _link(board)  # the host restarts: a new boot nonce, LinkReset on the board
    _until_up(host)
    assert host.call("board", "board.add", {"a": 20, "b": 3}, timeout=5, retries=4) == 23
    downs, resets = host.call("board", "board.links", timeout=5)
    assert downs >= 1 and resets >= 1
    assert board.proc.poll() is None
