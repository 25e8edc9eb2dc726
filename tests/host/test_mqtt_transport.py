"""The MQTT transport: MicroPython node and paho node on one real broker, topics, presence, reconnects."""

from __future__ import annotations

import pathlib
import subprocess
import time

import cbor2
import paho.mqtt.client as paho
import pytest
from mosquitto import Broker, ScriptedBroker, make_certs
from mpproc import MicroPython
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus import node
from spoolbus.transport import mqtt_client
from spoolbus.transport.mqtt import base_topic, inbox_topic, split_topic, status_topic, topic_filter
from spoolbus_host.mqtt.paho import PahoTransport

PRELUDE = """
import sys, time
from spoolbus import errors, node
from spoolbus.transport import mqtt_client
from spoolbus.transport.mqtt_client import MQTTClient
from spoolbus.transport.mqtt import MQTTTransport
PORT = int(sys.argv[1])

def node(bridge, device, **kw):
    client = MQTTClient(bridge + "/" + device, "127.0.0.1", PORT, keepalive=5, clean_session=False)
    return MQTTTransport(client, bridge, device, retry_ms=100, **kw)

def recv(t, timeout_ms=10000):
    start = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), start) < timeout_ms:
        data = t.recv(100)
        if data is not None:
            return data
    raise OSError("nothing received")
"""


def _recv(t: PahoTransport, timeout: float = 10.0) -> bytes:
    data = t.recv(int(timeout * 1000))
    assert data is not None, "nothing received"
    return data


def _check_a_reaches_b(port: int, data: bytes, **options: object) -> None:
    """Two transports of one gateway with the same connect options (user, TLS): what a sends, b gets."""
    a = PahoTransport("127.0.0.1", port, "gw", "a", **options)
    b = PahoTransport("127.0.0.1", port, "gw", "b", **options)
    try:
        a.send("b", data)
        assert _recv(b) == data
    finally:
        a.close()
        b.close()


class Watcher:
    """A plain paho subscriber that records (topic, payload, retain) on a topic filter."""

    def __init__(self, port: int, topic: str):
        self.got: list[tuple[str, bytes, bool]] = []
        self.c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.c.on_message = lambda c, u, msg: self.got.append((msg.topic, msg.payload, msg.retain))
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(topic, 1)
        self.c.loop_start()

    def wait_for(self, payload: bytes, timeout: float = 10.0) -> tuple[str, bytes, bool]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.got:
                if item[1] == payload:
                    return item
            time.sleep(0.02)
        raise AssertionError(f"{payload!r} not seen; got {self.got}")

    def stop(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_topic_layout():
    assert base_topic("spoolbus", "gw1", "pump") == "spoolbus/gw1/pump"
    assert inbox_topic("spoolbus", "gw1", "pump") == "spoolbus/gw1/pump/inbox"
    assert inbox_topic("spoolbus", "gw1", "gw2/valve") == "spoolbus/gw2/valve/inbox"
    for bad in ("", "a+", "#", "gw2/a/b"):
        with pytest.raises(ValueError):
            inbox_topic("spoolbus", "gw1", bad)
    assert status_topic("site", "gw1", "pump") == "site/gw1/pump/status"
    assert topic_filter("site", "status", "gw1") == "site/gw1/+/status"
    assert topic_filter("site", "inbox") == "site/+/+/inbox"
    assert split_topic("site", "site/gw1/pump/events/alarm") == ("gw1/pump", "events/alarm")
    for other in ("spoolbus/gw1/pump/status", "site/gw1/pump", "site//pump/inbox", "site/gw1/pump/"):
        assert split_topic("site", other) is None, other


def test_micropython_and_paho_nodes_exchange_messages_both_ways(tmp_path, mosquitto):
    host = PahoTransport("127.0.0.1", mosquitto.port, "B", "host")
    mp = MicroPython(tmp_path, PRELUDE + """
t = node("A", "board")
print("ready")
for i in range(20):
    t.send("B/host", b"up %d" % i)
for i in range(20):
    print("down", recv(t).decode())
t.close()
""", mosquitto.port)
    try:
        mp.expect("ready")
        assert [_recv(host) for _ in range(20)] == [b"up %d" % i for i in range(20)]
        for i in range(20):
            host.send("A/board", b"down %d" % i)
        assert [mp.expect("down") for _ in range(20)] == [f"down {i}" for i in range(20)]
        assert mp.wait() == 0
    finally:
        mp.kill()
        host.close()


def test_envelopes_on_the_broker_are_plain_cbor(tmp_path, mosquitto):
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-q", "1",
                            "-t", "spoolbus/gw/pump/inbox", "-C", "1", "-F", "%t %x"],
                           stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    mp = MicroPython(tmp_path, PRELUDE + """
from spoolbus import wire
t = node("gw", "sensor")
env = wire.Envelope(kind=wire.CALL, id=7, src="gw/sensor", dst="gw/pump", method="pump.start",
                    version="1.0", body={"rpm": 1200})
t.send("pump", wire.encode(env))
t.close()
print("sent")
""", mosquitto.port)
    try:
        assert mp.expect("sent") == ""
        out, _ = sub.communicate(timeout=10)
    finally:
        sub.kill()
    topic, hexpayload = out.split()
    assert topic == "spoolbus/gw/pump/inbox"
    env = cbor2.loads(bytes.fromhex(hexpayload))
    assert env[0] == [1, 0] and env[1] == 0 and env[2] == 7
    assert (env[3], env[4], env[5], env[6], env[7]) == ("gw/sensor", "gw/pump", "pump.start", "1.0",
                                                         {"rpm": 1200})


