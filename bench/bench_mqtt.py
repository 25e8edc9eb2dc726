"""MQTT throughput into a local mosquitto: spoolbus's MicroPython client and paho transport vs direct paho.

Run: .venv/bin/python bench/bench_mqtt.py [--messages N] [--size BYTES]
Every publisher and the counting subscriber are separate processes on one broker started here. "publish"
is the publisher's own rate (first send until every message is written, and for QoS 1 acknowledged);
"end to end" is what the subscriber received per second from its first to its last message. Then the
MicroPython heap: the modules, a connected transport, and a connected transport over TLS beside a plain one.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "host"))
from mosquitto import Broker, make_certs  # noqa: E402

PY = sys.executable
MICROPYTHON = os.environ.get("SPOOLBUS_MICROPYTHON", str(ROOT / ".cache/micropython-1.25.0/bin/micropython"))
TOPIC = "spoolbus/bench/sink/inbox"

SUBSCRIBER = """
import sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, qos, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
state = {"n": 0, "first": 0.0, "last": 0.0}
def on_message(c, u, msg):
    now = time.perf_counter()
    if not state["n"]:
        state["first"] = now
    state["n"] += 1
    state["last"] = now
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-sink", protocol=paho.MQTTv311)
c.on_message = on_message
c.on_subscribe = lambda *a: print("ready", flush=True)
c.connect("127.0.0.1", port)
c.subscribe(sys.argv[4], qos)
c.loop_start()
deadline = time.monotonic() + 120
seen, idle_since = -1, time.monotonic()
while state["n"] < n and time.monotonic() < deadline:
    time.sleep(0.05)
    if state["n"] != seen:
        seen, idle_since = state["n"], time.monotonic()
    elif state["n"] and time.monotonic() - idle_since > 3:
        break
c.loop_stop()
print(state["n"], state["last"] - state["first"], flush=True)
"""

PAHO_DIRECT = """
import sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, qos, n, size = (int(a) for a in sys.argv[1:5])
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho", protocol=paho.MQTTv311)
c.connect("127.0.0.1", port)
c.loop_start()
while not c.is_connected():  # publish from CONNACK on, as the transports do
    time.sleep(0.001)
payload = bytes(size)
start = time.perf_counter()
for _ in range(n):
    info = c.publish(sys.argv[5], payload, qos)
info.wait_for_publish(120)  # QoS 1: PUBACKs come in order, so the last one means all
print(time.perf_counter() - start)
c.disconnect()
c.loop_stop()
"""

PAHO_TRANSPORT = """
import sys, time
from spoolbus_host.mqtt.paho import PahoTransport
port, qos, n, size = (int(a) for a in sys.argv[1:5])
t = PahoTransport("127.0.0.1", port, "bench", "paho", qos=qos, clean_session=True)
payload = bytes(size)
start = time.perf_counter()
for _ in range(n):
    t.send("sink", payload)
while len(t.client._out_messages):  # paho's own queue of messages not yet written/acknowledged
    time.sleep(0.001)
print(time.perf_counter() - start)
t.close()
"""

MP_TRANSPORT = """
import sys, time
from spoolbus.transport.mqtt_client import MQTTClient
from spoolbus.transport.mqtt import MQTTTransport
port, qos, n, size = (int(a) for a in sys.argv[1:5])
client = MQTTClient("bench-mp", "127.0.0.1", port, max_inflight=20)
t = MQTTTransport(client, "bench", "mp", qos=qos)
payload = bytes(size)
start = time.ticks_us()
for _ in range(n):
    t.send("sink", payload)
while client.pending:
    client.poll(1)
print(time.ticks_diff(time.ticks_us(), start) / 1e6)
t.close()
"""

MEMORY = """
import gc, sys
gc.collect(); base = gc.mem_alloc()
from spoolbus import errors
gc.collect(); a1 = gc.mem_alloc()
from spoolbus.transport import mqtt_client
gc.collect(); a2 = gc.mem_alloc()
from spoolbus.transport import mqtt
gc.collect(); a3 = gc.mem_alloc()
client = mqtt_client.MQTTClient("bench-mem", "127.0.0.1", int(sys.argv[1]), max_packet=int(sys.argv[2]))
t = mqtt.MQTTTransport(client, "bench", "mem")
t.send("mem", bytes(100))
while t.recv(100) is None:
    pass
