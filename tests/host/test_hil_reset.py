"""Boards that reboot or vanish under the host: calls in flight fail with a clear link error at once
(not a timeout), the link comes back by itself, and a QEMU board's spool survives a soft reset."""

import time

import pytest
from spoolbus import errors
from spoolbus.transport.serial import DOWN, UP

# A soft reset restarts main.py on the QEMU boards; the unix board would exit.
QEMU_BOARDS = ("qemu-mps2-an385", "qemu-virt-rv32")


def _wait_up(board, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while board.link.state != UP:
        assert time.monotonic() < deadline, board.console_text()
        try:
            board.node.poll(50)
        except errors.LinkError:
            pass


@pytest.mark.boards(*QEMU_BOARDS)
def test_board_rebooted_mid_call_fails_the_call_with_link_reset_then_serves_again(hil_board):
    started = time.monotonic()
    with pytest.raises(errors.LinkReset, match="restarted"):
        hil_board.call("board.reboot", timeout=30)
    assert time.monotonic() - started < 10  # told by the board's new hello, not by the 30 s timeout
    _wait_up(hil_board)
    assert hil_board.call("board.add", {"a": 20, "b": 22}) == 42
    assert hil_board.link.stats["resets"] == 1


@pytest.mark.boards(*QEMU_BOARDS)
def test_spool_on_a_qemu_board_survives_a_soft_reset(hil_board):
    ids = [hil_board.call("spool.put", {"data": b"reading %d" % i}) for i in range(3)]
    assert len(set(ids)) == 3
    assert hil_board.call("spool.count") == 3
    with pytest.raises(errors.LinkReset):
        hil_board.call("board.reboot", timeout=30)
    _wait_up(hil_board)
    assert hil_board.call("spool.count") == 3
    assert [hil_board.call("spool.take") for _ in range(3)] == [b"reading 0", b"reading 1", b"reading 2"]
    assert hil_board.call("spool.take") is None


@pytest.mark.every_board
def test_a_vanished_board_is_reported_as_link_down_within_dead_ms(hil_board):
    assert hil_board.call("board.add", {"a": 1, "b": 1}) == 2
    hil_board.kill()
    started = time.monotonic()
    with pytest.raises(errors.LinkDown, match="no frame from 'board'"):
        hil_board.call("board.add", {"a": 1, "b": 1}, timeout=30)
    assert time.monotonic() - started < hil_board.profile.dead_ms / 1000 + 2
    assert hil_board.link.state == DOWN


@pytest.mark.boards("unix")  # a board on a host-made pty keeps its serial line across a power cycle
def test_a_power_cycled_unix_board_is_noticed_and_the_link_reconnects(hil_board):
    assert hil_board.call("board.add", {"a": 1, "b": 1}) == 2
    hil_board.restart()
    for _ in range(100):  # poll() counts the link event and returns: a serving loop goes on
        if hil_board.node.stats["link_resets"]:
            break
        hil_board.node.poll(100)
    assert hil_board.node.stats["link_resets"] == 1
    _wait_up(hil_board)
    assert hil_board.call("board.add", {"a": 2, "b": 2}) == 4