def test_status_is_retained_online_then_offline_by_last_will_on_kill_9(tmp_path, mosquitto):
    watcher = Watcher(mosquitto.port, "spoolbus/site/+/status")
    mp = MicroPython(tmp_path, PRELUDE + """
t = node("site", "dying")
print("online")
while True:
    t.recv(1000)
""", mosquitto.port)
    try:
        mp.expect("online")
        assert watcher.wait_for(b"online")[0] == "spoolbus/site/dying/status"
        mp.proc.kill()  # SIGKILL: no DISCONNECT, the broker publishes the will
        mp.proc.wait()
        watcher.wait_for(b"offline", 5)
    finally:
        mp.kill()
        watcher.stop()
    late = Watcher(mosquitto.port, "spoolbus/site/dying/status")
    try:
        assert late.wait_for(b"offline") == ("spoolbus/site/dying/status", b"offline", True)
    finally:
        late.stop()


def test_close_publishes_offline_status(mosquitto):
    t = PahoTransport("127.0.0.1", mosquitto.port, "site", "polite")
    watcher = Watcher(mosquitto.port, "spoolbus/site/polite/status")
    try:
        watcher.wait_for(b"online")
        t.close()
        watcher.wait_for(b"offline")
    finally:
        watcher.stop()


def test_micropython_node_receives_what_was_sent_while_the_broker_restarted(tmp_path, mosquitto):
    mp = MicroPython(tmp_path, PRELUDE + """
t = node("A", "survivor")
print("ready")
got = []
while len(got) < 4:
    data = t.recv(100)
    if data is not None:
        got.append(data.decode())
        print("got", got[-1])
t.close()
""", mosquitto.port)
    try:
        mp.expect("ready")
        sender = PahoTransport("127.0.0.1", mosquitto.port, "B", "sender")
        sender.send("A/survivor", b"before")
        assert mp.expect("got") == "before"
        sender.close()
        mosquitto.stop()  # SIGTERM: mosquitto saves the survivor's persistent session
        time.sleep(0.5)  # the node's recv() finds the link down and keeps retrying
        mosquitto.start()
        sender = PahoTransport("127.0.0.1", mosquitto.port, "B", "sender")
        for word in (b"after1", b"after2", b"after3"):
            sender.send("A/survivor", word)
        assert [mp.expect("got") for _ in range(3)] == ["after1", "after2", "after3"]
        sender.close()
        assert mp.wait() == 0
    finally:
        mp.kill()


def test_paho_transport_with_user_and_password(mosquitto_auth):
    with pytest.raises(mqtt_client.MQTTRefused):
        PahoTransport("127.0.0.1", mosquitto_auth.port, "gw", "x", user="device", password="wrong", timeout=3)
    _check_a_reaches_b(mosquitto_auth.port, b"hello", user="device", password="s3cret")


def test_paho_send_while_broker_is_down_raises_connection_error(mosquitto):
    t = PahoTransport("127.0.0.1", mosquitto.port, "gw", "lonely")
    try:
        mosquitto.stop()
        deadline = time.monotonic() + 5
        while t.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(mqtt_client.MQTTConnectionError):
            t.send("other", b"x")
    finally:
        t.close()


