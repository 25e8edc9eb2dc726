"""Device-to-broker throughput through the bridge vs a direct paho QoS 1 publisher, same broker, same run.

Run: .venv/bin/python bench/bench_bridge.py [--messages N]
The bridge has one device whose link hands it envelopes as fast as it asks (an in-process link, so
the bridge's own work is measured: decode, identity check, routing, QoS 1 publish); a separate paho
process counts what arrives. Issue 7 asks for at least 0.7x the direct publisher.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile

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
outbox = sys.argv[5]
gap = devices / rate  # each device sends every `gap` seconds

class Device:
    def __init__(self, i, t0):
        self.src = "A/d%d" % i
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

b = Bridge("A", "127.0.0.1", port, outbox)
while not b.uplink:
    time.sleep(0.01)
t0 = time.time()
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
c.loop_stop()
lat.sort()
n = len(lat)
print(n, (t[-1] - t[0]) if n > 1 else 0, lat[n // 2] if n else 0, lat[int(n * 0.99)] if n else 0)
"""


def fleet(broker: Broker, tmp: str, rate: float, seconds: float) -> None:
    print(f"\nFleet: devices simulated in the bridge process, {rate:.0f} msg/s in total, {seconds:.0f} s")
    print("| devices | offered msg/s | delivered msg/s | delivered | p50 latency ms | p99 latency ms "
          "| bridge max RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for devices in (10, 100, 500):
        sink = subprocess.Popen([PY, "-c", FLEET_SINK, str(broker.port)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert sink.stdout.readline().strip() == "ready"
        out = pathlib.Path(tmp) / f"fleet-{devices}"
        r = subprocess.run([PY, "-c", FLEET_BRIDGE, str(broker.port), str(devices), str(rate), str(seconds),
                            str(out)], check=True, stdout=subprocess.PIPE, text=True)
        got, span, p50, p99 = sink.communicate("stop\n", timeout=60)[0].split()
        print(f"| {devices} | {rate:,.0f} | {int(got) / float(span):,.0f} | {got} | {float(p50) * 1000:.1f} "
              f"| {float(p99) * 1000:.1f} | {float(r.stdout.split()[-1]):.0f} |", flush=True)

ECHO_DEVICE = """
import sys
from spoolbus import contract, errors
from spoolbus.node import Node
from spoolbus.transport.serial import SerialTransport, StreamPort
ECHO = contract.Service("echo", "1.0")
ECHO.method("echo", ("x", None))

class Echo:
    def echo(self, x):
        return x

link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name="B/echo")
node = Node("B/echo", link)
node.serve(ECHO, Echo())
link.open()
while True:
    try:
        node.poll(1000)
    except errors.LinkError:
        pass
"""

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


def roundtrip(broker: Broker, tmp: str, n: int) -> None:
    """Call round trip: host node -> broker -> bridge -> serial (pty) -> MicroPython node, and back."""
    import os
    import signal
    import textwrap
    import tty

    from bench_mqtt import MICROPYTHON, ROOT

    print(f"\nCall round trip, {n} sequential calls, QoS 1 (every process separate)")
    print("| path | calls | p50 ms | p99 ms | p50 vs paho pair |")
    print("|---|---|---|---|---|")
    # paho leaves Nagle's algorithm on; spoolbus's clients turn it off (mqtt_paho.nodelay): both shown,
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
    master, slave = os.openpty()
    tty.setraw(slave)
    script = pathlib.Path(tmp) / "echo.py"
    script.write_text(textwrap.dedent(ECHO_DEVICE))
    env = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen")
    dev = subprocess.Popen([MICROPYTHON, str(script)], stdin=master, stdout=master, env=env)
    bridge = subprocess.Popen([PY, "-m", "spoolbus_host.cli", "bridge", "B", "--serial",
                               f"echo={os.ttyname(slave)}", "--outbox", str(pathlib.Path(tmp) / "rt-outbox"),
                               "--broker", f"127.0.0.1:{broker.port}"], stderr=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL)
    try:
        r = subprocess.run([PY, "-c", NODE_CALLER, str(broker.port), str(n)], capture_output=True, text=True,
                           check=True)
        calls, p50, p99 = r.stdout.split()
        print(f"| spoolbus call: host node -> broker -> bridge -> pty -> MicroPython node | {calls} "
              f"| {float(p50) * 1000:.2f} | {float(p99) * 1000:.2f} | {float(p50) / peer:.1f}x |", flush=True)
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(10)
        dev.kill()
        dev.wait()
        os.close(master)
        os.close(slave)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rate", type=float, default=2000, help="fleet: messages/s offered by all devices")
    ap.add_argument("--seconds", type=float, default=5, help="fleet: seconds of load per fleet size")
    ap.add_argument("--calls", type=int, default=500, help="round trip: sequential calls")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        conf = "max_queued_messages 0\nset_tcp_nodelay true"
        broker = Broker(pathlib.Path(tmp) / "broker", extra=conf).start()
        size = 60  # body bytes: a ~100-byte envelope, like the 100-byte payloads of the direct publisher
        try:
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
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
