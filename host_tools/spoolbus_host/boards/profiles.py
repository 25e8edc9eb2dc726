"""Board profiles: what `boards/NAME.toml` says about a board, loaded and checked.

A profile names the MicroPython port and firmware build, the filesystem, how a test starts the board
and finds its serial line, the serial link settings and the heap budget. Errors name the file, key and fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spoolbus_host.paths import BOARDS, FIRMWARE
from spoolbus_host.toml_checks import TomlFile

BUILDABLE_PORTS = ("unix", "qemu")  # ports firmware.py builds; other boards are flashed from elsewhere
CONSOLES = ("stdio-pty", "qemu-pty")
# What the spool and the locks run on: docs/spool-format.md says what each one guarantees.
FILESYSTEMS = ("littlefs", "fat", "posix")


class BoardProfileError(ValueError):
    """A board profile that is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class BoardProfile:
    name: str
    description: str
    port: str
    filesystem: str
    micropython: str  # "" for a board that runs no MicroPython firmware (a Linux host)
    mp_board: str | None
    artifact: str
    make_vars: dict[str, str]
    features: tuple[str, ...]  # optional frozen modules: firmware/features/NAME/manifest.py each
    console: str | None  # None: a physical board, not started by the HIL plugin
    command: tuple[str, ...]
    boot_timeout_s: float
    baudrate: int
    max_frame: int
    keepalive_ms: int
    dead_ms: int
    heap: int
    path: Path

    def run_command(self, firmware: Path) -> list[str]:
        """The command that starts this board on `firmware`."""
        return [a.format(firmware=firmware, heap=self.heap) for a in self.command]


def available() -> list[str]:
    """Names of the profiles in boards/."""
    return sorted(p.stem for p in BOARDS.glob("*.toml"))


def simulated() -> list[str]:
    """Names of the profiles the HIL plugin can start on this host (they have a [run] table)."""
    return [name for name in available() if load(name).console is not None]


def load(name_or_path: str | Path) -> BoardProfile:
    """The profile `boards/NAME.toml` (or a .toml path), checked."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = BOARDS / f"{name_or_path}.toml"
    if not path.is_file():
        raise BoardProfileError(
            f"no board profile {str(name_or_path)!r}: known boards are {', '.join(available())}"
        )
    file = TomlFile(path, BoardProfileError)
    return _profile(file.read(), file)


def _profile(data: dict[str, Any], file: TomlFile) -> BoardProfile:
    path = file.path

    def get(table: str | None, key: str, kind: type, default: Any = ...) -> Any:
        return file.get(data, table, key, kind, default)

    name = get(None, "name", str)
    if name != path.stem:
        raise BoardProfileError(f"{path}: name {name!r} must match the file name {path.stem!r}")
    port = get(None, "port", str)
    filesystem = get(None, "filesystem", str)
    if filesystem not in FILESYSTEMS:
        raise BoardProfileError(f"{path}: filesystem {filesystem!r} is not one of {', '.join(FILESYSTEMS)}")
    console = None
    command: list[str] = []
    if "run" in data:
        console = get("run", "console", str)
        if console not in CONSOLES:
            raise BoardProfileError(f"{path}: run.console {console!r} is not one of {', '.join(CONSOLES)}")
        if port not in BUILDABLE_PORTS:
            ports = ", ".join(BUILDABLE_PORTS)
            raise BoardProfileError(f"{path}: [run] needs firmware built here (port {ports})")
        command = get("run", "command", list)
        if not command or not all(isinstance(a, str) for a in command):
            raise BoardProfileError(f"{path}: run.command must be a non-empty list of strings")
        if not any("{firmware}" in a for a in command):
            raise BoardProfileError(f"{path}: run.command must contain {{firmware}}")
    make_vars = get("firmware", "make_vars", dict, {})
    if not all(isinstance(v, str) for v in make_vars.values()):
        raise BoardProfileError(f"{path}: firmware.make_vars values must be strings")
    features = get("firmware", "features", list, [])
    known = sorted(p.parent.name for p in (FIRMWARE / "features").glob("*/manifest.py"))
    for feature in features:
        if feature not in known:
            choices = ", ".join(known)
            raise BoardProfileError(f"{path}: firmware.features: {feature!r} is not one of {choices}")
    mp_board = get("firmware", "board", str, None)
    if port == "qemu" and mp_board is None:
        raise BoardProfileError(f"{path}: a qemu board needs firmware.board (e.g. MPS2_AN385)")
    profile = BoardProfile(
        name=name,
        description=get(None, "description", str, ""),
        port=port,
        filesystem=filesystem,
        micropython=get("firmware", "micropython", str, "" if "firmware" not in data else ...),
        mp_board=mp_board,
        artifact=get("firmware", "artifact", str, "" if "firmware" not in data else ...),
        make_vars=dict(make_vars),
        features=tuple(features),
        console=console,
        command=tuple(command),
        boot_timeout_s=get("run", "boot_timeout_s", float, 20.0),
        baudrate=get("serial", "baudrate", int),
        max_frame=get("serial", "max_frame", int),
        keepalive_ms=get("serial", "keepalive_ms", int),
        dead_ms=get("serial", "dead_ms", int),
        heap=get("memory", "heap", int),
        path=path,
    )
    for key in ("baudrate", "max_frame", "keepalive_ms", "dead_ms", "heap"):
        if getattr(profile, key) <= 0:
            raise BoardProfileError(f"{path}: {key} must be positive")
    if profile.dead_ms <= profile.keepalive_ms:
        raise BoardProfileError(f"{path}: serial.dead_ms must be larger than serial.keepalive_ms")
    return profile
