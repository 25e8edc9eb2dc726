"""Bridges and host nodes on a three-node RabbitMQ cluster against one mosquitto, in the same run.

Run: .venv/bin/python bench/bench_cluster.py [--calls N] [--rate MSG/S ...] [--seconds S] [--kills K]
(a quick trial: --calls 50 --rate 1000 --seconds 3 --kills 2). Everything on 127.0.0.1: the cluster
(spoolbus_host.mqtt.rabbit, quorum session queues as docs/operations.md configures it) and a mosquitto
(`max_queued_messages 0`, `set_tcp_nodelay true`, as bench_mqtt) are both up for the whole run; every
client is a process of its own, as in bench_bridge, whose pieces this reuses:

1. Call round trip: a host node (PahoTransport) on node 1 calls echo.echo on the MicroPython node B/echo
   behind bridge B (the `spoolbus bridge` command, pty) on node 2; the same with both on mosquitto.
2. Fleet: `--bridges` bridge processes (bridge k on node k % 3), `--devices` simulated devices inside
   each, casting to a sink (one paho subscriber on node 1); the same fleet with everything on mosquitto.
   RSS: each bridge's peak, each broker's VmRSS (RabbitMQ: its node's Erlang VM, beam.smp) before and
   after the fleet's run.
3. Failover: bridge B knows all three nodes; a caller on the node that is neither the bridge's nor the
   one it moves to calls every 50 ms (retries every 0.2 s). The bridge's node is SIGKILLed; the time from
   just before the kill to the first call that completes after the bridge is on its next node (its log
   says when: a call done before that was served before the kill); then the node is started again
   before the next kill. The peer: the same bridge and caller on one mosquitto, SIGKILLed and
   started again at once (a supervisor's restart), the caller's own broker being gone as well.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_bridge import echo_bridge, fleet_run, node_calls  # noqa: E402
from bench_mqtt import Broker  # noqa: E402
from spoolbus import errors  # noqa: E402
from spoolbus.node import Node  # noqa: E402
from spoolbus_host.mqtt.failover import STABLE_S  # noqa: E402
from spoolbus_host.mqtt.paho import PahoTransport  # noqa: E402
from spoolbus_host.mqtt.rabbit import RabbitCluster, _descendants  # noqa: E402

CALL_EVERY_S = 0.05
RETRY_S = 0.2
# the bridge's log lines (`spoolbus bridge`: "%(asctime)s %(message)s") that say where its uplink is
UPLINK = re.compile(r"^(\S+ \S+) .*(lost|connected to) the broker at [\d.]+:(\d+)", re.MULTILINE)


def rss_mb(pid: int) -> float:
    """VmRSS of process `pid`, MB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def node_rss_mb(cluster: RabbitCluster) -> list[float]:
    """VmRSS of each node's Erlang VM (beam.smp, below the rabbitmq-server shell script), MB."""
    out = []
    for proc in cluster._procs:
        vms = [p for p in _descendants(proc.pid) if pathlib.Path(f"/proc/{p}/comm").read_text().strip()
               == "beam.smp"]
        out.append(rss_mb(vms[0]))
    return out


def mb(values: list[float]) -> str:
    return " / ".join(f"{v:.0f}" for v in values)


def roundtrips(cluster: RabbitCluster, broker: Broker, tmp: pathlib.Path, n: int) -> None:
    print(f"\nCall round trip, {n} sequential calls, QoS 1: host node -> broker -> bridge -> pty -> "
          "MicroPython node B/echo")
    print("| broker | host node on | bridge on | calls | p50 ms | p99 ms | p50 vs mosquitto "
          "| p99 vs mosquitto |")
    print("|---|---|---|---|---|---|---|---|")
    for sub in ("rt-mosquitto", "rt-cluster"):
        (tmp / sub).mkdir()
    with echo_bridge(str(tmp / "rt-mosquitto"), [(broker.host, broker.port)]):
        peer = node_calls(broker.port, n)
    with echo_bridge(str(tmp / "rt-cluster"), [cluster.addresses[1]]):
        got = node_calls(cluster.addresses[0][1], n)
    for label, where, (calls, p50, p99) in (("mosquitto (peer)", ("mosquitto", "mosquitto"), peer),
                                            ("RabbitMQ, 3 nodes", ("node 1", "node 2"), got)):
        print(f"| {label} | {where[0]} | {where[1]} | {calls} | {p50 * 1000:.2f} | {p99 * 1000:.2f} "
              f"| {p50 / peer[1]:.2f}x | {p99 / peer[2]:.2f}x |", flush=True)


