"""`spoolbus demo`: the whole system in one command, then a summary; nothing is left running.

A broker, a bridge, a QEMU board and eight MicroPython unix boards (one on a serial pty, seven sharing a
spool: a logger and six sensors) get their applications deployed, then the host calls, casts and listens
for a while, upgrades the sensor from API 1.0 to 1.1 mid-run by redeploying it, rolls that release out to
every sensor in waves over the bus, has a bad release stopped at its canary and rolled back, and reports.
Exit status 0 only without errors. What it starts and shows: docs/demo.md.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus import proc
from spoolbus.transport.mqtt import topic_filter

from spoolbus_host.bridge import routing
from spoolbus_host.demo.fleet import GOOD, UNIX, Fleet
from spoolbus_host.demo.staged import Staged
from spoolbus_host.demo.traffic import DEVICES, SENSOR, SERIAL, Traffic
from spoolbus_host.demo.view import Frame, LiveView, summary_text

# Bridge counters that mean a message was lost or refused: any of them makes the demo fail.
BRIDGE_ERRORS = routing.ERRORS
READY_TIMEOUT_S = 30.0
FINISH_TIMEOUT_S = 120.0  # after the traffic's time, for the upgrade and the staged rollout to finish


class _BrokerTap:
    """Counts every message published to a node's inbox on the broker (a plain paho subscriber)."""

    def __init__(self, host: str, port: int, prefix: str):
        self.count = 0
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"demo-tap-{os.getpid()}")
        c.on_connect = lambda client, *a: client.subscribe(topic_filter(prefix, "inbox"), 0)
        c.on_message = self._on_message
        c.connect(host, port)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        self.count += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class _Upgrade:
    """The rolling upgrade of the sensor: redeploy it as release GOOD while the traffic goes on."""

    def __init__(self, fleet: Fleet, traffic: Traffic):
        self.fleet = fleet
        self.traffic = traffic
        self.started_s: float | None = None
        self.deployed_s: float | None = None
        self.deploy_s = 0.0
        self.sent = 0
        self.failed_before = 0
        self.error = ""
        self._thread = threading.Thread(target=self._run, daemon=True, name="upgrade")

    def start(self) -> None:
        self.started_s = self.traffic.now()
        self.failed_before = self.traffic.snapshot()["calls_failed"]
        self._thread.start()

    def _run(self) -> None:
        try:
            report = self.fleet.deploy("sensor", GOOD)
            self.deploy_s, self.sent = report.seconds, report.sent
            self.deployed_s = self.traffic.now()
        except Exception as e:  # noqa: BLE001 - reported in the summary, the demo then fails
            self.error = f"{type(e).__name__}: {e}"

    @property
    def advertised_s(self) -> float | None:
        return self.traffic.advertised_1_1 if self.started_s is not None else None

    def join(self) -> None:
        if self._thread.is_alive():
            self._thread.join(60)

    @property
    def done(self) -> bool:
        return self.advertised_s is not None and not self.error

    def line(self) -> str:
        if self.started_s is None:
            return "gw/sensor 1.0 -> 1.1 not started yet"
        if self.error:
            return f"gw/sensor 1.0 -> 1.1 FAILED: {self.error}"
        if self.advertised_s is None:
            return (f"gw/sensor 1.0 -> 1.1 redeploying since t={self.started_s:.1f} s "
                    "(calls wait in its spool inbox)")
        first = self.traffic.first_calibrate
        used = f", first sensor.calibrate (1.1) at t={first:.1f} s" if first is not None else ""
        calls, slowest = self.waited()
        files = f"{self.sent} file{'' if self.sent == 1 else 's'}"
        return (f"gw/sensor 1.0 -> 1.1 at t={self.started_s:.1f} s: redeployed ({files} changed) "
                f"in {self.deploy_s:.1f} s, hello advertised 1.1 at t={self.advertised_s:.1f} s{used}; "
                f"{calls} sensor calls meanwhile (slowest {slowest:.0f} ms), {self.failed_during()} failed")

    def failed_during(self) -> int:
        """Failed calls (to any board) since the upgrade started."""
        if self.started_s is None:
            return 0
        return self.traffic.snapshot()["calls_failed"] - self.failed_before

    def waited(self) -> tuple[int, float]:
        """Sensor calls sent while it was being upgraded (until its new hello), and the longest in ms."""
        end = self.advertised_s
        if self.started_s is None or end is None:
            return 0, 0.0
        during = [took for at, took in self.traffic.sensor_calls if at + took >= self.started_s and at <= end]
        return len(during), round(max(during, default=0.0) * 1000, 1)

    def report(self) -> dict:
        calls, slowest = self.waited()
        return {"device": SENSOR, "from": "1.0", "to": "1.1", "done": self.done,
                "started_at_s": _round(self.started_s), "deploy_s": round(self.deploy_s, 2),
                "files_sent": self.sent, "deployed_at_s": _round(self.deployed_s),
                "advertised_at_s": _round(self.advertised_s), "sensor_calls_during": calls,
                "slowest_call_during_ms": slowest,
                "first_1_1_call_at_s": _round(self.traffic.first_calibrate), "error": self.error,
                "failed_calls_during": self.failed_during(), "summary": self.line()}


def _round(t: float | None) -> float | None:
    return None if t is None else round(t, 2)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the demo the way Ctrl-C does: through every `finally`