def test_micropython_node_survives_a_bad_broker_packet_and_reconnects(tmp_path):
    broker = ScriptedBroker()
    mp = MicroPython(tmp_path, PRELUDE + """
t = node("gw", "tough")
while t.recv(100) is None and t.last_error is None:
    pass
print("error", type(t.last_error).__name__, t.client.connected)
print("got", recv(t).decode())
""", broker.port)
    try:
        for _ in range(2):
            broker.handshake()
            assert broker.answer_subscribe() == "spoolbus/gw/tough/inbox"
            assert broker.answer_subscribe() == "spoolbus/gw/+/status"
            assert broker.answer_subscribe() == "spoolbus/_who"
            first, body = broker.packet()  # the retained "online" status
            assert first == 0x33 and body.endswith(b"online")
            broker.conn.sendall(b"\x40\x02" + body[26:28])  # PUBACK it
            if _ == 0:
                broker.conn.sendall(b"\x30\xff\xff\xff\xff\x01")
                assert mp.expect("error") == "MQTTProtocolError False"
        broker.conn.sendall(b"\x30\x1e\x00\x17spoolbus/gw/tough/inboxhello")
        assert mp.expect("got") == "hello"
        assert mp.wait() == 0
    finally:
        mp.kill()
        broker.close()


def test_rpc_between_a_micropython_node_and_a_cpython_node_through_mosquitto(tmp_path, mosquitto):
    mp = MicroPython(tmp_path, PRELUDE + """
from spoolbus import contract, node as nd
THERMO = contract.Service("thermo", "1.2")
THERMO.method("read", ("sensor", str))

class Thermo:
    def read(self, sensor):
        return {"sensor": sensor, "value": 21.5}

n = nd.Node("gw/thermo", node("gw", "thermo"))
n.serve(THERMO, Thermo())
print("serving")
while True:
    n.poll(100)
""", mosquitto.port)
    host = node.Node("gw/host", PahoTransport("127.0.0.1", mosquitto.port, "gw", "host"))
    try:
        mp.expect("serving")
        deadline = time.monotonic() + 5
        while "gw/thermo" not in host.transport.peers() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert host.transport.peers() == ["gw/thermo"]
        assert host.hello() == 1
        while host.peer_version("gw/thermo", "thermo") is None and time.monotonic() < deadline:
            host.poll(100)
        assert host.peer_version("gw/thermo", "thermo") == "1.2"
        for i in range(20):
            got = host.call("gw/thermo", "thermo.read", {"sensor": f"t{i}"}, timeout=5)
            assert got == {"sensor": f"t{i}", "value": 21.5}
    finally:
        mp.kill()
        host.close()


def test_inbox_message_not_yet_taken_when_the_node_dies_is_delivered_after_restart(tmp_path, mosquitto):
    script = PRELUDE + """
t = node("gw", "mortal")
print("ready")
print("took", recv(t).decode())
while True:
    t.client.poll(100)  # the rest arrive and wait in the client, unacknowledged
"""
    mp = MicroPython(tmp_path, script, mosquitto.port)
    sender = PahoTransport("127.0.0.1", mosquitto.port, "gw", "sender")
    try:
        mp.expect("ready")
        for word in (b"m1", b"m2", b"m3"):
            sender.send("mortal", word)
        assert mp.expect("took") == "m1"
        time.sleep(0.3)
        mp.proc.kill()
        mp.proc.wait()
        again = MicroPython(tmp_path, script.replace('print("took", recv(t).decode())', """
print("took", recv(t).decode())
print("took", recv(t).decode())
t.close()
raise SystemExit"""), mosquitto.port)
        try:
            assert [again.expect("took"), again.expect("took")] == ["m2", "m3"]
            assert again.wait() == 0
        finally:
            again.kill()
    finally:
        mp.kill()
        sender.close()


def test_paho_transport_over_tls_verifies_the_broker_certificate(tmp_path):
    ca, cert, key = make_certs(tmp_path / "certs")
    other_ca, _, _ = make_certs(tmp_path / "other")
    broker = Broker(tmp_path / "tls", tls=(ca, cert, key)).start()
    try:
        _check_a_reaches_b(broker.port, b"sealed", tls={"ca_certs": str(ca)})
        with pytest.raises(mqtt_client.MQTTConnectionError, match="certificate verify failed"):
            PahoTransport("127.0.0.1", broker.port, "gw", "c", tls={"ca_certs": str(other_ca)}, timeout=3)
        with pytest.raises(mqtt_client.MQTTConnectionError):
            PahoTransport("127.0.0.1", broker.port, "gw", "d", timeout=3)  # plain MQTT on a TLS port
    finally:
        broker.stop()


ACL = pathlib.Path(__file__).resolve().parents[2] / "examples" / "mosquitto" / "spoolbus.acl"


