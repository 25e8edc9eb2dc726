"""A fleet for the rollout tests: mosquitto, two bridges in threads, a dozen boards behind them, callers.

Everything is real. Each bridge (`gwa`, `gwb`) runs `Bridge.run` in its own thread on one shared
mosquitto, serves a spool directory and the serial links of its pty and QEMU boards:

- "pty":   the MicroPython unix ROM on a pty (`UnixBoard`), deployed first over that serial port (the
           raw REPL), then attached to the bridge (`serialport.connect` + `Bridge.attach`);
- "qemu":  the QEMU board's deployable firmware, deployed first over its UART (deploy root /flash, a
           littlefs RAM disk), then attached to the bridge the same way;
- "spool": the cheap board: the unix port running the deploy's boot loader in a directory that stands for
           its flash, restarted whenever it exits (its reset), its node on the bridge's spool
           (`SpoolTransport(..., gateway="<bridge>/_bridge")`). Its flash is written as a serial deploy
           leaves it, without a deploy.

Every board runs tests/host/fleet_app (one tree for all: a board's identity is its `device.json`, outside
the tree). `Caller` is a host that keeps calling every device while a rollout runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ota_rig import Owner, wait_link_open
from spoolbus import contract, errors
from spoolbus.node import Node
from spoolbus_host import serialport
from spoolbus_host.boards.unix_board import MICROPYTHON, UnixBoard
from spoolbus_host.bridge.gateway import Bridge
from spoolbus_host.deploy import build as dbuild
from spoolbus_host.deploy import micropython as serial_deploy
from spoolbus_host.deploy import ota
from spoolbus_host.deploy.agent import Agent
from spoolbus_host.mqtt.broker import Broker
from spoolbus_host.mqtt.paho import PahoTransport
from spoolbus_host.testing import flashdir

APP = Path(__file__).with_name("fleet_app")
BRIDGES = ("gwa", "gwb")
QEMU_ROOT = "/flash/"

# The contract the host calls with: app 1.1 added `tree`. A Client caps each call at the API version the
# device advertised in its hello, so `tree` goes only to devices that run 1.1.
APP_CONTRACT = contract.Service("app", "1.1")
APP_CONTRACT.method("version")
APP_CONTRACT.method("echo", ("data", None))
APP_CONTRACT.method("tree", since="1.1")

# Runs the flash's main.py (the deploy's boot loader) with the flash as the working directory; the runtime
# comes only from the booted tree (MICROPYPATH has nothing of it).
_BOOT = """import os, sys
os.chdir(sys.argv[1])
exec(open("main.py").read(), {"__name__": "__main__"})
"""


def has_qemu() -> bool:
    return shutil.which("qemu-system-arm") is not None and shutil.which("arm-none-eabi-gcc") is not None


class SpoolBoard:
    """The cheap board: a unix-port process booting the flash's loader, started again when it exits."""

    def __init__(self, flash: Path, boot_script: Path):
        self.flash = flash
        self.boot_script = boot_script
        self.console: list[str] = []
        self.downs: list[tuple[float, float]] = []  # (exited, its node up again): its reboots, monotonic
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"board {flash.name}")

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        env = dict(os.environ, MICROPYPATH=".frozen")
        exited = None
        while not self._stop.is_set():
            self.proc = subprocess.Popen([str(MICROPYTHON), str(self.boot_script), str(self.flash)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, env=env)
            for line in self.proc.stdout:
                text = line.decode("utf-8", "replace").rstrip("\n")
                self.console.append(text)
                if exited is not None and text.startswith("fleet app "):
                    self.downs.append((exited, time.monotonic()))
                    exited = None
            self.proc.wait()
            exited = time.monotonic() if exited is None else exited

    def stop(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # a restart may have begun as stop() was called: kill that one too
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
            self._thread.join(0.1)


@dataclass
class Device:
    """One board of the fleet: `name` on the broker (bridge/device), its kind, its flash (None: QEMU's RAM
    disk at QEMU_ROOT, read over the bus)."""

    name: str
    kind: str  # spool, pty, qemu
    flash: Path | None
    board: object = None


class Fleet(Owner):
    """`start(first)` brings up the broker, the bridges and every board on release `first`; `close()`.

    `layout`: {bridge: {kind: count}}. Device names: <bridge>/<kind>-<n>, numbered across the fleet.
    """

    def __init__(self, layout: dict[str, dict[str, int]], workdir: Path | None = None):
        Owner.__init__(self, Path(workdir or tempfile.mkdtemp(prefix="spoolbus-fleet-")))
        self.layout = layout
        self.broker = Broker(self.workdir / "mosquitto", extra="set_tcp_nodelay true")
        self.bridges: dict[str, Bridge] = {}
        self.devices: list[Device] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # The longest a board of each kind took to be set up: its first serial deploy, or its flash written.
        self.started_s: dict[str, float] = {}

    # ------------------------------------------------------------------ releases

    def release(self, version: int, api: str = "1.0", *, declares: str | None = None,
                broken: bool = False) -> Path:
        """An application directory: `app.version` answers `version`, its `app` service is at `api`;
        `declares`: the app version its release.toml declares (default `api`: a release that says what it
        serves); `broken`: its release.py raises at import."""
        out = self.new_release(APP, "release.py", version, broken, f"V = {version}\nAPI = {api!r}\n")
        (out / "release.toml").write_text(f'[services]\napp = "{declares or api}"\nupdate = "1.0"\n')
        return out

    # ------------------------------------------------------------------ start-up

    def start(self, first: Path) -> None:
        self._cleanup.callback(shutil.rmtree, self.workdir, True)
        self.broker.start()
        self._cleanup.callback(self.broker.stop)
        self._cleanup.callback(self._stop_bridges)
        for b in self.layout:
            self._start_bridge(b)
        self.first_build = dbuild.build(first, None)
        self.first_tree = self.first_build.tree_id
        boot_script = self.workdir / "boot.py"
        boot_script.write_text(_BOOT)
        n = 0
        for b, kinds in self.layout.items():
            for kind, count in sorted(kinds.items()):
                for _ in range(count):
                    n += 1
                    name = f"{b}/{kind}-{n:02d}"
                    flash = None if kind == "qemu" else self.workdir / "flash" / name.replace("/", "~")
                    self.devices.append(Device(name, kind, flash))
        # The QEMU boards' first deploys (the whole runtime over an emulated UART: the slow part) go on in
        # threads while the pty boards are deployed over theirs and the cheap boards start.
        with ThreadPoolExecutor(max_workers=4) as pool:
            qemus = [pool.submit(self._timed, self._start_qemu, d, first)
                     for d in self.devices if d.kind == "qemu"]
            for d in self.devices:
                if d.kind == "pty":
                    self._timed(self._start_pty, d, first)
            for d in self.devices:
                if d.kind == "spool":
                    self._timed(self._start_spool, d, boot_script)
            for f in qemus:
                f.result()
        self.host = self.node("fleet")
        for d in self.devices:
            self.wait_answering(d)  # also makes the bridge say the device is online

    def _timed(self, start: Callable[..., None], d: Device, *args: object) -> None:
        started = time.monotonic()
        start(d, *args)
        self.started_s[d.kind] = max(self.started_s.get(d.kind, 0.0), time.monotonic() - started)

    def _start_bridge(self, name: str) -> None:
        spool = self.workdir / f"spool-{name}"
        spool.mkdir()
        bridge = Bridge(name, self.broker.host, self.broker.port, str(self.workdir / f"outbox-{name}"))
        bridge.attach_spool(str(spool))
        t = threading.Thread(target=bridge.run, args=(self._stop,), daemon=True, name=f"bridge {name}")
        t.start()
        self.bridges[name] = bridge
        self._threads.append(t)
        deadline = time.monotonic() + 10
        while not bridge.uplink and time.monotonic() < deadline:
            time.sleep(0.01)
        if not bridge.uplink:
            raise RuntimeError(f"bridge {name} did not connect to the broker")

    def _device_file(self, d: Device) -> bytes:
        """The board's identity, at its deploy root: its node name and link."""
        bridge = d.name.split("/")[0]
        cfg = {"name": d.name, "link": "spool" if d.kind == "spool" else "serial",
               "spool": str(self.workdir / f"spool-{bridge}"), "gateway": f"{bridge}/_bridge"}
        return json.dumps(cfg).encode()

    def _start_pty(self, d: Device, first: Path) -> None:
        d.flash.mkdir(parents=True)
        (d.flash / "device.json").write_bytes(self._device_file(d))
        d.board = UnixBoard(d.flash)
        self._cleanup.callback(d.board.stop)
        d.board.start()
        serial_deploy.deploy(d.board.port, first)
        # A pty is held by one side at a time: the bridge opens it after the deploy.
        wait_link_open(d.board)
        bridge, _, device = d.name.partition("/")
        link = serialport.connect(d.board.port, name=bridge, max_frame=1024)
        self.bridges[bridge].attach(device, link, where=d.board.port)

    def _start_qemu(self, d: Device, first: Path) -> None:
        from spoolbus_host.boards import firmware, profiles, qemu

        profile = profiles.load("qemu-mps2-an385")
        elf, _ = firmware.ensure_built(profile, variant="deployable")
        d.board = qemu.boot(profile, elf)
        self._cleanup.callback(d.board.stop)
        agent = Agent(d.board.port, root=QEMU_ROOT)  # the device file, before the first deploy
        try:
            agent.put(QEMU_ROOT + "device.json", self._device_file(d))
        finally:
            agent.close(reset=False)
        serial_deploy.deploy(d.board.port, first, root=QEMU_ROOT)
        bridge, _, device = d.name.partition("/")
        link = serialport.connect(d.board.port, name=bridge, baudrate=profile.baudrate,
                                  max_frame=profile.max_frame, keepalive_ms=profile.keepalive_ms,
                                  dead_ms=profile.dead_ms)
        self.bridges[bridge].attach(device, link, where=d.board.port)

    def _start_spool(self, d: Device, boot_script: Path) -> None:
        """The flash as a serial deploy of the first release leaves it, then the board process."""
        b = self.first_build
        flashdir.install(d.flash, b)
        (d.flash / "device.json").write_bytes(self._device_file(d))
        d.board = SpoolBoard(d.flash, boot_script)
        self._cleanup.callback(d.board.stop)
        d.board.start()

    def _stop_bridges(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        for b in self.bridges.values():
            b.close()

    # ------------------------------------------------------------------ the host side

    def node(self, device: str, watch: str | None = None) -> Node:
        """A host node host/<device> on the broker; closed by close()."""
        t = PahoTransport(self.broker.host, self.broker.port, "host", device, clean_session=True,
                          presence=False, watch=watch)
        node = Node(f"host/{device}", t, timeout=5.0, max_pending=16)
        self._nodes.append(node)
        return node

    def wait_answering(self, d: Device, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                self.host.call(d.name, "app.version", timeout=1.0)
                return
            except errors.SpoolbusError as e:
                last = e
        raise AssertionError(f"{d.name} did not answer app.version in {timeout} s (last: {last!r}); "
                             f"console: {self.console(d)[-1500:]}")

    def console(self, d: Device) -> str:
        if isinstance(d.board, SpoolBoard):
            return "\n".join(d.board.console)
        if isinstance(d.board, UnixBoard):
            return bytes(d.board.console).decode("utf-8", "replace")
        return ""

    def status(self, d: Device) -> dict:
        """update.status of `d`: current, previous, trial, failed."""
        return self.host.call(d.name, "update.status", {}, timeout=5.0, retries=2)

    def services(self, d: Device) -> dict[str, str]:
        """The services and API versions `d` advertises in a fresh hello."""
        self.host.peers.pop(d.name, None)
        self.host.hello(d.name)
        deadline = time.monotonic() + 5
        while d.name not in self.host.peers and time.monotonic() < deadline:
            self.host.poll(50)
        return dict(self.host.peers[d.name][0]) if d.name in self.host.peers else {}

    def boots(self, d: Device) -> list[str]:
        """The trees `d` booted, in order (its boots.log): from its flash, or over the bus from QEMU's."""
        if d.flash is not None:
            p = d.flash / "boots.log"
            return p.read_text().split() if p.is_file() else []
        return ota.fetch(self.host, d.name, "boots.log").decode().split()

    def trees(self) -> dict[str, tuple[str | None, str | None]]:
        """{device: (current tree id, previous tree id)}, as each reports them."""
        out = {}
        for d in self.devices:
            st = self.status(d)
            out[d.name] = (ota.tree_id(st.get("current")), ota.tree_id(st.get("previous")))
        return out


class Caller:
    """A host that keeps calling its devices, one after the other, through a contract Client each, until
    stop(): `app.tree` where the device's hello advertises app 1.1, else `app.version`. Every failed call
    is kept (`failures`)."""

    # Covers a board's reboot into a new tree (a unix board: about a second; the QEMU board: a few) and the
    # trial boot after it: a call sent meanwhile waits in the bridge (a serial link that is down) or in the
    # spool inbox, and is sent again each second with the same id (a duplicate is answered once).
    TIMEOUT_S = 60.0
    RETRY_S = 1.0
    HELLO_S = 0.5  # how often each device is asked for a fresh hello (its API version)

    def __init__(self, fleet: Fleet, name: str, devices: list[Device]):
        self.node = fleet.node(name)
        self.node.retries = int(self.TIMEOUT_S / self.RETRY_S) - 1
        self.node.retry_s = self.RETRY_S
        self.devices = devices
        self.clients = {d.name: self.node.client(d.name, APP_CONTRACT) for d in devices}
        self.ok: dict[str, int] = {d.name: 0 for d in devices}
        self.at_1_1: dict[str, int] = {d.name: 0 for d in devices}
        self.trees_seen: dict[str, set[str]] = {d.name: set() for d in devices}
        self.calls: dict[str, list[tuple[float, float]]] = {d.name: [] for d in devices}  # (sent, answered)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"caller {name}")

    def start(self) -> None:
        for d in self.devices:  # the first hellos: each Client's cap is known before the first call
            self._hello(d.name, wait=True)
        self._thread.start()

    def _hello(self, name: str, wait: bool = False) -> None:
        self.node.hello(name)
        deadline = time.monotonic() + 10
        while wait and name not in self.node.peers and time.monotonic() < deadline:
            self.node.poll(50)
        if wait and name not in self.node.peers:
            raise AssertionError(f"{name} did not answer hello")

    def _run(self) -> None:
        last_hello = 0.0
        while not self._stop.is_set():
            if time.monotonic() - last_hello >= self.HELLO_S:
                last_hello = time.monotonic()
                for d in self.devices:
                    self._hello(d.name)
            for d in self.devices:
                client = self.clients[d.name]
                started = time.monotonic()
                try:
                    if client.can_send_version("1.1"):
                        self.trees_seen[d.name].add(client.call("tree", timeout=self.TIMEOUT_S))
                        self.at_1_1[d.name] += 1
                    else:
                        assert isinstance(client.call("version", timeout=self.TIMEOUT_S), int)
                    self.ok[d.name] += 1
                    self.calls[d.name].append((started, time.monotonic()))
                except Exception as e:  # noqa: BLE001 - every failure is the test's finding
                    self.failures.append(f"{d.name}: {type(e).__name__}: {e}")
            self.node.poll(20)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.TIMEOUT_S + 10)
