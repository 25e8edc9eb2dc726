"""Device-to-broker throughput through the bridge vs a direct paho QoS 1 publisher, same broker, same run.

Run: .venv/bin/python bench/bench_bridge.py [--messages N] [--stall-only]
The bridge has one device whose link hands it envelopes as fast as it asks (an in-process link, so
the bridge's own work is measured: decode, identity check, routing, QoS 1 publish); a separate paho
process counts what arrives. Issue 7 asks for at least 0.7x the direct publisher.
The stall run: local calls between two MicroPython devices of one bridge (ptys) while the bridge
flushes an outbox and publishes a steady stream, with the broker's PUBACKs at once, then 3 s late
(a loopback proxy holds them: spoolbus_host.testing.ackdelay).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO, NamedTuple

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_mqtt import PAHO_DIRECT, PY, Broker, run  # noqa: E402

BRIDGE = """
import sys, time
from spoolbus import wire
from spoolbus_host.bridge.gateway import Bridge
port, qos, n, size = (int(a) for a in sys.argv[1:5])
env = wire.encode(wire.Envelope(kind=wire.CAST, id=1, src="A/dev", dst="bench/sink", method="s.m",
                                version="1.0", body=bytes(size)))

class Device:
    left = n
    def recv(self, timeout_ms=0):
        if not self.left:
            return None
        self.left -= 1
        return env
    def send(self, dst, data):
        pass
    def close(self):
        pass

b = Bridge("A", "127.0.0.1", port, sys.argv[6])
while not b.uplink:
    time.sleep(0.01)
dev = Device()
b.attach("dev", dev)
start = time.perf_counter()
while dev.left or b.backlog or len(b.client._out_messages):  # paho's queue: not yet acknowledged
    b.step(1)
print(time.perf_counter() - start)
b.close()
"""

FLEET_BRIDGE = """
import resource, sys, time
from spoolbus import wire
from spoolbus_host.bridge.gateway import Bridge
port, devices, rate, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
outbox, name = sys.argv[5], sys.argv[6]
gap = devices / rate  # each device sends every `gap` seconds

class Device:
    def __init__(self, i, t0):
        self.src = "%s/d%d" % (name, i)
        self.next = t0 + gap * i / devices
    def recv(self, timeout_ms=0):
        now = time.time()
        if now < self.next or now > end:
            return None
        self.next += gap
        return wire.encode(wire.Envelope(kind=wire.CAST, id=int(now * 1e6), src=self.src, dst="Z/sink",
                                         method="s.m", version="1.0", body={}))
    def send(self, dst, data):
        pass
    def close(self):
        pass

b = Bridge(name, "127.0.0.1", port, outbox)
while not b.uplink:
    time.sleep(0.01)
print("ready", flush=True)
t0 = float(sys.stdin.readline())  # the wall-clock start, the same for every bridge of the run
end = t0 + seconds
for i in range(devices):
    b.attach("d%d" % i, Device(i, t0))
while time.time() < end + 1:
    b.step(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, flush=True)
b.close()
"""

FLEET_SINK = """
import sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus import wire
lat, t = [], []
def on_message(c, u, msg):
    now = time.time()
    lat.append(now - wire.decode(msg.payload).id / 1e6)
    t.append(now)
c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
c.on_message = on_message
c.on_subscribe = lambda *a: print("ready", flush=True)
c.connect("127.0.0.1", int(sys.argv[1]))
c.subscribe("spoolbus/Z/sink/inbox", 1)
c.loop_start()
sys.stdin.readline()
while t and time.time() - t[-1] < 1:  # what is still on its way (through other broker nodes)
    time.sleep(0.1)
