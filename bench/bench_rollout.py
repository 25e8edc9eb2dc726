"""Staged rollout: `Rollout` of one release to a fleet behind two bridges against `deploy_over_bus` to each
device in turn, same fleet, same run.

The fleet: N simulated devices (default 50) behind two bridges (`Bridge` in threads of this process, on one
mosquitto), half on each bridge's spool. A device is a cheap real board: the MicroPython unix port running
the deploy's boot loader in its own flash directory, its node on the spool (its app service and
`update.serve`), started again when it exits (a reset, as after a commit). The devices start on release 1,
written into their flash as a serial deploy leaves it. Then, each a new release that changes the same
file (version.py): the sequential peer upgrades every device to release 2, one after another, from one host
node; the rollout takes them to release 3 (`--parallel` 4), and again to release 4 (parallel 8), with the
default waves. Meanwhile a caller thread calls every device's `app.version` through the broker, once a
second each, with retries for 20 s: a call that still fails is a device the upgrade made unreachable.

    .venv/bin/python bench/bench_rollout.py [--devices 50] [--parallel 4,8] [--heap 256k] [--poll-ms 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from spoolbus import errors
from spoolbus.node import Node
from spoolbus_host.bridge.gateway import Bridge
from spoolbus_host.deploy import build as dbuild
from spoolbus_host.deploy import ota
from spoolbus_host.mqtt.broker import Broker
from spoolbus_host.mqtt.paho import PahoTransport
from spoolbus_host.paths import RUNTIME
from spoolbus_host.rollout.run import Options, Rollout, percentile
from spoolbus_host.rollout.state import State
from spoolbus_host.testing import flashdir

ROOT = Path(__file__).resolve().parent.parent
MICROPYTHON = os.environ.get("SPOOLBUS_MICROPYTHON", str(ROOT / ".cache/micropython-1.25.0/bin/micropython"))
BRIDGES = ("bridge1", "bridge2")
RELEASE_TOML = '[services]\napp = "1.0"\nupdate = "1.0"\n'

# The device's application: its name and spool come from board.json in its flash, outside the tree, so
# that one release serves every device.
APP_MAIN = """import json
import time

import version
from spoolbus import contract, errors, update
from spoolbus.node import Node
from spoolbus.transport.spool import SpoolTransport

cfg = json.load(open("board.json"))
APP = contract.Service("app", "1.0")
APP.method("version")


class App:
    def version(self):
        return version.V


node = Node(cfg["name"], SpoolTransport(cfg["spool"], cfg["name"], gateway=cfg["gateway"]), clock=False,
            dedup_size=8)
node.serve(APP, App())
update.serve(node, deadline_s=30)
print("v%d up" % version.V)
idle_s = cfg["poll_ms"] / 1000
while True:
    try:
        if not node.poll(0):
            time.sleep(idle_s)  # one sleep: the unix port's sleep_ms (the spool's wait) wakes every 1 ms
    except errors.LinkError:
        pass
"""


class Device:
    """One simulated board: its flash directory and its MicroPython process."""

    def __init__(self, name: str, flash: Path, heap: str):
        self.name = name
        self.flash = flash
        self.heap = heap
        self.boots = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.boots += 1
        with open(self.flash.parent / "console.log", "ab") as log:
            self.proc = subprocess.Popen([MICROPYTHON, "-X", f"heapsize={self.heap}", "main.py"],
                                         cwd=self.flash, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         env=dict(os.environ, MICROPYPATH=".frozen"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Fleet:
    """The devices, each started again at once when its process exits: the reset of a board."""

    def __init__(self, devices: list[Device]):
        self.devices = devices
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, daemon=True, name="fleet")

    def start(self) -> None:
        for d in self.devices:
            d.start()
        self._thread.start()

    def _keep(self) -> None:
        while not self._stop.wait(0.02):
            for d in self.devices:
                if d.proc is not None and d.proc.poll() is not None:
                    d.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for d in self.devices:
            d.stop()

    def cpu_s(self) -> float:
        """The CPU seconds the devices' running processes have used, from /proc."""
        total = 0
        for d in self.devices:
            try:
                fields = Path(f"/proc/{d.proc.pid}/stat").read_text().rpartition(")")[2].split()
            except (OSError, AttributeError):
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """The devices' resident memory together, from /proc."""
        total = 0
        for d in self.devices:
            try:
                status = Path(f"/proc/{d.proc.pid}/status").read_text()
            except (OSError, AttributeError):
                continue
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return total / 1024


