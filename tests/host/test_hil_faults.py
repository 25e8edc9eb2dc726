"""A noisy serial line (bit flips at 1e-3, dropped and duplicated bytes) between host and board:
no corrupt frame is ever delivered, and every call completes exactly once or fails with Timeout.
bench/bench_serial.py runs the same over 100,000 frames; this is the short version for the suite."""

import pytest
from noisy_line import take_all
from spoolbus import errors
from spoolbus_host.testing.faultproxy import FaultProxy
from spoolbus_host.testing.hil import Board

CALLS = {"unix": 60, "qemu-mps2-an385": 20, "qemu-virt-rv32": 20}
RETRY_S = {"unix": 0.03, "qemu-mps2-an385": 0.15, "qemu-virt-rv32": 0.15}  # a little over the round trip


@pytest.fixture
def noisy_board(tmp_path, hil_profile):
    board = Board(hil_profile, tmp_path)
    proxy = None
    try:
        board.start(link=False)
        proxy = FaultProxy(board.url, ber=1e-3, drop=1e-4, dup=1e-4, seed=6)
        board.url = proxy.url
        board.connect()
        board.link.dead_ms = 60_000  # lost pings are noise here, not a dead board
        yield board, proxy
    finally:
        board.close()
        if proxy is not None:
            proxy.close()


@pytest.mark.every_board
def test_calls_over_a_noisy_line_complete_exactly_once_or_time_out(noisy_board):
    board, proxy = noisy_board
    node = board.node
    calls = CALLS[board.profile.name]
    # Resend the same call id while no reply came; the board's dedup cache runs it once.
    node.retries, node.retry_s = 30, RETRY_S[board.profile.name]
    done, timed_out = [], []
    for i in range(calls):
        data = b"call %03d " % i + bytes(range(i % 50))
        try:
            msg_id = node.call("board", "spool.put", {"data": data}, timeout=2.0)
        except errors.Timeout:
            timed_out.append(data)
            continue
        assert isinstance(msg_id, str)
        done.append(data)
    assert proxy.to_board.flipped > 10 and proxy.to_host.flipped > 10
    assert len(done) >= calls * 0.8, (len(done), len(timed_out))

    # Read back over the same noisy line: each completed call's record is there exactly once.
    stored, lost_takes = take_all(node, 5.0)
    info = node.call("board", "board.info", timeout=5.0)
    assert info["node"]["malformed"] == 0 and node.stats["malformed"] == 0  # nothing corrupt got through
    assert info["link"]["corrupt"] > 0 and board.link.decoder.corrupt > 0
    assert len(stored) == len(set(stored))  # no call executed twice
    assert set(stored) <= set(done) | set(timed_out)  # and nothing that was not sent
    assert len(set(done) - set(stored)) <= lost_takes  # every completed put is there, exactly once