def test_example_acl_confines_a_bridge_to_its_own_topics(tmp_path):
    broker = Broker(tmp_path / "acl", users={"gw1": "p1", "gw2": "p2", "monitor": "pm"},
                    extra=f"acl_file {ACL}").start()
    watcher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    seen: list[tuple[str, bytes]] = []
    watcher.on_message = lambda c, u, msg: seen.append((msg.topic, msg.payload))
    watcher.username_pw_set("monitor", "pm")
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe("spoolbus/#", 1)
    watcher.loop_start()
    gw1 = PahoTransport("127.0.0.1", broker.port, "gw1", "dev", user="gw1", password="p1")
    gw2 = PahoTransport("127.0.0.1", broker.port, "gw2", "dev", user="gw2", password="p2")
    try:
        gw1.send("gw2/dev", b"allowed: another bridge's inbox")
        assert _recv(gw2) == b"allowed: another bridge's inbox"
        assert gw2.peers() == []  # peers() lists the same bridge only
        forged = [("spoolbus/gw2/dev/status", b"offline"), ("spoolbus/gw2/dev/events/alarm", b"forged"),
                  ("spoolbus/other/x/inbox", b"ok"), ("elsewhere/topic", b"forged")]
        for topic, payload in forged:
            gw1.client.publish(topic, payload, 1).wait_for_publish(5)
        mon = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        mon.username_pw_set("monitor", "pm")
        mon.connect("127.0.0.1", broker.port)
        mon.loop_start()
        mon.publish("spoolbus/gw1/dev/status", b"offline", 1).wait_for_publish(5)  # PUBACKed, then dropped
        mon.loop_stop()
        mon.disconnect()
        time.sleep(0.5)
        got = set(seen)
        assert ("spoolbus/other/x/inbox", b"ok") in got
        assert ("spoolbus/gw2/dev/status", b"offline") not in got
        assert ("spoolbus/gw2/dev/events/alarm", b"forged") not in got
        assert ("spoolbus/gw1/dev/status", b"offline") not in got  # the monitor cannot publish
        assert ("spoolbus/gw1/dev/status", b"online") in got and ("spoolbus/gw2/dev/status", b"online") in got
    finally:
        gw1.close()
        gw2.close()
        watcher.loop_stop()
        broker.stop()


def test_oversized_inbox_message_is_skipped_counted_and_not_redelivered(tmp_path, mosquitto):
    script = PRELUDE.replace("keepalive=5,", "keepalive=5, max_packet=1024,") + """
t = node("gw", "small")
print("ready")
print("got", recv(t).decode(), t.client.oversized)
t.client.disconnect()
"""
    sender = PahoTransport("127.0.0.1", mosquitto.port, "gw", "sender")
    try:
        mp = MicroPython(tmp_path, script, mosquitto.port)
        mp.expect("ready")
        sender.send("small", bytes(5000))
        sender.send("small", b"fits")
        assert mp.expect("got") == "fits 1"
        assert mp.wait() == 0
        again = MicroPython(tmp_path, script, mosquitto.port)
        again.expect("ready")
        sender.send("small", b"next")
        assert again.expect("got") == "next 0"  # the big one was acknowledged: it does not come back
        assert again.wait() == 0
    finally:
        sender.close()


def test_a_spoolbus_call_leaves_no_retained_message_on_the_broker(mosquitto):
    import sys
    import threading

    from spoolbus import contract

    echo = contract.Service("echo", "1.0")
    echo.method("echo", ("x", int))

    class Echo:
        def echo(self, x):
            return x

    server = node.Node("gw/echo", PahoTransport("127.0.0.1", mosquitto.port, "gw", "echo"))
    server.serve(echo, Echo())
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [server.poll(50) for _ in iter(stop.is_set, True)], daemon=True)
    thread.start()
    try:
        r = subprocess.run([sys.executable, "-m", "spoolbus_host.cli", "call", "gw/echo", "echo.echo", "x=3",
                            "--broker", f"127.0.0.1:{mosquitto.port}"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
    finally:
        stop.set()
        thread.join(5)
    retained: dict[str, bytes] = {}
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    c.on_message = lambda cl, u, m: retained.__setitem__(m.topic, m.payload) if m.retain else None
    c.connect("127.0.0.1", mosquitto.port)
    c.subscribe("spoolbus/#", 1)
    c.loop_start()
    time.sleep(1)
    c.loop_stop()
    server.transport.close()
    assert "spoolbus/gw/echo/status" in retained  # a long-lived node has presence
    assert not [t for t in retained if t.startswith("spoolbus/host/")], retained
