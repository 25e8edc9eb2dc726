"""The demo's host workload: a node on the broker that calls, casts and listens to every board.

Each round calls each board once, the fleet's sensors one in turn (latency measured here, at the caller),
casts now and then, and greets the boards every two seconds, so a restarted board's new API version is
seen; once the sensor advertises 1.1 the host starts calling sensor.calibrate. Every failure is recorded
with its time.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections import Counter, defaultdict

from spoolbus import errors
from spoolbus.node import Node

from spoolbus_host.demo.fleet import APPS, BRIDGE, FLEET, HOST
from spoolbus_host.mqtt.paho import PahoTransport


def _contracts():
    """examples/demo/contracts.py: the same service definitions the boards run."""
    spec = importlib.util.spec_from_file_location("spoolbus_demo_contracts", APPS / "contracts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


contracts = _contracts()

TICK = "board.tick"  # the QEMU board's notification (board.notify sends it to the peers that want it)
SENSOR, LOGGER, SERIAL, QEMU = (f"{BRIDGE}/{d}" for d in ("sensor", "logger", "serial", "qemu"))
SENSOR_FLEET = tuple(f"{BRIDGE}/{d}" for d in FLEET)
FLEET_READS = f"{BRIDGE}/sensor-* sensor.read"  # their latencies, as one line
DEVICES = (QEMU, SERIAL, SENSOR, LOGGER, *SENSOR_FLEET)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


class Traffic:
    """The host node and what it counted; `round()` from one thread, `snapshot()` from any."""

    def __init__(self, broker_host: str, broker_port: int, started: float):
        bridge, device = HOST.split("/")
        self.transport = PahoTransport(broker_host, broker_port, bridge, device)
        # Retries resend the same call (the board's dedup cache answers a duplicate from its cache): a call
        # a restarting board took from its inbox but never answered is sent again.
        self.node = Node(HOST, self.transport, timeout=10.0, retries=4, retry_s=2.0, max_pending=16)
        self.started = started
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)  # "dst method" -> seconds
        self.counts: Counter[str] = Counter()  # calls_ok, calls_failed, casts, notifications
        self.answered: Counter[str] = Counter()  # calls answered, by board
        self.events: Counter[str] = Counter()  # notifications by event name
        self.failures: list[dict] = []
        self.sensor_calls: list[tuple[float, float]] = []  # (started at, seconds) of each sensor call
        self.advertised_1_1: float | None = None  # when the sensor's hello first said 1.1
        self.first_calibrate: float | None = None
        self.controller: dict = {}
        self.logger: dict = {}
        self._round = 0
        self._greeted = 0.0
        self.sensor = self.node.client(SENSOR, contracts.sensor("1.1"))
        self.node.subscribe(contracts.EVENT, self._heard)
        self.node.subscribe(TICK, self._heard)

    def now(self) -> float:
        return time.monotonic() - self.started

    def _heard(self, event: str, body: object, src: str) -> None:
        with self.lock:
            self.counts["notifications"] += 1
            self.events[event] += 1

    def greet(self) -> None:
        """Hello to every board: each answers with its own (services, versions); they learn our events."""
        for dst in DEVICES:
            self.node.hello(dst)
        self._greeted = time.monotonic()

    def wait_ready(self, timeout: float) -> list[str]:
        """Greet until every board answered; returns the ones that did not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            missing = [d for d in DEVICES if d not in self.node.peers]
            if not missing:
                return []
            if time.monotonic() - self._greeted > 1.0:
                self.greet()
            self.node.poll(50)
        return [d for d in DEVICES if d not in self.node.peers]

    def versions(self) -> dict[str, dict[str, str]]:
        """Services and API versions each board advertised in its last hello."""
        return {d: dict(self.node.peers[d][0]) for d in DEVICES if d in self.node.peers}

    # ------------------------------------------------------------------ one round of traffic

    def round(self) -> None:
        i = self._round
        self._round += 1
        if time.monotonic() - self._greeted > 2.0:
            self.greet()
        self.call(SENSOR, "sensor.read", {"channel": "t1"})
        self.call(SENSOR_FLEET[i % len(SENSOR_FLEET)], "sensor.read", {"channel": "t2"}, label=FLEET_READS)
        if self.advertised_1_1 is None and self.node.peer_version(SENSOR, "sensor") == "1.1":
            self.advertised_1_1 = self.now()
        if self.sensor.can_send_version("1.1") and i % 5 == 0:  # the 1.1 method, once it is advertised
            if self.call(SENSOR, "sensor.calibrate", {"offset": 0.25}, version="1.1") is not None \
                    and self.first_calibrate is None:
                self.first_calibrate = self.now()
        self.logger = self.call(LOGGER, "logger.count", {}) or self.logger
        self.controller = self.call(SERIAL, "controller.status", {}) or self.controller
        got = self.call(QEMU, "board.add", {"a": i, "b": 1})
        if got is not None and got != i + 1:
            self._fail(QEMU, "board.add", "WrongResult", f"board.add({i}, 1) returned {got!r}")
        if i % 5 == 0:
            self.call(QEMU, "board.notify", {"event": TICK, "count": 1})
            self._cast(LOGGER, "logger.append", {"key": f"host{i}", "value": float(i)})
        if i % 10 == 0:
            self._cast(QEMU, "board.log", {"text": f"host round {i}"})
        self.node.poll(0)

    def call(self, dst: str, method: str, args: dict, version: str = "1.0",
             label: str | None = None) -> object:
        """Call and time it (under `label` in the latencies, default "dst method"); a failure is recorded
        (see `failures`) and gives None."""
        t0 = time.monotonic()
        try:
            reply = self.node.call(dst, method, args, version=version)
        except errors.RemoteError as e:
            self._fail(dst, method, e.type, e.message)
            return None
        except errors.SpoolbusError as e:
            self._fail(dst, method, type(e).__name__, str(e))
            return None
        took = time.monotonic() - t0
        with self.lock:
            self.latency[label or f"{dst} {method}"].append(took)
            self.answered[dst] += 1
            if dst == SENSOR:
                self.sensor_calls.append((t0 - self.started, took))
            self.counts["calls_ok"] += 1
        return reply

    def _cast(self, dst: str, method: str, args: dict) -> None:
        try:
            self.node.cast(dst, method, args)
        except errors.SpoolbusError as e:
            self._fail(dst, method, type(e).__name__, str(e))
            return
        with self.lock:
            self.counts["casts"] += 1

    def _fail(self, dst: str, method: str, kind: str, message: str) -> None:
        with self.lock:
            self.counts["calls_failed"] += 1
            self.failures.append({"at_s": round(self.now(), 2), "node": dst, "method": method, "error": kind,
                                  "message": message[:200]})

    # ------------------------------------------------------------------ reporting

    def snapshot(self) -> dict:
        """Counts and latencies so far (safe from another thread)."""
        with self.lock:
            lat = {k: list(v) for k, v in self.latency.items()}
            counts = dict(self.counts)
            events = dict(self.events)
            answered = dict(self.answered)
        methods = {k: {"calls": len(v), "p50_ms": round(percentile(v, 0.5) * 1000, 1),
                       "p99_ms": round(percentile(v, 0.99) * 1000, 1)} for k, v in sorted(lat.items())}
        return {"calls_ok": counts.get("calls_ok", 0), "calls_failed": counts.get("calls_failed", 0),
                "casts": counts.get("casts", 0), "notifications": counts.get("notifications", 0),
                "events": events, "methods": methods, "answered": answered}

    def close(self) -> None:
        self.node.close()
