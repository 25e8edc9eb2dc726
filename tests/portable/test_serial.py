"""The serial link: frames cross, console text and corrupt frames are skipped, hello/keepalive
supervision reports a rebooted peer (LinkReset) and a silent one (LinkDown) once each, then recovers."""

import time

from mpcompat import raises, temp_dir
from spoolbus import errors, frame
from spoolbus.transport import serial


class _Port:
    """One end of an in-memory serial line: chunks written by the other end, read without waiting."""

    def __init__(self, rx, tx):
        self.rx = rx
        self.tx = tx

    def read_into(self, buf, timeout_ms):
        if not self.rx:
            return 0
        chunk = self.rx.pop(0)
        if len(chunk) > len(buf):
            self.rx.insert(0, chunk[len(buf) :])
            chunk = chunk[: len(buf)]
        buf[: len(chunk)] = chunk
        return len(chunk)

    def write(self, data):
        self.tx.append(bytes(data))

    def close(self):
        pass


def _line():
    a_to_b = []
    b_to_a = []
    return _Port(b_to_a, a_to_b), _Port(a_to_b, b_to_a)


def _pair(keepalive_ms=500, dead_ms=2000):
    pa, pb = _line()
    a = serial.SerialTransport(pa, "host", keepalive_ms=keepalive_ms, dead_ms=dead_ms)
    b = serial.SerialTransport(pb, "board", keepalive_ms=keepalive_ms, dead_ms=dead_ms)
    a.open()
    assert b.recv(0) is None
    assert a.recv(0) is None
    return a, b, pa, pb


def test_hello_brings_both_ends_up_and_names_the_peer():
    a, b, _, _ = _pair()
    assert a.state == serial.UP and b.state == serial.UP
    assert a.peer[1] == "board" and b.peer[1] == "host"
    assert a.peer[0] == b.nonce and b.peer[0] == a.nonce
    assert a.peers() == ["board"] and b.peers() == ["host"]


def test_messages_cross_in_order_and_console_text_between_frames_is_skipped():
    a, b, pa, _ = _pair()
    a.send("board", b"\xa1\x01\x02")
    pa.tx.append(b"MicroPython v1.25 boot log\r\n>>> \x03\x04 garbage\x00")
    a.send("board", b"\x82\x01\x02")
    pa.tx.append(b"print() output right before a frame, no delimiter\r\n")
    a.send("board", b"\x82\x01\x03")
    pa.tx.append(b"more text\r\n")
    a.send("board", b"\x82\x0a\x0a")  # newline bytes inside the frame too
    assert b.recv(0) == b"\xa1\x01\x02"
    assert b.recv(0) == b"\x82\x01\x02"
    assert b.recv(0) == b"\x82\x01\x03"
    assert b.recv(0) == b"\x82\x0a\x0a"
    assert b.recv(0) is None
    assert b.decoder.corrupt == 3


def test_a_corrupted_frame_is_dropped_and_the_next_one_delivered():
    a, b, pa, _ = _pair()
    data = bytearray(frame.encode(b"\xa1\x01" + b"x" * 200))
    data[50] ^= 0x10
    pa.tx.append(bytes(data))
    a.send("board", b"\xa1\x01\x03")
    assert b.recv(0) == b"\xa1\x01\x03"
    assert b.decoder.corrupt == 1


def test_frames_split_across_reads_are_reassembled():
    a, b, pa, _ = _pair()
    a.send("board", b"\x58\x40" + bytes(range(64)))
    wire = pa.tx.pop()
    for i in range(len(wire)):
        pa.tx.append(wire[i : i + 1])
    assert b.recv(0) == b"\x58\x40" + bytes(range(64))


def test_a_rebooted_peer_raises_link_reset_once_then_the_link_works():
    a, b, pa, pb = _pair()
    b2 = serial.SerialTransport(pb, "board")  # the board restarted: a new boot nonce
    b2.open()
    with raises(errors.LinkReset) as e:
        a.recv(0)
    assert "board" in str(e.value) and "retry" in str(e.value)
    assert a.stats["resets"] == 1
    assert b2.recv(0) is None  # takes a's hello-ack
    b2.send("host", b"\xa0")
    assert a.recv(0) == b"\xa0"
    assert a.peer[0] == b2.nonce


def test_a_silent_peer_raises_link_down_once_and_hello_brings_it_back():
    a, b, _, _ = _pair(keepalive_ms=10, dead_ms=40)
    time.sleep(0.06)
    with raises(errors.LinkDown) as e:
        a.recv(0)
    assert "board" in str(e.value)
    assert a.state == serial.DOWN
    time.sleep(0.015)
    assert a.recv(0) is None  # no second LinkDown; a hello goes out instead of a ping
    assert b.recv(0) is None  # the board answers the hello
    assert a.recv(0) is None
    assert a.state == serial.UP and a.stats["downs"] == 1 and a.stats["resets"] == 0


def test_after_a_bye_nothing_is_written_to_the_peer_until_its_next_hello():
    a, b, pa, pb = _pair(keepalive_ms=10, dead_ms=40)
    b.bye()  # the board resets now
    with raises(errors.LinkDown) as e:
        a.recv(0)
    assert "'board' is restarting" in str(e.value) and a.state == serial.DOWN and a.peers() == []
    with raises(errors.LinkDown):
        a.send("board", b"\xa0")  # a bridge holds it for later
    time.sleep(0.06)
    assert a.recv(0) is None and a.recv(0) is None
    assert pa.tx == []  # no ping, no hello, no message while the board boots
    b2 = serial.SerialTransport(pb, "board", keepalive_ms=10, dead_ms=40)
    b2.open()  # the board's application is up again
    assert a.recv(0) is None  # no LinkReset on top of the LinkDown
    assert a.state == serial.UP and a.peer[0] == b2.nonce and a.stats["downs"] == 1
    a.send("board", b"\xa0")
    assert b2.recv(0) == b"\xa0"


def test_an_idle_link_pings_and_the_peer_answers():
    a, b, _, _ = _pair(keepalive_ms=10, dead_ms=1000)
    time.sleep(0.015)
    assert a.recv(0) is None
    assert a.stats["pings"] == 1
    assert b.recv(0) is None
    assert a.recv(0) is None
    assert a.state == serial.UP


def test_a_message_starting_with_0xff_is_refused():
    a, _, _, _ = _pair()
    with raises(errors.LinkError):
        a.send("board", b"\xff\x00")


def test_stream_port_reads_up_to_a_delimiter_then_waits():
    with temp_dir() as d:
        path = d + "/line"
        with open(path, "wb") as f:
            f.write(frame.encode(b"\xa1\x01\x02") + frame.encode(b"\xa0"))
        with open(path, "rb") as f:
            port = serial.StreamPort(f)
            buf = bytearray(64)
            n = port.read_into(buf, 0)
            assert bytes(buf[:n]) == frame.encode(b"\xa1\x01\x02")
            n = port.read_into(buf, 0)
            assert bytes(buf[:n]) == frame.encode(b"\xa0")
            assert port.read_into(buf, 0) == 0
