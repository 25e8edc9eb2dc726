"""MQTT 3.1.1 packets: byte-exact encoding, strictly bounded parsing of what a broker sends, fuzzed."""

from mpcompat import raises
from spoolbus.errors import ticks_add, ticks_ms
from spoolbus.transport import mqtt_client as m
from spoolbus.transport.mqtt_client import MQTTConnectionError, MQTTProtocolError


def _client(**kw):
    return m.MQTTClient("t", "127.0.0.1", **kw)


def _feed(client, data):
    """Hand `data` to the client as its socket reads would: at most the free room of its buffer at once."""
    while data:
        room = len(client._buf) - client._fill
        assert room, "the client stalled with a full receive buffer"
        piece, data = data[:room], data[room:]
        client._buf[client._fill:client._fill + len(piece)] = piece
        client._fill += len(piece)
        client._process()


def test_connect_packet_bytes():
    pkt = m.encode_connect("ab", 60)
    assert bytes(pkt) == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02ab"


def test_connect_packet_with_will_user_and_password():
    pkt = m.encode_connect("c", 10, False, "u", "p", ("s/t", b"off", 1, True))
    # flags: user 0x80, password 0x40, will retain 0x20, will QoS 1 0x08, will 0x04, no clean session
    assert pkt[9] == 0x80 | 0x40 | 0x20 | 0x08 | 0x04
    assert bytes(pkt[12:]) == b"\x00\x01c\x00\x03s/t\x00\x03off\x00\x01u\x00\x01p"
    assert pkt[1] == len(pkt) - 2


def test_publish_packet_bytes_qos0_and_qos1_dup():
    assert bytes(m.encode_publish("a/b", b"hi")) == b"\x30\x07\x00\x03a/bhi"
    assert bytes(m.encode_publish("a", b"x", 1, True, 0x0102, True)) == b"\x3b\x06\x00\x01a\x01\x02x"


def test_remaining_length_uses_one_to_four_bytes():
    for size, header in ((0, b"\x30\x05"), (123, b"\x30\x80\x01"), (16378, b"\x30\xff\x7f"),
                         (16379, b"\x30\x80\x80\x01")):
        pkt = m.encode_publish("abc", bytes(size))
        assert bytes(pkt[:len(header)]) == header, size
        assert m.split_packet(pkt, 0, len(pkt), 1 << 20) == (0x30, len(header), len(pkt))


def test_subscribe_packet_bytes():
    assert bytes(m.encode_subscribe(7, "x/#", 1)) == b"\x82\x08\x00\x07\x00\x03x/#\x01"


def test_split_packet_waits_for_a_whole_packet():
    pkt = m.encode_publish("t", b"payload")
    for cut in range(len(pkt)):
        assert m.split_packet(pkt, 0, cut, 100) is None
    assert m.split_packet(pkt, 0, len(pkt), 100) == (0x30, 2, len(pkt))


def test_split_packet_rejects_five_byte_length_and_oversize():
    with raises(MQTTProtocolError):
        m.split_packet(b"\x30\xff\xff\xff\xff\x01", 0, 6, 1 << 30)
    with raises(MQTTProtocolError) as e:
        m.split_packet(b"\x90\x80\x08", 0, 3, 1000)
    assert "max_packet" in str(e.value)
    assert m.split_packet(b"\x30\x80\x08", 0, 3, 1000) == (0x30, 3, 3 + 1024)  # PUBLISH: to be skipped


def test_decode_publish_rejects_malformed():
    bad = (
        (0x34, b"\x00\x01a\x00\x01"),  # QoS 2
        (0x36, b"\x00\x01a\x00\x01"),  # QoS 3
        (0x30, b"\x00"),  # no room for topic length
        (0x30, b"\x00\x05ab"),  # topic beyond the packet
        (0x32, b"\x00\x01a\x00"),  # packet id cut
        (0x32, b"\x00\x01a\x00\x00x"),  # packet id 0
        (0x30, b"\x00\x01+x"),  # wildcard
        (0x30, b"\x00\x00x"),  # empty topic
        (0x30, b"\x00\x02\xff\xfex"),  # not UTF-8
    )
    for first, body in bad:
        with raises(MQTTProtocolError):
            m.decode_publish(first, memoryview(body))


def test_decode_publish_fields():
    got = m.decode_publish(0x3B, memoryview(b"\x00\x03a/b\x00\x09data"))
    assert got == ("a/b", b"data", 1, 9, True, True)


def test_received_messages_queue_in_order_and_qos0_overflow_is_counted():
    c = _client(max_queued=2)
    stream = m.encode_publish("a", b"1") + m.encode_publish("a", b"2", 1, pid=5)
    stream += m.encode_publish("a", b"3") + m.encode_publish("b", b"4", 1, pid=6)
    _feed(c, stream[:5])
    assert c.message() is None
    _feed(c, stream[5:])
    assert c.dropped == 1  # the third (QoS 0) found the queue full; QoS 1 is never dropped
    assert [c.message()[1] for _ in range(3)] == [b"1", b"2", b"4"]
    assert c.message() is None