gc.collect(); a4 = gc.mem_alloc()
print(a1 - base, a2 - a1, a3 - a2, a4 - a3, gc.mem_free())
t.close()
"""

TLS_MEMORY = """
import gc, sys, ffi
from spoolbus import errors
from spoolbus.transport import mqtt_client, mqtt
c_heap = ffi.open("libc.so.6").func("v", "malloc_stats", "")  # to stderr: Mbed TLS allocates with calloc

def main(port, max_packet, ca):  # locals: no growing dict of globals in the figures
    gc.collect(); base = gc.mem_alloc()
    ctx = tls = None
    if ca != "-":
        import tls
    gc.collect(); imported = gc.mem_alloc()
    c_heap()
    if tls:
        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = tls.CERT_REQUIRED
        ctx.load_verify_locations(open(ca, "rb").read())
    client = mqtt_client.MQTTClient("bench-mem", "127.0.0.1", port, max_packet=max_packet, ssl=ctx)
    t = mqtt.MQTTTransport(client, "bench", "mem")
    t.send("mem", bytes(100))
    while t.recv(100) is None:
        pass
    gc.collect(); connected = gc.mem_alloc()
    c_heap()
    print(imported - base, connected - imported, gc.mem_free())
    t.close()

main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
"""


def memory(broker: Broker, tmp: str) -> None:
    """Heap used on MicroPython by the .mpy modules and by a connected transport, at two heap sizes."""
    mpy = pathlib.Path(tmp) / "mpy"
    mpy_cross = os.environ.get("SPOOLBUS_MPY_CROSS", str(pathlib.Path(MICROPYTHON).with_name("mpy-cross")))
    for rel in ("__init__", "errors", "transport/__init__", "transport/mqtt_client", "transport/mqtt"):
        out = mpy / "spoolbus" / (rel + ".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        src = ROOT / "runtime" / "spoolbus" / (rel + ".py")
        subprocess.run([mpy_cross, "-o", str(out), "-s", f"spoolbus/{rel}.py", str(src)], check=True)
    script = pathlib.Path(tmp) / "mem.py"
    script.write_text(MEMORY)
    print("\n| heap | max_packet | errors.mpy | mqtt_client.mpy | mqtt.mpy | connected transport | free |")
    print("|---|---|---|---|---|---|---|")
    for heap in ("32k", "48k"):
        for max_packet in (1024, 4096):
            r = subprocess.run([MICROPYTHON, "-X", f"heapsize={heap}", str(script), str(broker.port),
                                str(max_packet)], env=dict(os.environ, MICROPYPATH=str(mpy)),
                               capture_output=True, text=True)
            failed = (r.stdout + r.stderr).strip().splitlines()[-1:] or [f"exit {r.returncode}"]
            cells = r.stdout.split() if r.returncode == 0 else ["-"] * 4 + failed
            print(f"| {heap} | {max_packet} | " + " | ".join(cells) + " |", flush=True)
    tls_memory(mpy, tmp)


def _c_heap_in_use(stderr: str) -> list[int]:
    """The "in use bytes" of each glibc malloc_stats() total in `stderr`."""
    lines = stderr.splitlines()
    return [int(lines[i + 2].split("=")[1]) for i, line in enumerate(lines) if line.startswith("Total")]


def tls_memory(mpy: pathlib.Path, tmp: str) -> None:
    """A connected transport over TLS beside a plain one: the GC heap (with TLS: its SSLContext, which
    holds the CA, and socket; one figure, as the conservative GC may charge the CA's bytes to either),
    and the C heap Mbed TLS takes with calloc on the unix port, which a board whose Mbed TLS allocates
    from the MicroPython heap pays there too."""
    certs = pathlib.Path(tmp) / "certs"
    ca, cert, key = make_certs(certs)
    subprocess.run(["openssl", "x509", "-in", str(ca), "-outform", "der", "-out", str(certs / "ca.der")],
                   check=True, capture_output=True)
    tls_broker = Broker(pathlib.Path(tmp) / "tls", tls=(ca, cert, key)).start()
    plain_broker = Broker(pathlib.Path(tmp) / "plain").start()
    script = pathlib.Path(tmp) / "tls_mem.py"
    script.write_text(TLS_MEMORY)
    print("\n| connection | heap | max_packet | import tls | connected transport (and SSLContext) | free "
          "| Mbed TLS C heap |")
    print("|---|---|---|---|---|---|---|")
    try:
        env = dict(os.environ, MICROPYPATH=str(mpy))
        for name, broker, ca in (("plain", plain_broker, "-"), ("TLS", tls_broker, str(certs / "ca.der"))):
            for heap in ("48k", "64k"):
                cmd = [MICROPYTHON, "-X", f"heapsize={heap}", str(script), str(broker.port), "1024", ca]
                r = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if r.returncode:
                    cells = ["-"] * 2 + [(r.stdout + r.stderr).strip().splitlines()[-1]] + ["-"]
                else:
                    before, after = _c_heap_in_use(r.stderr)
                    cells = r.stdout.split() + [str(after - before)]
                print(f"| {name} | {heap} | 1024 | " + " | ".join(cells) + " |", flush=True)
    finally:
        tls_broker.stop()
        plain_broker.stop()


def run(broker: Broker, publisher: list[str], qos: int, n: int, size: int,
        extra: list[str] | tuple = ()) -> tuple[float, int, float]:
    """(publisher's seconds, messages the subscriber got, subscriber's seconds first to last)."""
    sub = subprocess.Popen([PY, "-c", SUBSCRIBER, str(broker.port), str(qos), str(n), TOPIC],
                           stdout=subprocess.PIPE, text=True)
    assert sub.stdout.readline().strip() == "ready"
    env = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen")
    args = [str(broker.port), str(qos), str(n), str(size), TOPIC, *extra]
    pub = subprocess.run(publisher + args, check=True,
                         env=env, stdout=subprocess.PIPE, text=True)
    got, seconds = sub.communicate(timeout=180)[0].split()
    return float(pub.stdout.split()[-1]), int(got), float(seconds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", type=int, default=100)
    args = ap.parse_args()
    publishers = {
        "paho-mqtt direct (peer)": [PY, "-c", PAHO_DIRECT],
        "spoolbus MicroPython client (MQTTTransport)": [MICROPYTHON, "-c", textwrap.dedent(MP_TRANSPORT)],
        "spoolbus paho transport (PahoTransport)": [PY, "-c", PAHO_TRANSPORT],
    }
    with tempfile.TemporaryDirectory() as tmp:
        # Unbounded per-client queue: mosquitto's default (1000) drops QoS 1 for a subscriber that lags.
        broker = Broker(pathlib.Path(tmp), extra="max_queued_messages 0").start()
        try:
            print(f"{args.messages} messages of {args.size} B, mosquitto on 127.0.0.1:{broker.port}")
            print("| publisher | QoS | publish msg/s | vs paho | received | end to end msg/s | vs paho |")
            print("|---|---|---|---|---|---|---|")
            for qos in (0, 1):
                peer = None
                for name, cmd in publishers.items():
                    pub_s, got, sub_s = run(broker, cmd, qos, args.messages, args.size)
                    pub, e2e = args.messages / pub_s, (got / sub_s if sub_s > 0 else 0.0)
                    peer = peer or (pub, e2e)
                    print(f"| {name} | {qos} | {pub:,.0f} | {pub / peer[0]:.2f}x | {got} | {e2e:,.0f} "
                          f"| {e2e / peer[1]:.2f}x |", flush=True)
            memory(broker, tmp)
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
