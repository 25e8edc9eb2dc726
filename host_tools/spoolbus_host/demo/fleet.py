"""The demo's fleet: a mosquitto broker, a bridge, a QEMU board and eight MicroPython unix boards (a
controller, a logger and six sensors).

Everything is real: processes, ptys, a spool directory, deploys with `spoolbus_host.deploy`. `Fleet.close()`
stops whatever was started, in reverse order, and removes the work directory, whatever failed on the way.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from spoolbus.update import SERVICE as UPDATE

from spoolbus_host import serialport
from spoolbus_host.boards import firmware, profiles, qemu
from spoolbus_host.boards.unix_board import UnixBoard
from spoolbus_host.bridge.gateway import Bridge
from spoolbus_host.bridge.registry import Registry
from spoolbus_host.deploy import micropython as deploy
from spoolbus_host.deploy.build import build
from spoolbus_host.mqtt.broker import Broker
from spoolbus_host.paths import EXAMPLES, REPO, RUNTIME
from spoolbus_host.rollout.plan import RELEASE_FILE

APPS = EXAMPLES / "demo"
SERVICES = EXAMPLES / "board" / "services.py"  # the sensor and logger objects the board scenario serves
BRIDGE = "gw"
HOST = "host/demo"  # the demo's own node, straight on the broker
QEMU_PROFILE = "qemu-mps2-an385"
FLEET = tuple(f"sensor-{i}" for i in range(1, 6))  # more sensors, for the staged rollout's waves
GOOD = "1.1"  # the sensors' new release: gw/sensor's upgrade, then the staged rollout's
BAD = "1.2"  # what the bad release declares in its release.toml; its code still serves GOOD
SENSORS = ("sensor", *FLEET)  # every board of the sensor application: one tree for all of them
UNIX = ("serial", "logger", *SENSORS)


@dataclass
class Device:
    """One board of the fleet as the live view shows it."""

    name: str  # node name on the bridge, "gw/<device>"
    app: str  # directory under examples/demo/
    board: str  # what runs it
    link: str  # how the bridge reaches it
    deploy_s: float = 0.0
    release: str = ""  # a sensor's: the release its last deploy over the pty gave it
    unix: UnixBoard | None = field(default=None, repr=False)
    port: str = ""  # the pty its console (and deploy) uses

    @property
    def device(self) -> str:
        return self.name.split("/", 1)[1]


class Fleet:
    """Start with `start(say)`; `close()` always. `say(text)` reports each step of the start-up."""

    def __init__(self, workdir: Path | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="spoolbus-demo-"))
        self.spool = self.workdir / "spool"
        self.devices = {
            "qemu": Device(f"{BRIDGE}/qemu", "qemu", "QEMU mps2-an385 (Cortex-M3)", "serial pty"),
            "serial": Device(f"{BRIDGE}/serial", "controller", "MicroPython unix", "serial pty"),
            "sensor": Device(f"{BRIDGE}/sensor", "sensor", "MicroPython unix", "spool", release="1.0"),
            "logger": Device(f"{BRIDGE}/logger", "logger", "MicroPython unix", "spool"),
        }
        for key in FLEET:
            self.devices[key] = Device(f"{BRIDGE}/{key}", "sensor", "MicroPython unix", "spool",
                                       release="1.0")
        self.broker: Broker | None = None
        self.bridge: Bridge | None = None
        self.qemu = None
        self._stop = threading.Event()
        self._bridge_thread: threading.Thread | None = None
        self._cleanup = contextlib.ExitStack()

    # ------------------------------------------------------------------ start-up

    def start(self, say: Callable[[str], None]) -> None:
        started = time.monotonic()

        def step(text: str) -> None:
            say(f"[{time.monotonic() - started:5.1f} s] {text}")

        self._cleanup.callback(shutil.rmtree, self.workdir, True)
        self.broker = Broker(self.workdir / "mosquitto", extra="set_tcp_nodelay true").start()
        self._cleanup.callback(self.broker.stop)
        step(f"mosquitto broker on {self.broker.host}:{self.broker.port}")
        self.spool.mkdir()
        self.bridge = Bridge(BRIDGE, self.broker.host, self.broker.port, str(self.workdir / "outbox"),
                             registry=Registry(str(self.workdir / "registry.sqlite")))
        self._cleanup.callback(self._stop_bridge)
        self.bridge.attach_spool(str(self.spool))
        self._bridge_thread = threading.Thread(target=self.bridge.run, args=(self._stop,), daemon=True,
                                               name="bridge")
        self._bridge_thread.start()
        deadline = time.monotonic() + 10
        while not self.bridge.uplink and time.monotonic() < deadline:
            time.sleep(0.01)
        step(f"bridge {BRIDGE!r}: uplink to the broker, spool {self.spool}")

        profile = profiles.load(QEMU_PROFILE)
        if not firmware.artifact_path(profile, "deployable").is_file():
            step("building the QEMU firmware (the runtime or firmware/ changed since the cached build)")
        elf, cached = firmware.ensure_built(profile, variant="deployable")
        step(f"QEMU firmware {'(cached)' if cached else 'built'}: {elf.relative_to(REPO)}")
        self.qemu = qemu.boot(profile, elf)
        self._cleanup.callback(self.qemu.stop)
        self.devices["qemu"].port = self.qemu.port
        step(f"QEMU board booted, UART on {self.qemu.port}")
        for key in UNIX:
            d = self.devices[key]
            flash = self.workdir / f"flash-{key}"
            flash.mkdir()
            # Provisioned once, outside any tree: a release is the same tree for every board that runs it.
            (flash / "board_config.py").write_text(_board_config(d, self.spool))
            d.unix = UnixBoard(flash)
            self._cleanup.callback(d.unix.stop)
            d.port = d.unix.start()
        step(f"{len(UNIX)} MicroPython unix boards powered on (ptys " +
             ", ".join(self.devices[k].port for k in UNIX) + ")")

        # Compiled one at a time, the later releases too: the compiler cache is not for parallel writers.
        apps = {self.app_dir(key): self._runtime(key) for key in self.devices}
        apps |= {self.release_dir(GOOD): RUNTIME, self.release_dir(GOOD, declares=BAD): RUNTIME}
        for app, runtime in apps.items():
            build(app, None, runtime)
        with ThreadPoolExecutor(4) as pool:
            jobs = {key: pool.submit(self.deploy, key) for key in self.devices}
            for key, job in jobs.items():
                report = job.result()
                step(f"deployed {self.devices[key].app}/ to {self.devices[key].name}: {report.files} files, "
                     f"{report.bytes_sent} bytes in {report.seconds:.1f} s")

        # A pty is held by one side at a time: the bridge opens the serial boards once their deploy is done.
        qemu_link = {"baudrate": profile.baudrate, "max_frame": profile.max_frame,
                     "keepalive_ms": profile.keepalive_ms, "dead_ms": profile.dead_ms}
        for key, kw in (("qemu", qemu_link), ("serial", {})):
            d = self.devices[key]
            link = serialport.connect(d.port, name=BRIDGE, **kw)
            self.bridge.attach(d.device, link, where=d.port)
        step("bridge attached to both serial boards; the spool boards share its spool")

    def app_dir(self, key: str, release: str | None = None) -> Path:
        """Device `key`'s application as deployed: its app, contracts.py and services.py; a sensor's
        release (`release_dir`); the QEMU board's board_config.py (its flash is not the host's to write)."""
        d = self.devices[key]
        if d.app == "sensor":
            return self.release_dir(release or d.release)
        out = self.workdir / "apps" / key
        if out.exists():
            return out
        out.mkdir(parents=True)
        for src in (APPS / d.app).glob("*.py"):
            shutil.copy(src, out / src.name)
        if key == "qemu":
            (out / "board_config.py").write_text(_board_config(d, self.spool))
        else:
            shutil.copy(APPS / "contracts.py", out / "contracts.py")
            shutil.copy(SERVICES, out / "services.py")
        return out

    def release_dir(self, release: str, declares: str | None = None) -> Path:
        """The sensor application as release `release`: its code serves that API version (release.py) and
        its release.toml declares `declares` (default: the same; a different one is a bad release)."""
        declares = declares or release
        name = f"sensor-{release}" if declares == release else f"sensor-{declares}-bad"
        out = self.workdir / "apps" / name
        if out.exists():
            return out
        out.mkdir(parents=True)
        for src in [*(APPS / "sensor").glob("*.py"), APPS / "contracts.py"]:
            shutil.copy(src, out / src.name)
        shutil.copy(SERVICES, out / "services.py")
        (out / "release.py").write_text(f'"""The sensor API version this tree serves."""\n'
                                        f"RELEASE = {release!r}\n")
        (out / RELEASE_FILE).write_text(
            "# What this release's node serves, checked by the staged rollout on every board it reaches.\n"
            f'[services]\nsensor = "{declares}"\n{UPDATE.name} = "{UPDATE.version}"\n')
        return out

    def deploy(self, key: str, release: str | None = None) -> deploy.Report:
        """Deploy device `key`'s application (and release); the QEMU board gets it without the runtime."""
        d = self.devices[key]
        app = self.app_dir(key, release)
        root = "/flash" if key == "qemu" else ""
        report = deploy.deploy(d.port, app, root=root, runtime=self._runtime(key))
        d.deploy_s = report.seconds
        if release:
            d.release = release
        return report

    def _runtime(self, key: str) -> Path:
        """The runtime deployed with an app; none to the QEMU board: it is frozen into its firmware, and
        its emulated UART moves a few KB a second."""
        if key != "qemu":
            return RUNTIME
        empty = self.workdir / "apps" / "no-runtime"
        empty.mkdir(parents=True, exist_ok=True)
        return empty

    # ------------------------------------------------------------------ inspection and shutdown

    def processes(self) -> list[int]:
        """Process ids of everything the fleet started (broker, QEMU, MicroPython boards)."""
        procs = [self.broker.proc if self.broker else None, self.qemu.proc if self.qemu else None]
        procs += [d.unix.proc for d in self.devices.values() if d.unix]
        return [p.pid for p in procs if p is not None]

    def _stop_bridge(self) -> None:
        self._stop.set()
        if self._bridge_thread is not None:
            self._bridge_thread.join(10)
        if self.bridge is not None:
            self.bridge.close()

    def close(self) -> None:
        self._cleanup.close()


def _board_config(d: Device, spool: Path) -> str:
    lines = [
        '"""Written by `spoolbus demo` for this board: its node name and where its peers are."""',
        f"NAME = {d.name!r}",
        f"SPOOL = {str(spool)!r}",
        f"GATEWAY = {BRIDGE + '/_bridge'!r}",
        f"SENSOR = {BRIDGE + '/sensor'!r}",
        f"LOGGER = {BRIDGE + '/logger'!r}",
        "PERIOD_MS = 250",
    ]
    peers = [HOST] if d.link == "spool" else [f"{BRIDGE}/sensor", f"{BRIDGE}/logger", HOST]
    lines.append(f"PEERS = {peers!r}")
    return "\n".join(lines) + "\n"
