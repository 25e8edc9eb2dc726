"""A bridge and a caller given several brokers: two independent mosquittos, the first SIGKILLed under a
stream of calls to a MicroPython spool device; a broker that takes TCP and closes it at once; the
`spoolbus bridge` command with two --broker. Real processes, loopback only."""

from __future__ import annotations

import json
import logging
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from mosquitto import Broker, free_port
from spoolbus.node import Node
from spoolbus.transport.mqtt_client import MQTTConnectionError
from spoolbus_host.bridge.gateway import Bridge
from spoolbus_host.mqtt.failover import STABLE_S
from spoolbus_host.mqtt.paho import PahoTransport
from test_bridge import spool_device, wait_for

FAILOVER_BOUND_S = 2.0  # kill of the first broker -> calls answered through the second (measured 0.04-0.24 s)


@pytest.fixture
def brokers(tmp_path):
    started = [Broker(tmp_path / "first").start(), Broker(tmp_path / "second").start()]
    yield started
    for b in started:
        b.stop()


@pytest.fixture
def served(tmp_path, brokers):
    """Bridge gw on both brokers (the first first) running in a thread, with the spool device
    gw/thermo; yields the bridge; stops both at the end."""
    first, second = brokers
    bridge = Bridge("gw", first.host, first.port, str(tmp_path / "outbox"),
                    brokers=[(second.host, second.port)])
    bridge.attach_spool(str(tmp_path / "spool"))
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    thread.start()
    device = spool_device(tmp_path, tmp_path / "spool", "gw/thermo")
    try:
        assert wait_for(lambda: bridge.uplink and bridge.stats["hellos"] == 1), bridge.report()
        yield bridge
    finally:
        stop.set()
        thread.join(5)
        bridge.close()
        device.kill()
        device.wait()


def _call(node: Node, i: int) -> dict:
    """thermo.read on gw/thermo, sent again while the caller's own uplink is down."""
    while True:
        try:
            return node.call("gw/thermo", "thermo.read", {"sensor": f"s{i}"})
        except MQTTConnectionError:  # between two brokers: not connected to either just now
            time.sleep(0.02)


def test_a_killed_broker_is_left_for_the_second_and_calls_resume_within_2_s(brokers, served, caplog):
    first, second = brokers
    bridge = served
    caplog.set_level(logging.INFO, logger="spoolbus.bridge")
    caller = PahoTransport(first.host, first.port, "host", "caller", clean_session=True, presence=False,
                           brokers=[(second.host, second.port)])
    node = Node("host/caller", caller, timeout=10, retries=50, retry_s=0.2)
    try:
        connected = time.monotonic()
        done, killed, took = 0, None, []
        while killed is None or done < killed[0] + 30:
            if killed is None and time.monotonic() - connected > STABLE_S + 0.5:  # both up for long
                first.proc.kill()  # SIGKILL: no DISCONNECT, no goodbye
                first.proc.wait()
                killed = (done, time.monotonic(), time.time())
            started = time.monotonic()
            assert _call(node, done) == {"sensor": f"s{done}", "at": "gw/thermo"}
            took.append(time.monotonic() - started)
            if killed is not None and done == killed[0]:
                resumed_s = time.monotonic() - killed[1]
            done += 1
            time.sleep(0.1 if killed is None else 0.01)
        report = bridge.report()
        assert caller.broker == f"127.0.0.1:{second.port}" and caller.connected
    finally:
        node.close()
    lines = [r.getMessage() for r in caplog.records]
    down = [m for m in lines if m.startswith("gw: lost the broker at")]
    back = [r for r in caplog.records
            if r.getMessage().startswith(f"gw: connected to the broker at 127.0.0.1:{second.port}")]
    assert len(back) == 1, lines
    moved_s = back[0].created - killed[2]
    print(f"\nfailover: the bridge on the second broker {moved_s:.2f} s after the kill, calls answered again "
          f"{resumed_s:.2f} s after it; {done} calls ({killed[0]} before the kill), none lost; slowest "
          f"{max(took):.2f} s")
    assert killed[0] >= 20 and resumed_s < FAILOVER_BOUND_S and moved_s < FAILOVER_BOUND_S
    assert report["broker"] == f"127.0.0.1:{second.port}" and bridge.uplink
    assert (report["uplink_down"], report["reconnects"], report["failovers"]) == (1, 1, 1), report
    assert len(down) == 1 and f"at 127.0.0.1:{first.port} after " in down[0], lines
    assert "(closed by the broker or the network)" in down[0], down  # why
    assert f"moving to the broker at 127.0.0.1:{second.port} at once" in down[0], down  # the retry
    assert " s down, 1 attempt (failover from 127.0.0.1:" in back[0].getMessage()


