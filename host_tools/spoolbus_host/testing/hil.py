"""pytest plugin for hardware-in-the-loop tests: boots spoolbus boards and hands tests a connected node.

Fixtures: `hil_board` (a booted board of the selected profile, its link UP, a host node on it),
`hil_profile`. `--board NAME` picks the profile (default qemu-mps2-an385), `--all-boards` or the
marker `every_board` runs a test on every profile in boards/, the marker `boards(NAME, ...)` on
those. Boards always shut down (process group kill); a failing test's report carries their consoles.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import tty
from pathlib import Path

import pytest
from spoolbus import errors, frame
from spoolbus.transport.serial import UP, SerialTransport

from spoolbus_host.boards import firmware, profiles, qemu
from spoolbus_host.serialport import PySerialPort

DEFAULT_BOARD = "qemu-mps2-an385"
_CONSOLE_LIMIT = 64 * 1024


class BoardError(RuntimeError):
    """A board that did not boot or answer; the message carries the end of its console."""


class Board:
    """A running board: process, serial URL, host link and node, and the log of everything it sent.

    `node` is a spoolbus Node named "host" on `link`; the board's node is named `name` (from its hello).
    """

    def __init__(self, profile: profiles.BoardProfile, workdir: Path) -> None:
        self.profile = profile
        self.workdir = workdir
        self.firmware, _ = firmware.ensure_built(profile)
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.link: SerialTransport | None = None
        self.node = None  # spoolbus.node.Node once connected
        self.name = ""
        self.boot_seconds = 0.0
        self._console = bytearray()
        self._lock = threading.Lock()
        self._pty: tuple[int, int] | None = None
        self._stderr: Path = workdir / "board-stderr.log"

    # ---------------------------------------------------------------- lifecycle

    def start(self, link: bool = True) -> Board:
        """Start the board's process; with `link`, also wait for its hello and set up the host node."""
        started = time.monotonic()
        if self.profile.console == "stdio-pty":
            cmd = self.profile.run_command(self.firmware)
            if self._pty is None:
                master, slave = os.openpty()
                tty.setraw(slave)
                self._pty = (master, slave)
            master = self._pty[0]
            with open(self._stderr, "ab") as err:
                self.proc = subprocess.Popen(cmd, stdin=master, stdout=master, stderr=err, cwd=self.workdir,
                                             start_new_session=True)
            self.url = os.ttyname(self._pty[1])
        else:
            try:
                booted = qemu.boot(self.profile, self.firmware, console=self._log, cwd=self.workdir)
            except qemu.QemuError as e:
                raise BoardError(f"{self.profile.name}: {e}\n{self.console_text()}") from None
            self.proc, self.url = booted.proc, booted.port
        if link:
            self.connect(started)
        return self

    def _log(self, data: bytes) -> None:
        with self._lock:
            self._console += data
            if len(self._console) > _CONSOLE_LIMIT:
                del self._console[: len(self._console) - _CONSOLE_LIMIT]

    def connect(self, started: float | None = None) -> None:
        """Open the host side of the link, wait for the board's hello, and say hello as a node."""
        started = time.monotonic() if started is None else started
        p = self.profile
        if self.link is None:
            port = PySerialPort(self.url, p.baudrate)
            port.tap = self._log
            self.link = SerialTransport(port, name="host", max_frame=p.max_frame,
                                        keepalive_ms=p.keepalive_ms, dead_ms=p.dead_ms)
        self.link.open()
        deadline = started + p.boot_timeout_s
        while self.link.state != UP or self.link.peer is None:
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                raise BoardError(f"{p.name}: no hello from the board within {p.boot_timeout_s} s "
                                 f"(exit status {self.proc.poll() if self.proc else None})\n"
                                 f"{self.console_text()}")
            try:
                self.link.recv(50)
            except errors.LinkError:
                pass
        self.name = self.link.peer[1]
        self.boot_seconds = time.monotonic() - started
        if self.node is None:
            from spoolbus.node import Node  # here, so a broken node cannot break every pytest run

            self.node = Node("host", self.link, timeout=10.0)
        self.node.hello(self.name)

    def wait_for_peer(self, timeout_s: float = 10.0) -> None:
        """Poll the host node until the board's node answered hello (services and events known)."""
        assert self.node is not None
        deadline = time.monotonic() + timeout_s
        while self.name not in self.node.peers:
            if time.monotonic() > deadline:
                raise BoardError(f"{self.profile.name}: its node did not answer hello\n{self.console_text()}")
            self.node.poll(50)

    def call(self, method: str, args: dict | None = None, timeout: float = 10.0):
        """Call `method` on the board's node and return its reply."""
        assert self.node is not None
        return self.node.call(self.name, method, args, timeout=timeout)

    def kill(self) -> None:
        """Stop the board's processes at once (SIGKILL to its process group)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Kill the board's process and start it again on the same serial line (a power cycle)."""
        self.kill()
        if self.profile.console != "stdio-pty":
            raise BoardError("only a board on a host-made pty keeps its serial line across a restart")
        self.start(link=False)

    def close(self) -> None:
        self.kill()
        if self.link is not None:
            self.link.close()
        if self._pty is not None:
            for fd in self._pty:
                os.close(fd)
            self._pty = None
        if self._stderr.is_file():
            self._log(b"\n--- stderr ---\n" + self._stderr.read_bytes())

    # ---------------------------------------------------------------- console

    def console_text(self) -> str:
        """Everything the board sent, frames shown as [frame N bytes], console text as it came."""
        with self._lock:
            raw = bytes(self._console)
        parts: list[str] = []
        dec = frame.Decoder(self.profile.max_frame, lambda t: parts.append(str(t, "utf-8", "replace")))
        for seg in raw.split(b"\x00"):  # a run at a time: its text reaches parts before its frame
            parts.extend(f"[frame {len(p)} bytes]" for p in dec.feed(seg + b"\x00"))
        return "".join(parts)


# -------------------------------------------------------------------- pytest hooks and fixtures


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("spoolbus", "spoolbus hardware-in-the-loop boards")
    group.addoption("--board", default=DEFAULT_BOARD, help="board profile for HIL tests (boards/NAME.toml)")
    group.addoption("--all-boards", action="store_true", help="run every HIL test on every board profile")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "every_board: run this HIL test on every board profile in boards/")
    config.addinivalue_line("markers", "boards(*names): run this HIL test on these board profiles only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hil_profile" not in metafunc.fixturenames:
        return
    only = metafunc.definition.get_closest_marker("boards")
    if metafunc.definition.get_closest_marker("every_board") or metafunc.config.getoption("--all-boards"):
        names = profiles.simulated()
    else:
        names = [metafunc.config.getoption("--board")]
    if only:
        names = list(only.args)
    metafunc.parametrize("hil_profile", names, indirect=True, scope="function")


@pytest.fixture
def hil_profile(request: pytest.FixtureRequest) -> profiles.BoardProfile:
    return profiles.load(request.param)


@pytest.fixture
def hil_board(request: pytest.FixtureRequest, hil_profile: profiles.BoardProfile, tmp_path: Path):
    """A booted board with its link UP and a host node (`board.node`) that said hello to it."""
    b = Board(hil_profile, tmp_path)
    request.node.__dict__.setdefault("_spoolbus_boards", []).append(b)
    try:
        b.start()
        yield b
    finally:
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for b in item.__dict__.get("_spoolbus_boards", []):
            report.sections.append((f"board {b.profile.name} console ({b.url})", b.console_text()))
