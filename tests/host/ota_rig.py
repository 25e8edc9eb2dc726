"""A rig for over-the-bus deploys: mosquitto, a bridge in a thread, a MicroPython unix board, a host node.

Everything is real: the board is the unix ROM on a pty (`UnixBoard`), first deployed over its serial
port (the raw REPL, `spoolbus_host.deploy.micropython`), then reached over one of three paths:

- "serial": the bridge opens the board's pty (its console carries frames, Ctrl-C off);
- "spool":  the board's node is on a spool directory the bridge serves (`Bridge.attach_spool`);
- "mqtt":   the board connects to the broker itself (the portable MQTT client), no bridge in the way.

The board runs tests/host/ota_app/main.py (the `app` service and the update service) with a
`board_config.py` and a `version.py` the rig writes into each release, so a release is a directory:
`Rig.release(...)`. Used by tests/host/test_ota_bridge.py and bench/bench_ota.py.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

from spoolbus import errors
from spoolbus.node import Node
from spoolbus_host import serialport
from spoolbus_host.boards.unix_board import UnixBoard
from spoolbus_host.bridge.gateway import Bridge
from spoolbus_host.deploy import micropython as serial_deploy
from spoolbus_host.mqtt.broker import Broker
from spoolbus_host.mqtt.paho import PahoTransport

APP = Path(__file__).with_name("ota_app")
BRIDGE = "ota"
DIRECT = "direct"  # the namespace of a board on the broker itself: no bridge of that name runs
LINKS = ("serial", "spool", "mqtt")


def wait_link_open(board: UnixBoard, timeout: float = 20.0) -> None:
    """Wait until the application a serial deploy just started has opened its serial link: its first
    frame (ending in 0x00) follows the deploy's soft reboot on the console. Its console is then raw
    (Ctrl-C off), so the frames of a bridge attached now cannot interrupt its boot (docs/deploy.md,
    "Ctrl-C while a board boots"), as they could a moment earlier."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        console = bytes(board.console)
        if b"\x00" in console[console.rfind(b"soft reboot"):]:
            return
        time.sleep(0.02)
    raise AssertionError(f"the application on {board.port} opened no serial link in {timeout} s; console "
                         f"tail: {bytes(board.console[-300:])!r}")


