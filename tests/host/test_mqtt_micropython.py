"""The portable MQTT client under MicroPython, against a real mosquitto and a scripted broker."""

from __future__ import annotations

import json
import signal
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mosquitto import Broker, ScriptedBroker
from mpproc import MicroPython, compile_mpy
from spoolbus.transport import mqtt_client
from spoolbus.transport import mqtt_client as m
from test_mqtt_client import _feed

PRELUDE = """
import sys, time, json
from spoolbus import errors
from spoolbus.transport import mqtt_client
from spoolbus.transport.mqtt_client import MQTTClient
PORT = int(sys.argv[1])
"""


@pytest.fixture
def scripted():
    broker = ScriptedBroker()
    yield broker
    broker.close()


def test_micropython_client_round_trips_qos0_qos1_and_retained(tmp_path, mosquitto):
    mp = MicroPython(tmp_path, PRELUDE + """
c = MQTTClient("mp-rt", "127.0.0.1", PORT, keepalive=30)
c.connect()
c.publish("rt/kept", b"retained", 1, True)
c.subscribe("rt/#", 1)
c.publish("rt/a", b"zero", 0)
c.publish("rt/b", bytes(range(256)) * 8, 1)
got = []
while len(got) < 3 or c.pending:
    c.poll(100)
    while True:
        msg = c.message()
        if msg is None:
            break
        got.append([msg[0], len(msg[1]), msg[2]])
print("got", json.dumps(got))
c.disconnect()
""", mosquitto.port)
    got = json.loads(mp.expect("got"))
    assert got == [["rt/kept", 8, True], ["rt/a", 4, False], ["rt/b", 2048, False]]
    assert mp.wait() == 0


def test_unacknowledged_qos1_is_resent_after_the_broker_is_killed_and_restarted(tmp_path):
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    broker = Broker(tmp_path / "b1").start()
    mp = MicroPython(tmp_path, PRELUDE + """
c = MQTTClient("mp-redeliver", "127.0.0.1", PORT, keepalive=0, timeout_ms=2000)
c.connect()
print("connected")
sys.stdin.readline()
for i in range(5):
    c.publish("redeliver/t", ("m%d" % i).encode(), 1)
print("published", c.pending)
sys.stdin.readline()
while True:
    try:
        c.connect()
        break
    except mqtt_client.MQTTConnectionError:
        time.sleep_ms(50)
while c.pending:
    c.poll(100)
print("acked", c.pending)
""", broker.port)
    try:
        mp.expect("connected")
        broker.proc.send_signal(signal.SIGSTOP)  # the broker stops reading: no PUBACK can come
        mp.send("publish")
        assert mp.expect("published") == "5"
        broker.proc.kill()  # the five publishes die in its socket buffer
        broker.proc.wait()
        broker.proc = None
        broker.start()
        got: list[bytes] = []
        sub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        sub.on_message = lambda c, u, msg: got.append(msg.payload)
        sub.connect("127.0.0.1", broker.port)
        sub.subscribe("redeliver/t", 1)
        sub.loop_start()
        time.sleep(0.3)
        mp.send("reconnect")
        assert mp.expect("acked") == "0"
        deadline = time.monotonic() + 5
        while len(got) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        sub.loop_stop()
        assert got == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    finally:
        mp.kill()
        broker.stop()


def test_resent_publish_carries_dup_flag_and_the_same_packet_id(tmp_path, scripted):
    mp = MicroPython(tmp_path, PRELUDE + """
c = MQTTClient("mp-dup", "127.0.0.1", PORT, keepalive=0, timeout_ms=3000)
c.connect()
c.publish("d/t", b"once", 1)
while True:
    try:
        c.poll(100)
    except mqtt_client.MQTTConnectionError:
        break
c.connect()
while c.pending:
    c.poll(100)
print("done")
""", scripted.port)
    scripted.handshake()
    first, body = scripted.packet()
    assert first == 0x32 and body[:5] == b"\x00\x03d/t"
    pid = body[5:7]
    scripted.conn.close()  # no PUBACK: the client must send it again
    scripted.handshake()
    first2, body2 = scripted.packet()
    assert first2 == 0x32 | 0x08 and body2 == body
    scripted.conn.sendall(b"\x40\x02" + pid)
    assert mp.expect("done", 10) == ""
    assert mp.wait() == 0


@pytest.mark.parametrize(
    "bad, why",
    [
        (b"\x30\xff\xff\xff\xff\x01", "remaining length longer than 4 bytes"),
        (b"\x90\x80\x80\x04", "exceeds max_packet"),
        (b"\x34\x06\x00\x01a\x00\x01x", "QoS 2"),
        (b"\x30\x05\x00\x09abc", "beyond the packet"),
        (b"\x90\x03\x00\x01\x00", "unexpected packet"),
        (b"\x82\x00", "reserved flags"),
        (b"\xc0\x00", "unexpected packet"),
    ],
)
def test_micropython_client_rejects_bad_broker_packets_with_protocol_error(tmp_path, scripted, bad, why):
    mp = MicroPython(tmp_path, PRELUDE + """
c = MQTTClient("mp-bad", "127.0.0.1", PORT, keepalive=0, max_packet=1024)
try:
    c.connect()  # the bad packet may come in the same read as CONNACK
    while True:
        c.poll(100)
except mqtt_client.MQTTProtocolError as e:
    print("protocol error:", e, c.connected)
""", scripted.port)
    scripted.handshake()
    scripted.conn.sendall(bad)
    line = mp.expect("protocol error:")
    assert why in line and line.endswith("False")
    assert mp.wait() == 0