c.loop_stop()
lat.sort()
n = len(lat)
print(n, (t[-1] - t[0]) if n > 1 else 0, lat[n // 2] if n else 0, lat[int(n * 0.99)] if n else 0)
"""


class FleetRun(NamedTuple):
    delivered: int
    span_s: float  # the sink's first to last arrival
    p50_s: float  # latency, creation (in the device) to arrival (at the sink)
    p99_s: float
    rss_mb: list[float]  # each bridge process's peak


def fleet_run(sink_port: int, bridge_ports: list[int], devices: int, rate: float, seconds: float,
              out: pathlib.Path) -> FleetRun:
    """`devices` simulated devices in each of len(bridge_ports) bridge processes (bridge k, named Fk, on
    the broker at bridge_ports[k]) offering `rate` msg/s in all for `seconds`, from one start time; the
    sink subscribed on the broker at sink_port."""
    out.mkdir(parents=True)
    sink = subprocess.Popen([PY, "-c", FLEET_SINK, str(sink_port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    each = rate / len(bridge_ports)
    bridges = [subprocess.Popen([PY, "-c", FLEET_BRIDGE, str(port), str(devices), str(each), str(seconds),
                                 str(out / f"F{k}"), f"F{k}"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for k, port in enumerate(bridge_ports)]
    try:
        for b in bridges:
            assert b.stdout.readline().strip() == "ready"
        start = time.time() + 0.2
        for b in bridges:
            b.stdin.write(f"{start}\n")
            b.stdin.flush()
        rss = [float(b.communicate(timeout=seconds + 60)[0].split()[-1]) for b in bridges]
        if any(b.returncode for b in bridges):
            raise RuntimeError(f"a fleet bridge failed: exit codes {[b.returncode for b in bridges]}")
        got, span, p50, p99 = sink.communicate("stop\n", timeout=60)[0].split()
    finally:
        for proc in (*bridges, sink):
            proc.kill()
            proc.wait()
    return FleetRun(int(got), float(span), float(p50), float(p99), rss)


def fleet(broker: Broker, tmp: str, rate: float, seconds: float) -> None:
    print(f"\nFleet: devices simulated in the bridge process, {rate:.0f} msg/s in total, {seconds:.0f} s")
    print("| devices | offered msg/s | delivered msg/s | delivered | p50 latency ms | p99 latency ms "
          "| bridge max RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for devices in (10, 100, 500):
        r = fleet_run(broker.port, [broker.port], devices, rate, seconds,
                      pathlib.Path(tmp) / f"fleet-{devices}")
        print(f"| {devices} | {rate:,.0f} | {r.delivered / r.span_s:,.0f} | {r.delivered} "
              f"| {r.p50_s * 1000:.1f} | {r.p99_s * 1000:.1f} | {r.rss_mb[0]:.0f} |", flush=True)

NODE_CALLER = """
import sys, time
from spoolbus.node import Node
from spoolbus_host.mqtt.paho import PahoTransport
port, n = int(sys.argv[1]), int(sys.argv[2])
t = PahoTransport("127.0.0.1", port, "host", "bench", clean_session=True)
node = Node("host/bench", t)
payload = bytes(64)
for _ in range(20):  # warm up, and wait for the bridge and the device
    try:
        node.call("B/echo", "echo.echo", {"x": payload}, timeout=2)
    except Exception:
        time.sleep(0.2)
rtt = []
for _ in range(n):
    start = time.perf_counter()
    node.call("B/echo", "echo.echo", {"x": payload}, timeout=5)
    rtt.append(time.perf_counter() - start)
rtt.sort()
print(len(rtt), rtt[len(rtt) // 2], rtt[int(len(rtt) * 0.99)])
t.close()
"""

PAHO_RESPONDER = """
import sys
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus_host.mqtt.paho import nodelay
c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
if sys.argv[2] == "nodelay":
    nodelay(c)
c.on_message = lambda cl, u, m: cl.publish("rt/resp", m.payload, 1)
c.on_subscribe = lambda *a: print("ready", flush=True)
c.connect("127.0.0.1", int(sys.argv[1]))
c.subscribe("rt/req", 1)
c.loop_forever()
"""

PAHO_CALLER = """
import sys, threading, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus_host.mqtt.paho import nodelay
port, n = int(sys.argv[1]), int(sys.argv[2])
got = threading.Event()
c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
if sys.argv[3] == "nodelay":
    nodelay(c)
c.on_message = lambda cl, u, m: got.set()
c.connect("127.0.0.1", port)
c.subscribe("rt/resp", 1)
c.loop_start()
time.sleep(0.3)
rtt = []
payload = bytes(100)
for _ in range(n):
    got.clear()
    start = time.perf_counter()
    c.publish("rt/req", payload, 1)
    got.wait(5)
    rtt.append(time.perf_counter() - start)
rtt.sort()
print(len(rtt), rtt[len(rtt) // 2], rtt[int(len(rtt) * 0.99)])
"""


@contextlib.contextmanager
def echo_bridge(tmp: str, brokers: list[tuple[str, int]],
                log: IO | int = subprocess.DEVNULL) -> Iterator[None]:
    """Bridge B (the `spoolbus bridge` command, --broker for each of `brokers`, its log lines to `log`)
    with the MicroPython node B/echo (tests/host/echo_device.py) on a pty, until the block ends."""
    import signal
    import tty

    from bench_mqtt import MICROPYTHON, ROOT

    master, slave = os.openpty()
    tty.setraw(slave)
    env = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen")
    dev = subprocess.Popen([MICROPYTHON, str(ROOT / "tests/host/echo_device.py"), "B/echo"], stdin=master,
                           stdout=master, env=env)
    flags = [arg for host, port in brokers for arg in ("--broker", f"{host}:{port}")]
    bridge = subprocess.Popen([PY, "-m", "spoolbus_host.cli", "bridge", "B", "--serial",
                               f"echo={os.ttyname(slave)}", "--outbox", str(pathlib.Path(tmp) / "rt-outbox"),
                               *flags], stderr=log, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        bridge.send_signal(signal.SIGTERM)
        try:
            bridge.wait(10)
        except subprocess.TimeoutExpired:  # still trying a broker that is gone
            bridge.kill()
            bridge.wait()
        dev.kill()
        dev.wait()
        os.close(master)
        os.close(slave)


def node_calls(port: int, n: int) -> tuple[int, float, float]:
    """`n` sequential echo.echo calls to B/echo from a host node on the broker at `port`, after a warm-up:
    (calls, p50 s, p99 s)."""
    r = subprocess.run([PY, "-c", NODE_CALLER, str(port), str(n)], capture_output=True, text=True, check=True)
    calls, p50, p99 = r.stdout.split()
    return int(calls), float(p50), float(p99)


def roundtrip(broker: Broker, tmp: str, n: int) -> None:
    """Call round trip: host node -> broker -> bridge -> serial (pty) -> MicroPython node, and back."""
    print(f"\nCall round trip, {n} sequential calls, QoS 1 (every process separate)")
    print("| path | calls | p50 ms | p99 ms | p50 vs paho pair |")
    print("|---|---|---|---|---|")
    # paho leaves Nagle's algorithm on; spoolbus's clients turn it off (mqtt.paho.nodelay): both shown,
    # the ratio is against the pair with the same socket setting as ours.
    for sockets in ("default", "nodelay"):
        responder = subprocess.Popen([PY, "-c", PAHO_RESPONDER, str(broker.port), sockets],
                                     stdout=subprocess.PIPE, text=True)
        assert responder.stdout.readline().strip() == "ready"
        r = subprocess.run([PY, "-c", PAHO_CALLER, str(broker.port), str(n), sockets], capture_output=True,
                           text=True, check=True)
        responder.kill()
        calls, p50, p99 = r.stdout.split()
        peer = float(p50)
        label, ratio = ("TCP_NODELAY (peer)", "1.00x") if sockets == "nodelay" else ("paho's defaults", "-")
        print(f"| paho request/reply pair, {label} | {calls} | {peer * 1000:.2f} | {float(p99) * 1000:.2f} "
              f"| {ratio} |")
    with echo_bridge(tmp, [(broker.host, broker.port)]):
        calls, p50, p99 = node_calls(broker.port, n)
    print(f"| spoolbus call: host node -> broker -> bridge -> pty -> MicroPython node | {calls} "
          f"| {p50 * 1000:.2f} | {p99 * 1000:.2f} | {p50 / peer:.1f}x |", flush=True)


class Stream:
    """A device link sending `rate` casts a second to a node on another bridge (through the uplink)."""

    def __init__(self, rate: float):
        import time

        self.gap = 1 / rate
        self.next = time.monotonic()
        self.i = 0

    def recv(self, timeout_ms: int = 0) -> bytes | None:
        import time

        from spoolbus import wire

        if time.monotonic() < self.next:
            return None
        self.next += self.gap
        self.i += 1
        return wire.encode(wire.Envelope(kind=wire.CAST, id=self.i, src="A/stream", dst="B/sink",
                                         method="s.m", version="1.0", body={"i": self.i}))

    def send(self, dst: str, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def _stalled_calls(broker: Broker, tmp: pathlib.Path, delay: float,
                   seconds: float) -> tuple[list[float], int]:
    """Latencies (s) of local calls while the broker's PUBACKs come `delay` s late; the outbox at the end."""
    import os
    import threading
    import time
    import tty

    from bench_mqtt import MICROPYTHON, ROOT
    from spoolbus_host.bridge.gateway import Bridge
    from spoolbus_host.serialport import connect
    from spoolbus_host.testing.ackdelay import AckDelayProxy

    proxy = AckDelayProxy("127.0.0.1", broker.port, delay)
    bridge = Bridge("A", "127.0.0.1", proxy.port, str(tmp / "outbox"))
    backlog = Stream(1e9)  # an outage's backlog: 500 messages in the outbox before the uplink is up
    bridge.attach("stream", backlog)
    while bridge.backlog < 500:
        bridge.step(0)
    del bridge.links["stream"]
    bridge.attach("stream", Stream(50))
    env = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen")
    procs, ptys = [], []
    go = tmp / "go"
    for name, script, args in (("echo", "echo_device.py", ["A/echo"]),
                               ("caller", "echo_caller.py", [str(int(seconds * 1000)), str(go)])):
        master, slave = os.openpty()
        tty.setraw(slave)
        ptys += [master, slave]
        procs.append(subprocess.Popen([MICROPYTHON, str(ROOT / "tests/host" / script), *args],
                                      stdin=master, stdout=master, stderr=subprocess.PIPE, env=env))
        bridge.attach(name, connect(os.ttyname(slave), name="A"))
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    thread.start()
    proxy.start()
    try:
        caller = procs[1]
        lines = iter(caller.stderr.readline, b"")
        assert next(lines).startswith(b"READY")
        while not bridge.uplink:
            time.sleep(0.01)
        go.touch()
        got = next(lines).split()
        assert got[0] == b"LATS", got
        return sorted(int(v) / 1e6 for v in got[1:]), bridge.backlog
    finally:
        stop.set()
        thread.join(10)
        for p in procs:
            p.kill()
            p.wait()
        bridge.close()
        proxy.close()
        for fd in ptys:
            os.close(fd)


def stall(broker: Broker, tmp: str, seconds: float) -> None:
    """Local calls with the uplink healthy and stalled (PUBACKs 3 s late), side by side."""
    import logging

    logging.getLogger("spoolbus.bridge").setLevel(logging.ERROR)  # its throttle and connect lines
    print(f"\nLocal calls on one bridge (pty -> bridge -> pty, MicroPython devices) for {seconds:g} s each, "
          "while the bridge flushes a 500-message outbox and publishes 50 casts/s")
    print("| uplink | calls | p50 ms | p99 ms | outbox at the end | p50 vs healthy | p99 vs healthy |")
    print("|---|---|---|---|---|---|---|")
    peer = None
    for label, delay in (("healthy: PUBACK at once (peer)", 0.0), ("stalled: every PUBACK 3 s late", 3.0)):
        run_dir = pathlib.Path(tmp) / f"stall-{delay:g}"
        run_dir.mkdir()
        lats, left = _stalled_calls(broker, run_dir, delay, seconds)
        p50, p99 = lats[len(lats) // 2], lats[int(len(lats) * 0.99)]
        peer = peer or (p50, p99)
        print(f"| {label} | {len(lats)} | {p50 * 1000:.2f} | {p99 * 1000:.2f} | {left} "
              f"| {p50 / peer[0]:.2f}x | {p99 / peer[1]:.2f}x |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rate", type=float, default=2000, help="fleet: messages/s offered by all devices")
    ap.add_argument("--seconds", type=float, default=5, help="fleet: seconds of load per fleet size")
    ap.add_argument("--calls", type=int, default=500, help="round trip: sequential calls")
    ap.add_argument("--stall-seconds", type=float, default=5, help="stall: seconds of local calls per run")
    ap.add_argument("--stall-only", action="store_true", help="run only the stalled-uplink comparison")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        conf = "max_queued_messages 0\nset_tcp_nodelay true"
        broker = Broker(pathlib.Path(tmp) / "broker", extra=conf).start()
        size = 60  # body bytes: a ~100-byte envelope, like the 100-byte payloads of the direct publisher
        try:
            if args.stall_only:
                stall(broker, tmp, args.stall_seconds)
                return 0
            print(f"{args.messages} messages, QoS 1, mosquitto on 127.0.0.1:{broker.port}")
            print("| publisher | publish msg/s | vs paho | received | end to end msg/s | vs paho |")
            print("|---|---|---|---|---|---|")
            peer = None
            for name, cmd in (("paho-mqtt direct (peer)", [PY, "-c", PAHO_DIRECT]),
                              ("device through the bridge", [PY, "-c", BRIDGE])):
                extra = [str(pathlib.Path(tmp) / "outbox")] if "bridge" in name else []
                pub_s, got, sub_s = run(broker, cmd, 1, args.messages, 100 if extra == [] else size, extra)
                pub, e2e = args.messages / pub_s, got / sub_s if sub_s > 0 else 0.0
                peer = peer or (pub, e2e)
                print(f"| {name} | {pub:,.0f} | {pub / peer[0]:.2f}x | {got} | {e2e:,.0f} "
                      f"| {e2e / peer[1]:.2f}x |", flush=True)
            fleet(broker, tmp, args.rate, args.seconds)
            roundtrip(broker, tmp, args.calls)
            stall(broker, tmp, args.stall_seconds)
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