class Owner:
    """What a rig owns: the host nodes it made and the clean-ups of what it started, all ended by close()
    (or the end of its with block), the last started first."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._nodes: list[Node] = []
        self._cleanup = contextlib.ExitStack()
        self._releases = 0

    def new_release(self, app: Path, module: str, version: int, broken: bool, text: str,
                    name: str | None = None) -> Path:
        """A new application directory under workdir/apps: `app`'s main.py, and `module` holding `text`,
        or, `broken`, raising at import."""
        self._releases += 1
        out = self.workdir / "apps" / (name or f"r{self._releases}-v{version}")
        out.mkdir(parents=True)
        shutil.copy(app / "main.py", out / "main.py")
        bad = f"raise RuntimeError('release {version} is broken')\n"
        (out / module).write_text(bad if broken else text)
        return out

    def close(self) -> None:
        for node in self._nodes:
            with contextlib.suppress(Exception):
                node.close()
        self._nodes = []
        self._cleanup.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Rig(Owner):
    """`start(release)` deploys it over serial and puts the board on its path; `close()` always.

    `link`: "serial", "spool" or "mqtt"; `baud`: pace the board's pty like a UART (None: a pty's speed);
    `max_frame`: the serial link's largest frame, both ends.
    """

    def __init__(self, workdir: Path | None = None, link: str = "serial", baud: int | None = None,
                 max_frame: int = 1024):
        if link not in LINKS:
            raise ValueError(f"link {link!r} is not one of {LINKS}")
        Owner.__init__(self, Path(workdir or tempfile.mkdtemp(prefix="spoolbus-ota-")))
        self.link = link
        self.baud = baud
        self.max_frame = max_frame
        self.name = f"{DIRECT if link == 'mqtt' else BRIDGE}/board"
        self.spool = self.workdir / "spool"
        self.broker = Broker(self.workdir / "mosquitto", extra="set_tcp_nodelay true")  # started by start()
        self.bridge: Bridge | None = None
        self.board: UnixBoard | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ releases

    def release(self, version: int, *, healthy: bool = True, deadline_s: float = 30, broken: bool = False,
                blob: int = 0, trusted: list[str] | None = None, keys: dict[str, str | bytes] | None = None,
                files: dict[str, str] | None = None, name: str | None = None) -> Path:
        """An application directory: `app.version` answers `version`; `broken`: version.py raises at import;
        `healthy`: what healthy() says; `blob`: an incompressible data file of that many bytes (seeded by
        version), so a transfer lasts long enough to be cut; `files`: more modules, path -> source."""
        out = self.new_release(APP, "version.py", version, broken, f"V = {version}\n", name)
        cfg = [
            '"""Written by tests/host/ota_rig.py: the node, its link, its update service."""',
            f"NAME = {self.name!r}",
            f"LINK = {self.link!r}",
            f"MAX_FRAME = {self.max_frame}",
            f"SPOOL = {str(self.spool)!r}",
            f"GATEWAY = {BRIDGE + '/_bridge'!r}",
            f"BROKER_PORT = {self.broker.port}",
            f"KEYS = {keys!r}",
            f"TRUSTED = {trusted!r}",
            f"DEADLINE_S = {deadline_s!r}",
            f"HEALTHY = {healthy!r}",
        ]
        (out / "board_config.py").write_text("\n".join(cfg) + "\n")
        for rel, text in (files or {}).items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text(text)
        if blob:
            (out / "blob.bin").write_bytes(random.Random(version).randbytes(blob))
        return out

    # ------------------------------------------------------------------ start-up

    def start(self, first: Path | None = None, runtime: Path | None = None) -> serial_deploy.Report:
        """Broker, bridge, board; `first` (default: release 1) deployed over serial, then the board is put
        on its path and answers `app.version` there. Returns the serial deploy's report."""
        self._cleanup.callback(shutil.rmtree, self.workdir, True)
        self.broker.start()
        self._cleanup.callback(self.broker.stop)
        self.spool.mkdir()
        self._cleanup.callback(self._stop_bridge)
        self.start_bridge()
        self.board = UnixBoard(self.workdir / "flash", baud=self.baud)
        self._cleanup.callback(self.board.stop)
        self.board.start()
        self.first = first = first or self.release(1)
        report = serial_deploy.deploy(self.board.port, first, **({"runtime": runtime} if runtime else {}))
        if self.link == "serial":  # a pty is held by one side at a time: the bridge opens it after the deploy
            wait_link_open(self.board)
            self._attach_serial()
        self.host = self.node("rig")
        self.wait_answering()
        return report

    def start_bridge(self) -> None:
        self.bridge = Bridge(BRIDGE, self.broker.host, self.broker.port, str(self.workdir / "outbox"))
        self.bridge.attach_spool(str(self.spool))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.bridge.run, args=(self._stop,), daemon=True,
                                        name="bridge")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.bridge.uplink and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.bridge.uplink:
            raise RuntimeError("the bridge did not connect to the broker")

    def _attach_serial(self) -> None:
        link = serialport.connect(self.board.port, name=BRIDGE, max_frame=self.max_frame)
        self.bridge.attach("board", link, where=self.board.port)

    def restart_bridge(self) -> None:
        """Stop the bridge (its links closed, as a killed process's are) and start a new one on the same
        outbox, the serial board attached again."""
        self._stop_bridge()
        self.start_bridge()
        if self.link == "serial":
            self._attach_serial()

    def _stop_bridge(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self.bridge is not None:
            self.bridge.close()
            self.bridge = None

    def power_cut(self) -> None:
        self.board.kill()

    def power_on(self) -> None:
        self.board.start()

    # ------------------------------------------------------------------ the host side

    def node(self, device: str, keys: dict[str, bytes] | None = None) -> Node:
        """A host node host/<device> on the broker (as `spoolbus call` makes one); closed by close()."""
        t = PahoTransport(self.broker.host, self.broker.port, "host", device, clean_session=True,
                          presence=False)
        node = Node(f"host/{device}", t, keys=keys, timeout=5.0, retries=2, retry_s=1.0)
        self._nodes.append(node)
        return node

    def call(self, method: str, args: dict | None = None, node: Node | None = None, timeout: float = 5.0):
        return (node or self.host).call(self.name, method, args, timeout=timeout)

    def version(self, node: Node | None = None, timeout: float = 5.0) -> int:
        return self.call("app.version", node=node, timeout=timeout)

    def wait_answering(self, timeout: float = 20.0, version: int | None = None) -> int:
        """The version the board answers once it answers (and, given `version`, answers that one)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                got = self.call("app.version", timeout=1.0)
                if version is None or got == version:
                    return got
                last = got
            except errors.SpoolbusError as e:
                last = e
            time.sleep(0.05)
        tail = bytes(self.board.console[-1500:]).decode("utf-8", "replace") if self.board else ""
        raise AssertionError(f"{self.name} did not answer app.version {version} in {timeout} s "
                             f"(last: {last!r}); console tail:\n{tail}")

    def file(self, rel: str) -> str | None:
        """A file of the board's flash, as text (None if absent)."""
        p = self.workdir / "flash" / rel
        return p.read_text() if p.is_file() else None
