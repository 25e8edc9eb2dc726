"""What the bridge tells: a caller whose call it dropped, an operator whose broker it cannot reach.

Real mosquitto, real paho callers (PahoTransport + Node), the bridge in this process or as `spoolbus bridge`.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho
import pytest
from mosquitto import Broker, free_port
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus import errors, node
from spoolbus_host.bridge import uplink
from spoolbus_host.bridge.gateway import Bridge
from spoolbus_host.mqtt.paho import PahoTransport
from test_bridge import _Fake, wait_for


@pytest.fixture
def served(tmp_path, mosquitto):
    """Bridge A (max_message 1024) with one device A/dev, run in a thread; a paho caller host/caller."""
    a = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox"), max_message=1024)
    a.attach("dev", _Fake())
    stop = threading.Event()
    thread = threading.Thread(target=a.run, args=(stop,), daemon=True)
    thread.start()
    assert wait_for(lambda: a.uplink)
    caller = node.Node("host/caller", PahoTransport("127.0.0.1", mosquitto.port, "host", "caller",
                                                      clean_session=True, presence=False))
    yield a, caller
    caller.transport.close()
    stop.set()
    thread.join(5)
    a.close()


def refused(caller: node.Node, dst: str, body: dict) -> tuple[errors.RemoteError, float]:
    start = time.monotonic()
    with pytest.raises(errors.RemoteError) as e:
        caller.call(dst, "thermo.read", body, timeout=10)
    return e.value, time.monotonic() - start


def test_a_call_to_a_device_the_bridge_does_not_have_gets_unreachable_not_a_timeout(served):
    a, caller = served
    e, took = refused(caller, "A/ghost", {"sensor": "t"})
    assert e.type == "unreachable" and "no such device 'ghost'" in e.message and took < 3
    # The bridge thread counts a refusal once its reply is sent: the caller may see the reply first.
    assert wait_for(lambda: a.stats["unroutable_in"] == 1 and a.stats["refused_calls"] == 1), a.stats


def test_a_call_larger_than_the_bridge_takes_gets_too_large_not_a_timeout(served):
    a, caller = served
    e, took = refused(caller, "A/dev", {"blob": "x" * 2000})
    assert e.type == "too_large" and "at most 1024" in e.message and took < 3
    assert wait_for(lambda: a.stats["oversized_in"] == 1 and a.stats["refused_calls"] == 1), a.stats


def test_a_bridge_says_it_cannot_connect_why_and_when_it_is_connected(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(uplink, "SILENT_S", 1.0)
    port = free_port()
    with caplog.at_level(logging.INFO, logger="spoolbus.bridge"):
        a = Bridge("A", "127.0.0.1", port, str(tmp_path / "outbox"))
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                a.step(20)
            broker = Broker(tmp_path / "broker", port=port).start()
            try:
                assert wait_for(lambda: a.step(20) >= 0 and a.uplink)
            finally:
                a.close()
                broker.stop()
        finally:
            a.client.loop_stop()
    lines = [r.getMessage() for r in caplog.records]
    refused = [m for m in lines if "cannot connect" in m]
    assert len(refused) == 1 and "ConnectionRefusedError" in refused[0] and "retrying" in refused[0]
    assert any("not connected to the broker" in m and "retrying" in m for m in lines)
    assert lines[-1].startswith(f"A: connected to the broker at 127.0.0.1:{port} after ")
    assert "s down" in lines[-1] and "attempts" in lines[-1]


def test_a_bridge_on_a_broker_that_never_answers_says_so(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(uplink, "SILENT_S", 1.0)
    with socket.socket() as silent:  # accepts the connection, never sends a CONNACK
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with caplog.at_level(logging.INFO, logger="spoolbus.bridge"):
            a = Bridge("A", "127.0.0.1", silent.getsockname()[1], str(tmp_path / "outbox"))
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                a.step(20)
            a.close()
    said = [r.getMessage() for r in caplog.records if "not connected to the broker" in r.getMessage()]
    assert len(said) == 1 and "no answer to CONNECT" in said[0] and "retrying" in said[0]


def retained(port: int, topics: str, seconds: float = 1.0) -> dict[str, bytes]:
    """The retained messages under `topics` on the broker."""
    got: dict[str, bytes] = {}
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    c.on_message = lambda cl, u, m: got.__setitem__(m.topic, m.payload) if m.retain else None
    c.connect("127.0.0.1", port)
    c.subscribe(topics, 1)
    c.loop_start()
    time.sleep(seconds)
    c.loop_stop()
    c.disconnect()
    return got


def test_a_bridge_that_refuses_to_start_leaves_no_status_on_the_broker(tmp_path, mosquitto):
    r = subprocess.run([sys.executable, "-m", "spoolbus_host.cli", "bridge", "gw9", "--outbox",
                        str(tmp_path / "outbox"), "--serial", f"dev={tmp_path / 'no-such-port'}",
                        "--broker", f"127.0.0.1:{mosquitto.port}"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert retained(mosquitto.port, "spoolbus/gw9/#") == {}


def test_a_foreign_file_in_a_spool_of_the_bridge_is_quarantined_counted_and_logged(tmp_path, caplog):
    from spoolbus.transport.spool import SpoolTransport, inbox_dir

    root = tmp_path / "spool"
    SpoolTransport(str(root), "A/dev", gateway="A/_bridge").close()  # a device there
    a = Bridge("A", "127.0.0.1", free_port(), str(tmp_path / "outbox"))
    try:
        a.attach_spool(str(root))
        (root / inbox_dir("A/_bridge") / "new" / "stray.txt").write_bytes(b"not a record")
        with caplog.at_level(logging.WARNING, logger="spoolbus.bridge"):
            a.step(0)
            a.step(0)
        assert a.stats["quarantined"] == 1
        said = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
        assert len(said) == 1 and "stray.txt" in said[0]
    finally:
        a.close()
        a.client.loop_stop()