class Caller:
    """Calls every device's app.version in turn, each once a second, with generous retries; counts what
    still failed, by phase."""

    def __init__(self, node: Node, names: list[str]):
        self.node = node
        self.names = names
        self.phase = "warm-up"
        self.calls: dict[str, int] = {}
        self.failed: dict[str, list[str]] = {}
        self.slowest: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="caller")

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            for name in self.names:
                if self._stop.is_set():
                    return
                phase = self.phase
                t0 = time.monotonic()
                try:
                    self.node.call(name, "app.version", timeout=20.0, retries=19)
                except errors.SpoolbusError as e:
                    self.failed.setdefault(phase, []).append(f"{name}: {e}")
                self.calls[phase] = self.calls.get(phase, 0) + 1
                self.slowest[phase] = max(self.slowest.get(phase, 0.0), time.monotonic() - t0)
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _release(apps: Path, version: int) -> Path:
    app = apps / f"v{version}"
    app.mkdir(parents=True)
    (app / "main.py").write_text(APP_MAIN)
    (app / "version.py").write_text(f"V = {version}\n")
    (app / "release.toml").write_text(RELEASE_TOML)
    return app


def _flash(flash: Path, b: dbuild.Build, cfg: dict) -> None:
    """The flash a serial deploy of `b` leaves, and the board.json that names the device and its spool."""
    flashdir.install(flash, b)
    (flash / "board.json").write_text(json.dumps(cfg))


def _host(broker: Broker, device: str, watch: str | None = None) -> Node:
    t = PahoTransport(broker.host, broker.port, "host", device, clean_session=True, presence=False,
                      watch=watch)
    return Node(t.name, t, timeout=5.0)


def _wait_all_answer(node: Node, names: list[str], version: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            try:
                if node.call(name, "app.version", timeout=2.0, retries=1) == version:
                    break
            except errors.SpoolbusError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} does not answer app.version {version}")
            time.sleep(0.1)


@dataclass
class Row:
    """One upgrade of the whole fleet, a line of the table."""

    what: str
    phase: str  # the caller's name for it
    seconds: float
    upgraded: int
    waves: str
    p50: float
    p99: float
    plan_s: float | None = None


def _sequential(broker: Broker, names: list[str], app: Path, runtime: Path) -> Row:
    """The peer: deploy_over_bus to each device in turn, from one host node."""
    node = _host(broker, "seq")
    try:
        times = []
        started = time.monotonic()
        for name in names:
            t0 = time.monotonic()
            ota.deploy_over_bus(node, name, app, runtime=runtime)
            times.append(time.monotonic() - t0)
        took = time.monotonic() - started
    finally:
        node.close()
    return Row("`deploy_over_bus`, one device after another", "sequential", took, len(times), "-",
               percentile(sorted(times), 50), percentile(sorted(times), 99))


