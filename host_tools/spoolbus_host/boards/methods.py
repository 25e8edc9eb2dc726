"""The [deploy] and [flash] tables of a board profile (boards/NAME.toml), read and checked.

profiles.py checks what a profile says about building and running firmware; this module checks how
`spoolbus deploy` and `spoolbus flash` reach the board. Errors name the file, the key and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spoolbus_host.boards.profiles import BoardProfileError, available
from spoolbus_host.paths import BOARDS
from spoolbus_host.toml_checks import TomlFile

DEPLOY_METHODS = ("micropython", "linux-service")
FLASH_METHODS = ("esptool", "uf2", "qemu", "none")

# key -> (type, required) for each method; unknown keys are errors (a typo must not pass silently).
_FLASH_KEYS: dict[str, dict[str, tuple[type, bool]]] = {
    "esptool": {"chip": (str, True), "offset": (int, True), "baudrate": (int, False), "erase": (bool, False)},
    "uf2": {"family_id": (int, True), "drive_label": (str, True)},
    "qemu": {},
    "none": {},
}
_DEPLOY_KEYS: dict[str, dict[str, tuple[type, bool]]] = {
    "micropython": {"root": (str, False)},
    "linux-service": {
        "service": (str, True), "prefix": (str, True), "spool": (str, True),
        "python": (str, True), "user": (str, True),
    },
}


class ProfileError(BoardProfileError):
    """A board profile whose [deploy] or [flash] table is wrong (or that is missing)."""


def read(name: str, boards_dir: Path = BOARDS) -> dict[str, Any]:
    """The whole profile as a dict, with its [deploy] and [flash] tables checked."""
    path = boards_dir / f"{name}.toml"
    if not path.is_file():
        raise ProfileError(f"no board profile {name!r}: known boards are {', '.join(available()) or 'none'}")
    file = TomlFile(path, ProfileError)
    data = file.read()
    # A QEMU board is booted (its firmware built and started) instead of flashed, whatever its profile says.
    _check(file, data, "flash", FLASH_METHODS, _FLASH_KEYS, "qemu" if data.get("port") == "qemu" else "none")
    _check(file, data, "deploy", DEPLOY_METHODS, _DEPLOY_KEYS, "micropython")
    return data


def _check(
    file: TomlFile, data: dict[str, Any], table: str, methods: tuple[str, ...],
    keys: dict[str, dict[str, tuple[type, bool]]], default: str,
) -> None:
    path = file.path
    section = data[table] = file.table(data, table)
    method = section.setdefault("method", default)
    if method not in methods:
        raise ProfileError(f"{path}: {table}.method {method!r} is not one of {', '.join(methods)}")
    allowed = keys[method]
    for key, value in section.items():
        if key == "method":
            continue
        if key not in allowed:
            raise ProfileError(f"{path}: {table}.{key} is not a setting of {table} method {method!r}")
        file.typed(f"{table}.{key}", value, allowed[key][0])
    for key, (_, required) in allowed.items():
        if required and key not in section:
            raise ProfileError(f"{path}: {table} method {method!r} needs {table}.{key}")
