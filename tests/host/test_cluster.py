"""Bridges on a three-node RabbitMQ cluster (quorum session queues, as docs/operations.md configures it):
the node a bridge uses killed with SIGKILL mid-traffic, and presence without retained messages or wills.

Real processes: the cluster (tests/host/conftest.py's rabbit_cluster), the `spoolbus bridge` CLI, a
MicroPython device on the bridge's spool (log_device), a CPython caller on another broker node.
"""

from __future__ import annotations

import pathlib
import signal
import threading
import time

from log_device import TICKS, Ticks, bridge_process, device_process
from spoolbus import errors
from spoolbus.node import Node
from spoolbus.transport.mqtt import STALE_FACTOR
from spoolbus.transport.spool import SpoolTransport
from spoolbus_host.bridge.gateway import Bridge
from spoolbus_host.mqtt.failover import STABLE_S
from spoolbus_host.mqtt.paho import PahoTransport
from spoolbus_host.mqtt.rabbit import RabbitCluster
from waiting import until

CALLS = 60
KILL_AT = 20  # calls done before the bridge's broker node is killed
FAILOVER_S = 10.0  # from the SIGKILL to the next call that completes through the bridge's new node
BEAT_S = 0.5




def _watcher(address: tuple[str, int], name: str, heartbeat_s: float = 10.0) -> PahoTransport:
    """A reader of every bridge's statuses on one broker node, leaving nothing there; `heartbeat_s`:
    the fleet's, which sets when a status is stale."""
    return PahoTransport(*address, "host", name, presence=False, clean_session=True, watch="+",
                         heartbeat_s=heartbeat_s)


def test_a_broker_node_killed_mid_traffic_each_call_once_no_tick_lost_presence_true_everywhere(
        tmp_path, rabbit_cluster):
    (n1, p1), (n2, p2), (n3, p3) = rabbit_cluster.addresses
    spool, outbox, executed, stop = (tmp_path / "spool", tmp_path / "outbox", tmp_path / "executed",
                                     tmp_path / "stop")
    spool.mkdir()
    device = device_process(tmp_path, spool, executed, stop)
    log = open(tmp_path / "bridge.log", "w")  # noqa: SIM115 - closed in finally
    bridge = bridge_process(spool, outbox, p1, log, more=(p2, p3))  # on node 1 first
    caller = PahoTransport(n3, p3, "host", "caller", brokers=[(n2, p2)])
    node = Node("host/caller", caller, timeout=30, retries=200, retry_s=0.3, dedup_size=256)
    ticks = Ticks()
    node.serve(TICKS, ticks)
    watchers = [_watcher((n2, p2), "watch-2"), _watcher((n3, p3), "watch-3")]
    killed_at = None
    done_at: list[float] = []
    try:
        until(lambda: "connected to the broker" in (tmp_path / "bridge.log").read_text(), 10)
        time.sleep(STABLE_S)  # a connection that stayed up: its loss moves to the next node at once
        for seq in range(CALLS):
            if seq == KILL_AT:
                killed_at = time.monotonic()
                rabbit_cluster.kill(0)  # the bridge's node, mid-stream: the device keeps ticking
            assert node.call("K/dev", "log.add", {"seq": seq}) == seq
            done_at.append(time.monotonic())
            node.poll(0)
        failover = done_at[KILL_AT] - killed_at
        stop.touch()
        _, err = device.communicate(timeout=10)
        sent = int(err.decode().split("SENT ")[-1].split()[0])
        deadline = time.monotonic() + 15
        while len(ticks.got) < sent and time.monotonic() < deadline:
            node.poll(50)
        node.poll(200)
        bridge_log = (tmp_path / "bridge.log").read_text()
        print(f"failover {failover:.2f} s; {CALLS} calls, {sent} ticks; caller {dict(node.stats)}")
        assert failover < FAILOVER_S, (failover, bridge_log[-3000:])
        assert [int(x) for x in executed.read_text().split()] == list(range(CALLS))  # once each, in order
        assert ticks.got == list(range(sent)), bridge_log[-3000:]  # every tick the bridge took arrived
        assert f"lost the broker at {n1}:{p1}" in bridge_log, bridge_log
        assert f"connected to the broker at {n1}:{p2}" in bridge_log, bridge_log  # the next in its list
        for w in watchers:  # both surviving nodes tell the truth: the bridge and its device are online
            until(lambda w=w: w.statuses().get("K/_bridge") and w.statuses().get("K/dev"), 5)
    finally:
        node.close()
        for w in watchers:
            w.close()
        bridge.send_signal(signal.SIGKILL)
        bridge.wait()
        device.kill()
        device.wait()
        log.close()
        rabbit_cluster.restart(0)


def test_presence_on_a_cluster_late_joiners_learn_it_and_a_dead_node_s_bridge_goes_stale(
        tmp_path, rabbit_cluster):
    """RabbitMQ delivers no retained status to a wildcard subscription and a dead node publishes no will:
    the who-query tells a late joiner on another node, the heartbeats' absence tells everyone."""
    (n1, p1), (n2, p2), (n3, p3) = rabbit_cluster.addresses
    spool = tmp_path / "spool"
    bridge = Bridge("P", n1, p1, str(tmp_path / "outbox"), heartbeat_s=BEAT_S)  # node 1 only
    bridge.attach_spool(str(spool))
    dev = SpoolTransport(str(spool), "P/dev", gateway="P/_bridge")
    stop = threading.Event()
    serving = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    serving.start()
    watchers: list[PahoTransport] = []
    killed = None
    try:
        until(lambda: bridge.uplink, 10)
        Node("P/dev", dev).hello("P/_bridge")  # the bridge sees its device: online
        until(lambda: "dev" in bridge.online, 5)
        time.sleep(BEAT_S * STALE_FACTOR * 2)  # long past any retained delivery: only answers count
        watchers = [_watcher((n2, p2), "late-2", BEAT_S), _watcher((n3, p3), "late-3", BEAT_S)]
        for w in watchers:
            took = until(lambda w=w: w.statuses().get("P/_bridge") and w.statuses().get("P/dev"), 3)
            assert took < 1.5, took  # from the who-query's answers, not from a heartbeat
        rabbit_cluster.kill(0)  # no will reaches anyone: the bridge's heartbeats just stop
        killed = time.monotonic()
        for w in watchers:
            until(lambda w=w: not w.statuses().get("P/_bridge") and not w.statuses().get("P/dev"), 10)
        stale = time.monotonic() - killed
        assert stale <= BEAT_S * STALE_FACTOR + 1.0, stale
        rabbit_cluster.restart(0)
        killed = None
        for w in watchers:  # the bridge is back on its node: online again everywhere
            until(lambda w=w: w.statuses().get("P/_bridge") and w.statuses().get("P/dev"), 30)
    finally:
        stop.set()
        serving.join(10)
        for w in watchers:
            w.close()
        try:
            bridge.close()
        except errors.SpoolbusError:
            pass
        dev.close()
        if killed is not None:
            rabbit_cluster.restart(0)


def test_the_test_cluster_is_configured_as_docs_operations_md_tells_users(tmp_path):
    doc = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    block = doc.split("### RabbitMQ")[1].split("```ini")[1].split("```")[0]
    required = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    RabbitCluster(tmp_path, nodes=1)  # writes each node's configuration; starts nothing
    conf = (tmp_path / "rabbit1" / "rabbitmq.conf").read_text().splitlines()
    assert required and [line for line in required if line not in conf] == []