def _rollout(broker: Broker, app: Path, runtime: Path, parallel: int, state: Path) -> Row:
    def connect(k: int) -> Node:
        return _host(broker, f"ro{parallel}-{k}", watch="+" if k == 0 else None)

    waves: list[int] = []
    first_wave: list[float] = []

    def on_event(e: dict) -> None:
        if e["event"] == "wave":
            waves.append(e["size"])
            first_wave.append(time.monotonic())

    started = time.monotonic()
    opts = Options(parallel=parallel, runtime=runtime)
    report = Rollout(connect, app, ["bridge*/dev-*"], State(state), opts, on_event=on_event).run()
    r = report.as_dict()
    if r["outcome"] != "done":
        raise SystemExit(f"the rollout of {app.name} ended {r['outcome']}: {r['reason']}")
    done = sum(d["state"] == "done" for w in r["waves"] for d in w)
    return Row(f"`Rollout`, parallel {parallel}", f"rollout, parallel {parallel}", report.seconds, done,
               ",".join(str(n) for n in waves), r["upgrade_s"]["p50"], r["upgrade_s"]["p99"],
               first_wave[0] - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50, help="devices in all, split over the two bridges")
    ap.add_argument("--parallel", default="4,8", help="the rollouts' --parallel, one rollout each")
    ap.add_argument("--heap", default="256k", help="each device's MicroPython heap (-X heapsize)")
    ap.add_argument("--poll-ms", type=int, default=20, help="how often an idle device looks at its spool")
    args = ap.parse_args()
    parallels = [int(p) for p in args.parallel.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        work = Path(tmp)
        runtime = work / "runtime" / "spoolbus"  # a snapshot: the checkout may change during the run
        shutil.copytree(RUNTIME, runtime, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        apps = work / "apps"
        first = dbuild.build(_release(apps, 1), None, runtime)
        devices = []
        for i in range(args.devices):
            bridge = BRIDGES[i % 2]
            name = f"{bridge}/dev-{i // 2 + 1:02d}"
            flash = work / bridge / name.split("/")[1] / "flash"
            _flash(flash, first, {"name": name, "spool": str(work / bridge / "spool"),
                                  "gateway": f"{bridge}/_bridge", "poll_ms": args.poll_ms})
            devices.append(Device(name, flash, args.heap))
        devices.sort(key=lambda d: d.name)
        names = [d.name for d in devices]
        broker = Broker(work / "mosquitto", extra="set_tcp_nodelay true").start()
        fleet = Fleet(devices)
        stop = threading.Event()
        bridges: list[tuple[Bridge, threading.Thread]] = []
        check: Node | None = None
        caller: Caller | None = None
        try:
            for bridge in BRIDGES:
                b = Bridge(bridge, broker.host, broker.port, str(work / bridge / "outbox"))
                b.attach_spool(str(work / bridge / "spool"))
                t = threading.Thread(target=b.run, args=(stop,), daemon=True, name=bridge)
                t.start()
                bridges.append((b, t))
            fleet.start()
            check = _host(broker, "check")
            _wait_all_answer(check, names, 1)
            idle = fleet.cpu_s()
            time.sleep(2.0)
            idle = (fleet.cpu_s() - idle) / 2.0
            rss = fleet.rss_mb()
            caller = Caller(_host(broker, "caller"), names)
            caller.start()
            rows = []
            caller.phase = "sequential"
            rows.append(_sequential(broker, names, _release(apps, 2), runtime))
            _wait_all_answer(check, names, 2)
            for k, parallel in enumerate(parallels):
                version = 3 + k
                caller.phase = f"rollout, parallel {parallel}"
                rows.append(_rollout(broker, _release(apps, version), runtime, parallel,
                                     work / f"rollout-{version}.sqlite"))
                _wait_all_answer(check, names, version)
            caller.phase = "after"
            rss_end = fleet.rss_mb()
        finally:
            if caller is not None:
                caller.stop()
                caller.node.close()
            if check is not None:
                check.close()
            fleet.stop()
            stop.set()
            for b, t in bridges:
                t.join(10)
                b.close()
            broker.stop()

    seq_s = rows[0].seconds
    print(f"{args.devices} MicroPython unix devices (heap {args.heap}, an idle one looks at its spool every "
          f"{args.poll_ms} ms) behind {len(BRIDGES)} bridges on one mosquitto; each upgrade changes "
          f"version.py. Devices idle: {idle:.2f} cores, RSS {rss:.0f} MB together ({rss_end:.0f} MB at the "
          f"end); {sum(d.boots for d in devices)} boots in all")
    print("\n| upgrade of every device | wall time (s) | vs sequential | upgraded | waves | plan (s) "
          "| per device p50 (s) | p99 (s) | calls | failed | slowest call (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        plan = "-" if r.plan_s is None else f"{r.plan_s:.1f}"
        print(f"| {r.what} | {r.seconds:.1f} | {seq_s / r.seconds:.2f}x | {r.upgraded} | {r.waves} | {plan} "
              f"| {r.p50:.2f} "
              f"| {r.p99:.2f} | {caller.calls.get(r.phase, 0)} | {len(caller.failed.get(r.phase, []))} "
              f"| {caller.slowest.get(r.phase, 0.0):.2f} |")
    for phase, failed in caller.failed.items():
        print(f"failed calls ({phase}): " + "; ".join(failed[:5]))


if __name__ == "__main__":
    main()