def fleets(cluster: RabbitCluster, broker: Broker, tmp: pathlib.Path, bridges: int, devices: int,
           rates: list[float], seconds: float) -> None:
    print(f"\nFleet: {bridges * devices} devices behind {bridges} bridges ({devices} simulated in each "
          f"bridge process) casting (QoS 1) to one sink for {seconds:g} s; on the cluster bridge k on node "
          "k % 3 + 1, the sink on node 1")
    print("| broker | offered msg/s | delivered msg/s | delivered | of offered | p50 latency ms "
          "| p99 latency ms | p50, p99 vs mosquitto | bridge max RSS MB (min-max) | broker RSS MB before "
          "| after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ports = [port for _, port in cluster.addresses]
    for rate in rates:
        offered = round(rate * seconds)
        peer = None
        for label, sink, brokers, rss in (
                ("mosquitto (peer)", broker.port, [broker.port] * bridges, lambda: [rss_mb(broker.proc.pid)]),
                ("RabbitMQ, 3 nodes", ports[0], [ports[k % 3] for k in range(bridges)],
                 lambda: node_rss_mb(cluster))):
            before = rss()
            r = fleet_run(sink, brokers, devices, rate, seconds, tmp / f"fleet-{rate:g}-{sink}")
            after = rss()
            peer = peer or r
            print(f"| {label} | {rate:,.0f} | {r.delivered / r.span_s:,.0f} | {r.delivered} "
                  f"| {r.delivered / offered:.1%} | {r.p50_s * 1000:.1f} | {r.p99_s * 1000:.1f} "
                  f"| {r.p50_s / peer.p50_s:.1f}x, {r.p99_s / peer.p99_s:.1f}x "
                  f"| {min(r.rss_mb):.0f}-{max(r.rss_mb):.0f} | {mb(before)} | {mb(after)} |", flush=True)


class Caller:
    """A host node on the broker at `address` calling B/echo every CALL_EVERY_S in a thread of its own,
    with a resend every RETRY_S: each call's (start, end, error name or "")."""

    def __init__(self, address: tuple[str, int]):
        self.node = Node("host/failover", PahoTransport(*address, "host", "failover", clean_session=True,
                                                          presence=False),
                         timeout=20, retries=int(20 / RETRY_S), retry_s=RETRY_S)
        self.calls: list[tuple[float, float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                self.node.call("B/echo", "echo.echo", {"x": b"ping"})
                failed = ""
            except errors.SpoolbusError as e:
                failed = type(e).__name__
            self.calls.append((start, time.monotonic(), failed))
            self._stop.wait(max(0.0, start + CALL_EVERY_S - time.monotonic()))

    def first_done_after(self, t: float) -> float | None:
        return next((end for _, end, failed in list(self.calls) if end > t and not failed), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.node.close()


class Kill(NamedTuple):
    node: int  # the bridge's node, killed
    kill_s: float  # SIGKILL until its processes were gone (and, for mosquitto, it listened again)
    failover_s: float  # just before the kill until the first call completed once the bridge was back
    moved_to: int  # the bridge's node after it
    lost_s: float  # the kill until the bridge's log says it lost the node
    connected_s: float  # the kill until it says it is connected (subscribed) again
    calls: int
    failed: Counter[str]  # calls that raised, by error
    restart_s: float


def _uplink_lines(log: pathlib.Path, ports: list[int]) -> list[tuple[float, str, int]]:
    """(wall-clock time, "lost" or "connected to", node) of each line of the bridge's log about its uplink."""
    return [(datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp(), m[2],
             ports.index(int(m[3]))) for m in UPLINK.finditer(log.read_text())]


def _connections(log: pathlib.Path, ports: list[int]) -> list[int]:
    """The node of each "connected to the broker at" line of the bridge's log, in order."""
    return [node for _, said, node in _uplink_lines(log, ports) if said == "connected to"]


def _until(what: Callable[[], object], timeout: float, why: str) -> object:
    deadline = time.monotonic() + timeout
    while not (got := what()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{why} in {timeout:.0f} s")
        time.sleep(0.02)
    return got


def _new_connection(log: pathlib.Path, ports: list[int], before: int, timeout: float) -> list[int]:
    """The bridge's connections (_connections) once there are more than `before`."""
    return _until(lambda: len(c := _connections(log, ports)) > before and c, timeout,
                  "the bridge did not connect")


def _kill_once(addresses: list[tuple[str, int]], log: pathlib.Path, before: int, kill: Callable[[int], None],
               restart: Callable[[int], None]) -> tuple[Kill, int]:
    """One kill of the bridge's node (its connection after the first `before` ones), timed by a caller on
    another node; (it, the connections before the bridge's connection now)."""
    ports = [port for _, port in addresses]
    lines = _new_connection(log, ports, before, 60)
    current, connected_at = lines[-1], time.monotonic()
    caller = Caller(addresses[(current + 2) % len(addresses)])  # not the bridge's node, nor its next one
    try:
        _until(lambda: len([c for c in caller.calls if not c[2]]) >= 3, 60, "no call went through")
        # a connection that lasted STABLE_S: its loss moves the bridge to the next node at once
        time.sleep(max(0.0, connected_at + STABLE_S + 0.5 - time.monotonic()))
        began = len(caller.calls)
        killed_at, killed_wall = time.monotonic(), time.time()
        kill(current)
        gone_at = time.monotonic()
        moved = _new_connection(log, ports, len(lines), 60)
        said = [(t - killed_wall, what) for t, what, _ in _uplink_lines(log, ports)
                if t >= killed_wall - 0.001]
        lost = next(t for t, what in said if what == "lost")
        connected = next(t for t, what in said if what == "connected to" and t >= lost)
        # a call that completed before the bridge was on its new node was served before the kill
        done = _until(lambda: caller.first_done_after(killed_at + connected), 60,
                      "no call completed after the kill")
        time.sleep(0.5)  # a few calls on the new path
    finally:
        caller.close()
    calls = caller.calls[began:]
    start = time.monotonic()
    restart(current)
    return Kill(current, gone_at - killed_at, done - killed_at, moved[-1], lost, connected, len(calls),
                Counter(f for _, _, f in calls if f), time.monotonic() - start), len(moved) - 1


def kills(addresses: list[tuple[str, int]], tmp: pathlib.Path, rounds: int, kill: Callable[[int], None],
          restart: Callable[[int], None]) -> list[Kill]:
    """`rounds` times: kill(i) the bridge's node i while a caller on another node (if there is one) calls
    through it; timed until the first call that completes after the bridge connected again; restart(i)."""
    tmp.mkdir()
    log_path = tmp / "bridge.log"
    out: list[Kill] = []
    with open(log_path, "w") as log, echo_bridge(str(tmp), addresses, log):
        before = 0
        for _ in range(rounds):
            k, before = _kill_once(addresses, log_path, before, kill, restart)
            out.append(k)
            print(f"  kill {len(out)}: node {k.node + 1} -> {k.moved_to + 1}: gone {k.kill_s:.2f} s, "
                  f"the bridge lost it {k.lost_s:.2f} s, connected again {k.connected_s:.2f} s, "
                  f"first call back {k.failover_s:.2f} s; {k.calls} calls, failed {dict(k.failed) or 0}",
                  flush=True)
    return out


def failovers(cluster: RabbitCluster, broker: Broker, tmp: pathlib.Path, rounds: int) -> None:
    print(f"\nFailover, {rounds} kills each: bridge B (one MicroPython node on a pty), a caller calling "
          f"every {CALL_EVERY_S * 1000:.0f} ms (resend every {RETRY_S:g} s)")

    def mosquitto_down_and_up(_: int) -> None:
        broker.proc.kill()
        broker.proc.wait()
        broker.start()

    runs = []
    for label, addresses, kill, restart in (
            ("mosquitto, SIGKILL and started again at once (peer)", [(broker.host, broker.port)],
             mosquitto_down_and_up, lambda _: None),
            ("RabbitMQ, 3 nodes: the bridge's node SIGKILLed", cluster.addresses, cluster.kill,
             cluster.restart)):
        print(f"{label}:")
        runs.append((label, kills(addresses, tmp / f"failover-{len(runs)}", rounds, kill, restart)))
    print("| broker | kills | failover min s | median s | max s | median vs mosquitto | medians: gone s "
          "| bridge lost it s | connected again s | calls | failed calls | restart s (min-max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    peer = None
    for label, got in runs:
        times = sorted(k.failover_s for k in got)
        median = statistics.median(times)
        peer = peer or median
        failed = sum((k.failed for k in got), Counter())
        restarts = [k.restart_s for k in got]
        steps = " | ".join(f"{statistics.median(getattr(k, f) for k in got):.2f}"
                           for f in ("kill_s", "lost_s", "connected_s"))
        print(f"| {label} | {len(got)} | {times[0]:.2f} | {median:.2f} | {times[-1]:.2f} "
              f"| {median / peer:.2f}x | {steps} | {sum(k.calls for k in got)} "
              f"| {f'{sum(failed.values())} {dict(failed)}' if failed else 0} "
              f"| {min(restarts):.1f}-{max(restarts):.1f} |", flush=True)


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=500, help="round trip: sequential calls")
    ap.add_argument("--bridges", type=int, default=10, help="fleet: bridge processes")
    ap.add_argument("--devices", type=int, default=100, help="fleet: simulated devices in each bridge")
    ap.add_argument("--rate", type=float, nargs="+", default=[1000, 2000],
                    help="fleet: messages/s offered by all devices; a run for each")
    ap.add_argument("--seconds", type=float, default=10, help="fleet: seconds of load")
    ap.add_argument("--kills", type=int, default=10, help="failover: kills of the bridge's broker node")
    args = ap.parse_args()
    began = time.monotonic()
    print(f"load average at the start: {_load()} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        broker = Broker(root / "mosquitto", extra="max_queued_messages 0\nset_tcp_nodelay true").start()
        cluster = None
        try:
            cluster = RabbitCluster(root / "rabbit", nodes=3).start()
            print(f"RabbitMQ cluster of 3 up in {cluster.start_seconds:.1f} s; mosquitto on {broker.port}")
            roundtrips(cluster, broker, root, args.calls)
            fleets(cluster, broker, root, args.bridges, args.devices, args.rate, args.seconds)
            failovers(cluster, broker, root, args.kills)
        finally:
            if cluster is not None:
                cluster.stop()
            broker.stop()
    print(f"\nran {time.monotonic() - began:.0f} s; load average at the end: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
