"""Presence that does not lean on retained messages or last wills (docs/protocol.md §7, "Presence"):
heartbeats make a silent node stale, who-queries tell a late joiner who is online. Real mosquitto,
a real MicroPython node."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import paho.mqtt.client as paho
from mpproc import MicroPython
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus.transport.mqtt import STALE_FACTOR, status_topic
from spoolbus_host.mqtt.paho import PahoTransport
from waiting import until

BEAT_S = 0.3
BOARD = """
import sys
from spoolbus.transport.mqtt_client import MQTTClient
from spoolbus.transport.mqtt import MQTTTransport
client = MQTTClient("gw/board", "127.0.0.1", int(sys.argv[1]), keepalive=60)
t = MQTTTransport(client, "gw", "board", heartbeat_ms=300)
print("up")
while True:
    t.recv(50)
"""




def test_a_node_that_stops_beating_goes_stale_though_the_broker_never_says_so(tmp_path, mosquitto):
    host = PahoTransport("127.0.0.1", mosquitto.port, "gw", "host", heartbeat_s=BEAT_S)
    board = MicroPython(tmp_path, BOARD, mosquitto.port)
    try:
        board.expect("up")
        until(lambda: host.peers() == ["gw/board"], 5)
        time.sleep(BEAT_S * STALE_FACTOR * 2)  # its heartbeats keep it online past the stale time
        assert host.peers() == ["gw/board"]
        board.proc.send_signal(signal.SIGSTOP)  # its TCP connection stays open: no will, no offline
        stale = until(lambda: host.peers() == [], 5)
        assert stale <= BEAT_S * STALE_FACTOR + 0.2, stale
        board.proc.send_signal(signal.SIGCONT)
        back = until(lambda: host.peers() == ["gw/board"], 5)
        assert back <= BEAT_S + 0.5, back
    finally:
        board.kill()
        host.close()


def test_a_late_joiner_learns_who_is_online_without_retained_statuses(tmp_path, mosquitto):
    board = MicroPython(tmp_path, BOARD, mosquitto.port)
    early = PahoTransport("127.0.0.1", mosquitto.port, "gw", "early")
    try:
        board.expect("up")
        until(lambda: early.peers() == ["gw/board"], 5)
        # As a broker that keeps no retained message would: none is left for a new subscriber.
        c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        for node in ("board", "early"):
            c.publish(status_topic("spoolbus", "gw", node), b"", qos=1, retain=True).wait_for_publish(5)
        c.loop_stop()
        c.disconnect()
        late = PahoTransport("127.0.0.1", mosquitto.port, "gw", "late", heartbeat_s=60)
        try:
            took = until(lambda: late.peers() == ["gw/board", "gw/early"], 5)
            assert took < 1.5, took  # answered at once, not at the next heartbeat (10 s)
        finally:
            late.close()
    finally:
        board.kill()
        early.close()


def _spoolbus(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spoolbus_host.cli", *args], capture_output=True, text=True,
                          timeout=30)


def test_monitor_shows_a_status_once_not_each_heartbeat_and_devices_lists_who_is_online(tmp_path, mosquitto):
    board = MicroPython(tmp_path, BOARD, mosquitto.port)
    broker = f"127.0.0.1:{mosquitto.port}"
    try:
        board.expect("up")
        mon = _spoolbus("monitor", "gw/+", "--broker", broker, "--json", "--seconds", "2")
        statuses = [json.loads(line) for line in mon.stdout.splitlines()]
        assert mon.returncode == 0 and statuses == [
            {"topic": "spoolbus/gw/board/status", "node": "gw/board", "what": "status", "status": "online"}]
        r = _spoolbus("devices", "--broker", broker, "--json")
        assert r.returncode == 0 and json.loads(r.stdout) == [{"node": "gw/board", "online": True}], r.stderr
    finally:
        board.kill()