class _Slammer:
    """A listener that accepts each TCP connection and closes it at once: a proxy whose broker
    refuses the session, as seen from the client. Counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[float] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(time.monotonic())
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_a_broker_that_closes_at_once_gets_backoff_not_a_reconnect_storm(tmp_path, caplog):
    slammer = _Slammer()
    caplog.set_level(logging.INFO, logger="spoolbus.bridge")
    try:
        bridge = Bridge("gw", "127.0.0.1", slammer.port, str(tmp_path / "outbox"))
        try:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                bridge.step(20)
            attempts = len(slammer.accepted)
            report = bridge.report()
        finally:
            bridge.close()
    finally:
        slammer.close()
    waits = [round(b - a, 2) for a, b in zip(slammer.accepted, slammer.accepted[1:], strict=False)]
    print(f"backoff: {attempts} attempts in 3 s, waits {waits}")
    assert 3 <= attempts < 10, waits  # 0.1 s doubling, ±50%: about 5 in 3 s (the bug: ~9 a second)
    assert waits[-1] > waits[0], waits  # growing: the third wait is at least 0.2 s, the first at most 0.15
    assert report["connect_failures"] >= attempts - 1 and report["uplink_down"] == 0
    said = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(said) == 1, said  # at most one line every RETRY_LOG_S (5 s)
    assert "the connection closed before the bridge was connected" in said[0] and "retrying in" in said[0]


def test_the_bridge_command_moves_past_a_dead_broker_and_reports_where_it_is_at_exit(tmp_path, brokers):
    live = brokers[1]
    dead = free_port()
    (tmp_path / "spool").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "spoolbus_host.cli", "bridge", "gw", "--outbox",
                             str(tmp_path / "outbox"), "--spool", str(tmp_path / "spool"), "--json",
                             "--broker", f"127.0.0.1:{dead}", "--broker", f"127.0.0.1:{live.port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    try:
        log, deadline = "", time.monotonic() + 10
        while "connected to the broker" not in log and time.monotonic() < deadline:
            try:
                log += lines.get(timeout=0.2)
            except queue.Empty:
                pass
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)  # its one line of counters fits in the pipe
        out = proc.stdout.read()
        reader.join(5)
    finally:
        proc.kill()
    while not lines.empty():
        log += lines.get()
    assert proc.returncode == 0, log
    assert f"cannot connect to the broker at 127.0.0.1:{dead}: ConnectionRefusedError" in log
    assert f"moving to the broker at 127.0.0.1:{live.port} in " in log
    assert f"gw: connected to the broker at 127.0.0.1:{live.port} after " in log and "2 attempts" in log
    report = json.loads(out)
    assert report["broker"] == f"127.0.0.1:{live.port}", report
    assert report["connect_failures"] == 1 and report["failovers"] == 0 and report["uplink_down"] == 0


def test_a_caller_tries_each_broker_at_connect_and_names_every_one_when_none_accepts(tmp_path, brokers):
    refusing = Broker(tmp_path / "auth", users={"gw": "secret"}).start()
    slammer = _Slammer()
    try:
        t = PahoTransport("127.0.0.1", refusing.port, "host", "c1", presence=False, timeout=2,
                          brokers=[("127.0.0.1", slammer.port), ("127.0.0.1", brokers[1].port)])
        try:
            assert t.connected and t.broker == f"127.0.0.1:{brokers[1].port}"
        finally:
            t.close()
        dead = free_port()
        with pytest.raises(MQTTConnectionError) as e:
            PahoTransport("127.0.0.1", dead, "host", "c2", presence=False, timeout=2,
                          brokers=[("127.0.0.1", refusing.port), ("127.0.0.1", slammer.port)])
    finally:
        refusing.stop()
        slammer.close()
    said = str(e.value)
    assert said.startswith("no MQTT broker accepted the connection: cannot connect to MQTT broker "
                           f"127.0.0.1:{dead}: [Errno 111] Connection refused; "), said
    assert f"MQTT broker 127.0.0.1:{refusing.port} refused the connection (code " in said
    assert f"MQTT broker 127.0.0.1:{slammer.port}: closed before CONNACK" in said
