"""`spoolbus bridge` killed with SIGKILL mid-traffic and restarted: no acknowledged message
lost, no call executed twice, order per device kept.

Real processes: mosquitto (persistence on), the bridge CLI, a MicroPython device on the bridge's spool
that appends each call's argument to a file and casts a numbered tick upward every 20 ms, and a CPython
caller on the broker (PahoTransport + Node with retries) making sequential calls.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time

from log_device import TICKS, Ticks, bridge_process, device_process
from mosquitto import ScriptedBroker
from spoolbus import wire
from spoolbus.node import Node
from spoolbus.transport.spool import SpoolTransport
from spoolbus_host.mqtt.paho import PahoTransport

CALLS = 150


KILLS = 4


def test_a_bridge_killed_mid_traffic_and_restarted_loses_nothing_and_runs_each_call_once(tmp_path, mosquitto):
    spool, outbox, executed, stop = (tmp_path / "spool", tmp_path / "outbox", tmp_path / "executed",
                                     tmp_path / "stop")
    spool.mkdir()
    device = device_process(tmp_path, spool, executed, stop)
    bridge_log = open(tmp_path / "bridge.log", "w")  # noqa: SIM115 - closed in finally

    def start_bridge() -> subprocess.Popen:
        return bridge_process(spool, outbox, mosquitto.port, bridge_log)

    bridge = start_bridge()
    transport = PahoTransport("127.0.0.1", mosquitto.port, "host", "caller")
    node = Node("host/caller", transport, timeout=30, retries=200, retry_s=0.3, dedup_size=256)
    ticks = Ticks()
    node.serve(TICKS, ticks)
    done = 0  # calls the caller saw succeed
    kills: list[int] = []  # the call count at each kill
    rng = random.Random()
    finished = threading.Event()

    def killer() -> None:
        nonlocal bridge
        while len(kills) < KILLS and not finished.is_set():
            target = done + rng.randint(5, 20)  # some calls succeed through this bridge first
            while done < target and not finished.is_set():
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.01))  # at a random point of a call in flight
            if finished.is_set():
                return
            bridge.send_signal(signal.SIGKILL)
            bridge.wait()
            kills.append(done)
            time.sleep(rng.uniform(0.1, 0.4))  # the device keeps casting into the dead bridge's inbox
            bridge = start_bridge()

    thread = threading.Thread(target=killer, daemon=True)
    started = time.monotonic()
    try:
        thread.start()
        for seq in range(CALLS):
            assert node.call("K/dev", "log.add", {"seq": seq}) == seq
            done += 1
            node.poll(0)
        finished.set()
        thread.join(10)
        stop.touch()
        _, err = device.communicate(timeout=10)
        sent = int(err.decode().split("SENT ")[-1].split()[0])
        deadline = time.monotonic() + 10
        while len(ticks.got) < sent and time.monotonic() < deadline:
            node.poll(50)
        node.poll(200)  # a duplicate past the last tick would show here
        lines = executed.read_text().split()
        print(f"{len(kills)} kills (after calls {kills}) passed: {CALLS} calls, {sent} ticks upward, "
              f"{time.monotonic() - started:.1f} s; caller: {dict(node.stats)}")
        assert len(kills) == KILLS
        assert [int(x) for x in lines] == list(range(CALLS))  # each call executed once, in order
        assert ticks.got == list(range(sent)), (ticks.got, (tmp_path / "bridge.log").read_text()[-3000:])
    finally:
        finished.set()
        thread.join(10)
        node.close()
        bridge.kill()
        bridge.wait()
        device.kill()
        device.wait()
        bridge_log.close()


def test_a_message_a_killed_bridge_read_from_the_spool_but_the_broker_never_acked_is_sent_by_the_next(
        tmp_path, mosquitto):
    """The window the random kills above rarely hit: read from the spool, published, no PUBACK yet."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    spool, outbox = tmp_path / "spool", tmp_path / "outbox"
    dev = SpoolTransport(str(spool), "K/dev", gateway="K/_bridge")
    silent = ScriptedBroker()  # takes the publishes, acknowledges none
    log = open(tmp_path / "bridge.log", "w")  # noqa: SIM115 - closed in finally
    first = bridge_process(spool, outbox, silent.port, log)
    second = None
    try:
        silent.handshake()
        silent.answer_subscribe()
        dev.send("host/sink", cast_to_sink(1))
        while True:  # the bridge's status, the device's status, then the cast
            first_byte, body = silent.packet()
            if first_byte & 0xF0 == 0x30 and b"spoolbus/host/sink/inbox" in body:
                break
        first.send_signal(signal.SIGKILL)
        first.wait()
        got: list[int] = []
        sub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        sub.on_message = lambda c, u, m: got.append(wire.decode(m.payload).id)
        sub.connect("127.0.0.1", mosquitto.port)
        sub.subscribe("spoolbus/host/sink/inbox", 1)
        sub.loop_start()
        time.sleep(0.2)
        second = bridge_process(spool, outbox, mosquitto.port, log)
        dev.send("host/sink", cast_to_sink(2))
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        sub.loop_stop()
        assert got == [1, 2], (tmp_path / "bridge.log").read_text()
    finally:
        for p in (first, second):
            if p:
                p.kill()
                p.wait()
        silent.close()
        log.close()


def cast_to_sink(i: int) -> bytes:
    return wire.encode(wire.Envelope(kind=wire.CAST, id=i, src="K/dev", dst="host/sink", method="s.m",
                                     version="1.0", body={}))
