"""RPC over a serial line to real firmware: the QEMU board (MPS2-AN385) and the MicroPython unix board,
each running spoolbus frozen in, booted by the HIL plugin (spoolbus_host.testing.hil)."""

import time

import pytest
from spoolbus import errors


@pytest.mark.every_board
def test_board_boots_says_hello_and_answers_calls(hil_board):
    hil_board.wait_for_peer()
    assert hil_board.node.peers["board"][0] == {"board": "1.0", "spool": "1.0"}
    info = hil_board.call("board.info")
    assert info["version"] == [1, 25, 0]
    assert info["platform"] == ("qemu" if hil_board.profile.port == "qemu" else "linux")
    assert hil_board.call("board.add", {"a": 2, "b": 40}) == 42
    payload = bytes(range(256)) * 2  # every byte value, 0x00 and 0xFF included
    assert hil_board.call("board.echo", {"data": payload}) == payload


@pytest.mark.every_board
def test_contract_errors_come_back_typed_and_the_board_keeps_serving(hil_board):
    with pytest.raises(errors.RemoteError) as e:
        hil_board.call("board.add", {"a": "two", "b": 3})
    assert e.value.type == "invalid_arguments"
    with pytest.raises(errors.RemoteError) as e:
        hil_board.call("board.nope")
    assert e.value.type == "no_such_method"
    with pytest.raises(errors.RemoteError) as e:
        hil_board.call("thermo.read")
    assert e.value.type == "no_such_service"
    assert hil_board.call("board.add", {"a": 1, "b": 1}) == 2


@pytest.mark.every_board
def test_console_text_printed_between_frames_does_not_break_the_link(hil_board):
    for i in range(5):
        assert hil_board.call("board.log", {"text": f"log line {i} from the board's print()"}) is None
    assert hil_board.call("board.add", {"a": 1, "b": 2}) == 3
    assert "log line 4 from the board's print()" in hil_board.console_text()


@pytest.mark.every_board
def test_notifications_reach_the_subscribed_host(hil_board):
    got = []
    hil_board.node.subscribe("tick", lambda event, body, src: got.append((event, body["seq"], src)))
    hil_board.node.hello("board")  # tells the board about the subscription; the line keeps order
    assert hil_board.call("board.notify", {"event": "tick", "count": 3}) == 3
    deadline = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < deadline:
        hil_board.node.poll(20)
    assert got == [("tick", 0, "board"), ("tick", 1, "board"), ("tick", 2, "board")]