def test_unexpected_packets_from_the_broker_are_protocol_errors():
    for pkt in (b"\x10\x00", b"\x82\x00", b"\xc0\x00", b"\xe0\x00", b"\x50\x02\x00\x01",
                b"\x41\x02\x00\x01", b"\x20\x02\x00\x00", b"\xd0\x01\x00", b"\xf0\x00"):
        c = _client()
        with raises(MQTTProtocolError):
            _feed(c, pkt)


def test_puback_releases_the_inflight_message():
    c = _client()
    c._inflight = [(1, m.encode_publish("a", b"x", 1, pid=1)), (2, m.encode_publish("a", b"y", 1, pid=2))]
    _feed(c, b"\x40\x02\x00\x02")
    assert [p for p, _ in c._inflight] == [1]
    _feed(c, b"\x40\x02\x00\x09")  # unknown id: ignored
    assert c.pending == 1


def _xorshift(seed):
    state = [seed]

    def nxt(n):
        x = state[0]
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        state[0] = x
        return x % n

    return nxt


def test_fuzzed_broker_bytes_raise_only_protocol_errors():
    rnd = _xorshift(2463534242)
    seeds = (bytes(m.encode_publish("a/b", b"payload", 1, pid=3)), b"\x40\x02\x00\x01", b"\xd0\x00",
             bytes(m.encode_publish("t", b"")))
    for _ in range(1500):
        data = bytearray(seeds[rnd(len(seeds))] + seeds[rnd(len(seeds))])
        for _ in range(1 + rnd(4)):
            data[rnd(len(data))] = rnd(256)
        c = _client(max_packet=64)
        try:
            _feed(c, data)
        except MQTTProtocolError:
            pass
        assert c._fill <= len(data)


def test_oversized_publish_is_skipped_in_pieces_counted_and_acknowledged_in_order():
    c = _client(max_packet=64)
    big = m.encode_publish("in", bytes(500), 1, pid=7)
    stream = m.encode_publish("in", b"before", 1, pid=6) + big + m.encode_publish("in", b"after", 1, pid=8)
    for i in range(0, len(stream), 13):  # arrives 13 bytes at a time
        _feed(c, stream[i:i + 13])
    assert c.oversized == 1 and c._fill == 0
    assert [(pid, t) for t, _, _, pid in c._queue] == [(6, "in"), (7, None), (8, "in")]
    assert c.message()[1] == b"before"
    assert c.message()[1] == b"after"  # the oversized one between them is acknowledged, not returned
    assert c.message() is None


def test_oversized_qos0_publish_is_skipped():
    c = _client(max_packet=32)
    _feed(c, m.encode_publish("t", bytes(100)) + m.encode_publish("t", b"small"))
    assert c.oversized == 1 and c.message()[1] == b"small"


def _bound_socket():
    """(socket, port): a loopback socket bound to a free port (MicroPython's sockets have no getsockname)."""
    import socket

    for port in range(47100, 47400):
        s = socket.socket()
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            return s, port
        except OSError:
            s.close()
    raise AssertionError("no free loopback port in 47100-47399")


def test_a_failed_connect_moves_the_next_one_to_the_next_broker_round_robin():
    a, pa = _bound_socket()  # bound, never listening: TCP connects are refused
    b, pb = _bound_socket()
    c = m.MQTTClient("rr", "127.0.0.1", pa, brokers=[("127.0.0.1", pb)], timeout_ms=500)
    tried = []
    for _ in range(4):
        assert c.broker[1] in (pa, pb)
        tried.append(c.broker[1])
        with raises(MQTTConnectionError) as e:
            c.connect()
        assert "cannot connect to MQTT broker 127.0.0.1:%d" % tried[-1] in str(e.value)
    assert tried == [pa, pb, pa, pb]
    assert c.backoff_ms == 0  # a broker that is down is not one to back off from: the caller paces those
    a.close()
    b.close()


def test_a_broker_that_takes_tcp_but_never_answers_connect_doubles_the_jittered_pause_up_to_30_s():
    listener, port = _bound_socket()
    listener.listen(16)  # the kernel completes each TCP handshake; nobody reads CONNECT
    c = m.MQTTClient("silent", "127.0.0.1", port, timeout_ms=20)
    pauses = []
    for _ in range(9):
        with raises(MQTTConnectionError) as e:
            c.connect()
        assert "no answer" in str(e.value)
        pauses.append(c.backoff_ms)
    listener.close()
    full = (500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000)
    for i in range(9):
        assert full[i] // 2 <= pauses[i] <= full[i], (pauses, i)
    assert len(set(pauses[6:])) > 1  # jittered


def test_the_pause_returns_to_none_after_a_connection_that_stayed_up():
    c = _client()
    c._backoff = 8000
    c._up_at = ticks_ms()  # dropped at once after CONNACK: twice the pause
    c._lost()
    assert 8000 <= c.backoff_ms <= 16000
    c._up_at = ticks_add(ticks_ms(), -31000)
    c._lost()  # up for longer than the longest pause: the brokers are fine again
    assert c.backoff_ms == 0
    c._up_at = ticks_ms()
    c._lost()
    assert 250 <= c.backoff_ms <= 500


def test_jitter_differs_between_clients_with_different_ids():
    draws = set()
    for i in range(8):
        c = m.MQTTClient("board-%d" % i, "127.0.0.1")
        c._lost()
        draws.add(c.backoff_ms)
    assert len(draws) > 1 and all(250 <= d <= 500 for d in draws)
