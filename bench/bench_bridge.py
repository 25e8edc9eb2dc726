"""Device-to-broker throughput through the bridge vs a direct paho QoS 1 publisher, same broker, same run.

Run: .venv/bin/python bench/bench_bridge.py [--messages N]
The bridge has one device whose link hands it envelopes as fast as it asks (an in-process link, so
the bridge's own work is measured: decode, identity check, routing, QoS 1 publish); a separate paho
process counts what arrives. Issue 7 asks for at least 0.7x the direct publisher.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_mqtt import PAHO_DIRECT, PY, Broker, run  # noqa: E402

BRIDGE = """
import sys, time
from spoolbus import wire
from spoolbus_host.bridge import Bridge
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(pathlib.Path(tmp) / "broker", extra="max_queued_messages 0").start()
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
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