def run(seconds: float, as_json: bool) -> int:
    """Run the demo for `seconds` of traffic; the summary goes to stdout (as JSON with `as_json`)."""
    out = sys.stderr if as_json else sys.stdout
    previous = signal.signal(signal.SIGTERM, _interrupt)
    fleet = Fleet()
    summary: dict = {"ok": False, "errors": 0, "error_list": [], "seconds": 0.0, "startup_s": 0.0,
                     "workdir": str(fleet.workdir)}
    interrupted = False
    try:
        _demo(fleet, seconds, out, summary)
    except KeyboardInterrupt:
        interrupted = True
        summary["error_list"].append("interrupted")
    except Exception as e:  # noqa: BLE001 - reported below; everything started is still stopped
        summary["error_list"].append(f"{type(e).__name__}: {e}")
    finally:
        summary["processes"] = fleet.processes()
        fleet.close()
        signal.signal(signal.SIGTERM, previous)
    summary["left_running"] = [pid for pid in summary["processes"] if proc.alive(pid)]
    summary["left_running"] += ["work directory"] if fleet.workdir.exists() else []
    summary["error_list"] += [f"still running after the end: {x}" for x in summary["left_running"]]
    summary["errors"] = len(summary["error_list"])
    summary["ok"] = summary["errors"] == 0
    if as_json:
        print(json.dumps(summary, indent=1, default=str))
    elif "traffic" in summary:
        print(summary_text(summary), flush=True)
    else:
        print("spoolbus demo failed: " + "; ".join(summary["error_list"]), file=sys.stderr)
    if interrupted:
        return 130
    return 0 if summary["ok"] else 1


def _demo(fleet: Fleet, seconds: float, out, summary: dict) -> None:
    started = time.monotonic()

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    say(f"spoolbus demo: starting a broker, a bridge, a QEMU board and {len(UNIX)} MicroPython unix boards")
    fleet.start(say)
    summary["broker_port"] = fleet.broker.port
    traffic = Traffic(fleet.broker.host, fleet.broker.port, started)
    tap = _BrokerTap(fleet.broker.host, fleet.broker.port, fleet.bridge.prefix)
    try:
        missing = traffic.wait_ready(READY_TIMEOUT_S)
        if missing:
            raise RuntimeError(f"no hello from {', '.join(missing)} within {READY_TIMEOUT_S:.0f} s")
        say(f"[{traffic.now():5.1f} s] every board answered hello; traffic for {seconds:.0f} s")
        summary["startup_s"] = round(traffic.now(), 2)
        _traffic(fleet, traffic, tap, seconds, out, summary)
    finally:
        tap.close()
        traffic.close()


def _traffic(fleet: Fleet, traffic: Traffic, tap: _BrokerTap, seconds: float, out, summary: dict) -> None:
    view = LiveView(out, redraw=out.isatty())
    upgrade = _Upgrade(fleet, traffic)
    staged = Staged(fleet, traffic, view.note)
    begin = traffic.started = time.monotonic()  # times in the view and summary count from here
    last_view, last_count = begin, 0

    def busy() -> bool:
        """The upgrade or the staged rollout after it still under way: a short run lets them finish
        under traffic."""
        if upgrade.started_s is None or not (upgrade.done or upgrade.error):
            return True
        return upgrade.done and not staged.finished

    try:
        while True:
            elapsed = time.monotonic() - begin
            if elapsed >= seconds and not busy() or elapsed >= seconds + FINISH_TIMEOUT_S:
                break
            traffic.round()
            if upgrade.started_s is None and elapsed >= seconds * 0.4:
                upgrade.start()
            if staged.started_s is None and upgrade.done:
                staged.start()
            now = time.monotonic()
            if now - last_view >= 1.0:
                count = tap.count + fleet.bridge.stats["local"]
                rate = (count - last_count) / (now - last_view)
                view.show(Frame(now - begin, seconds, _devices(fleet, traffic), rate, traffic.snapshot(),
                                upgrade.line(), staged.line()))
                last_view, last_count = now, count
            time.sleep(0.02)
        summary["seconds"] = round(time.monotonic() - begin, 2)
        upgrade.join()
        traffic.controller = traffic.call(SERIAL, "controller.status", {}) or traffic.controller
    finally:  # also when interrupted: the summary says what happened until then
        summary["seconds"] = summary["seconds"] or round(time.monotonic() - begin, 2)
        _summarize(fleet, traffic, tap, upgrade, staged, summary)


def _devices(fleet: Fleet, traffic: Traffic) -> list[dict]:
    versions = traffic.versions()
    return [{"name": d.name, "board": d.board, "link": d.link, "online": d.device in fleet.bridge.online,
             "services": versions.get(d.name, {}), "deploy_s": round(d.deploy_s, 2)}
            for d in fleet.devices.values()]


def _summarize(fleet: Fleet, traffic: Traffic, tap: _BrokerTap, upgrade: _Upgrade, staged: Staged,
               summary: dict) -> None:
    snap = traffic.snapshot()
    errors = summary["error_list"]
    errors += [f"{f['node']} {f['method']} at t={f['at_s']} s: {f['error']}: {f['message']}"
               for f in traffic.failures]
    c = traffic.controller
    if c.get("failed"):
        errors.append(f"the controller had {c['failed']} failed rounds: {c.get('errors')}")
    bridge = fleet.bridge.report()
    errors += [f"bridge counted {bridge[k]} {k}" for k in BRIDGE_ERRORS if bridge.get(k)]
    if not upgrade.done:
        errors.append(f"rolling upgrade not done: {upgrade.line()}")
    errors += staged.problems()
    devices = {d["name"]: d for d in _devices(fleet, traffic)}
    for name in DEVICES:
        devices[name]["took_part"] = name in snap["answered"]
        if name not in snap["answered"]:
            errors.append(f"{name} answered no call")
    summary.update(devices=devices, traffic=snap, bridge=bridge, controller=c, logger=traffic.logger,
                   messages=tap.count + bridge.get("local", 0), upgrade=upgrade.report(),
                   rollout=staged.report(), broker_port=fleet.broker.port)