def test_keepalive_pings_keep_an_idle_client_connected(tmp_path, mosquitto):
    mp = MicroPython(tmp_path, PRELUDE + """
c = MQTTClient("mp-ka", "127.0.0.1", PORT, keepalive=1)
c.connect()
c.subscribe("ka/t", 0)
start = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), start) < 3500:
    c.poll(200)
c.publish("ka/t", b"still here", 0)
while c.poll(100) == 0:
    pass
print("got", c.message()[1].decode())
""", mosquitto.port)
    assert mp.expect("got", 15) == "still here"
    assert mp.wait() == 0
    assert "exceeded timeout" not in mosquitto.log.read_text()


def test_silent_broker_is_detected_by_missing_pingresp(tmp_path, mosquitto):
    mp = MicroPython(tmp_path, PRELUDE + """
c = MQTTClient("mp-ka2", "127.0.0.1", PORT, keepalive=1)
c.connect()
print("connected")
start = time.ticks_ms()
try:
    while True:
        c.poll(100)
except mqtt_client.MQTTConnectionError as e:
    print("lost after", time.ticks_diff(time.ticks_ms(), start), e)
""", mosquitto.port)
    mp.expect("connected")
    mosquitto.proc.send_signal(signal.SIGSTOP)
    try:
        lost = mp.expect("lost after", 10)
    finally:
        mosquitto.proc.send_signal(signal.SIGCONT)
    ms = int(lost.split()[0])
    assert 1000 <= ms <= 3000 and "PINGREQ" in lost
    assert mp.wait() == 0


def test_user_name_and_password(tmp_path, mosquitto_auth):
    mp = MicroPython(tmp_path, PRELUDE + """
for user, pw in (("device", "s3cret"), ("device", "wrong"), (None, None)):
    c = MQTTClient("mp-auth", "127.0.0.1", PORT, user=user, password=pw)
    try:
        c.connect()
        print("result", user, pw, "connected")
        c.disconnect()
    except mqtt_client.MQTTRefused as e:
        print("result", user, pw, "refused", e.code, e)
""", mosquitto_auth.port)
    assert mp.expect("result") == "device s3cret connected"
    wrong = mp.expect("result").split()
    anonymous = mp.expect("result").split()
    assert wrong[2] == "refused" and wrong[3] in ("4", "5")
    assert anonymous[2] == "refused" and anonymous[3] in ("4", "5")
    assert mp.wait() == 0


def test_connect_to_a_closed_port_is_a_connection_error(tmp_path):
    from mosquitto import free_port

    mp = MicroPython(tmp_path, PRELUDE + """
try:
    MQTTClient("x", "127.0.0.1", PORT).connect()
except mqtt_client.MQTTConnectionError as e:
    print("error", e)
""", free_port())
    assert "cannot connect" in mp.expect("error")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6))
def test_arbitrary_broker_bytes_raise_only_protocol_errors(chunks):
    c = m.MQTTClient("fuzz", "127.0.0.1", max_packet=256)
    try:
        for chunk in chunks:
            _feed(c, chunk)
            while c.message() is not None:
                pass
    except mqtt_client.MQTTProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40).filter(lambda t: not set(t) & set("+#\x00")),
       st.binary(max_size=300), st.integers(0, 1), st.booleans(), st.integers(1, 65535))
def test_publish_encoding_round_trips_through_the_parser(topic, payload, qos, retain, pid):
    pkt = m.encode_publish(topic, payload, qos, retain, pid if qos else 0)
    first, a, b = m.split_packet(pkt, 0, len(pkt), 1 << 16)
    assert b == len(pkt)
    got = m.decode_publish(first, memoryview(pkt)[a:b])
    assert got == (topic, payload, qos, pid if qos else 0, retain, False)


def test_compiled_transport_connects_and_round_trips_in_a_48k_heap(tmp_path, mosquitto):
    path = compile_mpy(tmp_path / "mpy", "errors", "names", "transport/__init__", "transport/mqtt_client",
                       "transport/mqtt")
    mp = MicroPython(tmp_path, PRELUDE + """
import gc
from spoolbus.transport.mqtt import MQTTTransport
t = MQTTTransport(MQTTClient("gw/tiny", "127.0.0.1", PORT, max_packet=1024), "gw", "tiny")
t.send("tiny", b"to myself")
while True:
    data = t.recv(100)
    if data is not None:
        break
gc.collect()
print("got", data.decode(), gc.mem_free())
t.close()
""", mosquitto.port, heap="48k", path=path)
    got = mp.expect("got").rsplit(" ", 1)
    assert got[0] == "to myself" and int(got[1]) > 8 * 1024
    assert mp.wait() == 0


def test_failed_connects_do_not_leak_sockets(tmp_path):
    from mosquitto import free_port

    mp = MicroPython(tmp_path, PRELUDE + """
import socket
c = MQTTClient("x", "127.0.0.1", PORT)
for i in range(200):
    try:
        c.connect()
    except mqtt_client.MQTTConnectionError:
        pass
print("fd", socket.socket().fileno())
""", free_port())
    assert int(mp.expect("fd")) < 10  # a board retrying every second would otherwise run out
