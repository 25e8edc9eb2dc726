"""Put MicroPython on a board: ESP32 family with esptool, Raspberry Pi Pico by UF2; boot a QEMU board instead.

Every image is checked before anything is written (ESP image magic and chip id, every UF2 block's magic
numbers, family id and numbering), and every failure says what to fix: a wrong port, a wrong chip, a
missing image, no bootloader drive. Nothing here reports success that did not happen.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spoolbus_host.boards import firmware, profiles, qemu
from spoolbus_host.boards.firmware import StepReport
from spoolbus_host.boards.qemu import QemuBoard

UF2_MAGIC_START0 = 0x0A324655
UF2_MAGIC_START1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_FLAG_FAMILY_ID = 0x00002000
UF2_FLAG_NOT_MAIN_FLASH = 0x00000001
UF2_BLOCK = 512
ESP_IMAGE_MAGIC = 0xE9
# Where a bootloader drive may be mounted (udisks, desktop automounters, by hand).
MOUNT_ROOTS = ("/media", "/run/media", "/mnt", "/Volumes")


class FlashError(Exception):
    """A flash that was refused or failed; the message says what to fix."""


@dataclass
class Flashed:
    board: str
    method: str
    target: str
    image: str
    bytes: int
    seconds: float
    detail: str = ""

    def summary(self) -> str:
        return f"{self.board}: wrote {self.image} ({self.bytes} bytes) to {self.target} by {self.method} " \
               f"in {self.seconds:.1f} s{'; ' + self.detail if self.detail else ''}"


def _image(path: str | Path | None, what: str) -> Path:
    if not path:
        raise FlashError(f"no firmware image given: pass --image PATH to the {what}")
    p = Path(path)
    if not p.is_file():
        raise FlashError(f"firmware image {p} does not exist: download or build it first")
    if p.stat().st_size == 0:
        raise FlashError(f"firmware image {p} is empty")
    return p


# ---------------------------------------------------------------------------------------------- UF2


@dataclass
class UF2Info:
    blocks: int
    payload: int
    family_id: int | None
    first_address: int


def check_uf2(data: bytes, family_id: int) -> UF2Info:
    """Every block: both start magics, the end magic, its number, the total, and the family id."""
    if len(data) == 0 or len(data) % UF2_BLOCK:
        raise FlashError(f"not a UF2 file: {len(data)} bytes is not a whole number of 512-byte blocks")
    n = len(data) // UF2_BLOCK
    payload = 0
    first = None
    family = None
    for i in range(n):
        blk = data[i * UF2_BLOCK : (i + 1) * UF2_BLOCK]
        m0, m1, flags, addr, size, seq, total, fam = struct.unpack_from("<8I", blk)
        (end,) = struct.unpack_from("<I", blk, UF2_BLOCK - 4)
        if (m0, m1, end) != (UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_MAGIC_END):
            raise FlashError(f"not a UF2 file: block {i} has wrong magic numbers")
        if flags & UF2_FLAG_NOT_MAIN_FLASH:
            continue
        if seq != i or total != n:
            raise FlashError(f"damaged UF2 file: block {i} says it is {seq} of {total} (file has {n})")
        if size > 476:
            raise FlashError(f"damaged UF2 file: block {i} carries {size} bytes (at most 476)")
        if not flags & UF2_FLAG_FAMILY_ID:
            raise FlashError(f"UF2 block {i} names no family id: cannot tell which chip it is for")
        if fam != family_id:
            raise FlashError(
                f"wrong chip: this UF2 is for family 0x{fam:08x}, the board needs 0x{family_id:08x} "
                "(use the firmware built for this board)"
            )
        family = fam
        payload += size
        first = addr if first is None else min(first, addr)
    return UF2Info(n, payload, family, first or 0)


def find_uf2_drive(label: str, roots: tuple[str, ...] = MOUNT_ROOTS) -> Path:
    """The mounted bootloader drive: a directory with an INFO_UF2.TXT whose Board-ID or name matches."""
    found = []
    for root in roots:
        for depth in ("*", "*/*"):
            for info in Path(root).glob(f"{depth}/INFO_UF2.TXT"):
                found.append(info.parent)
    matching = [d for d in found if d.name == label or f"Board-ID: {label}" in _read(d / "INFO_UF2.TXT")]
    if not matching:
        raise FlashError(
            f"no {label} drive mounted (looked for INFO_UF2.TXT under {', '.join(roots)}): hold BOOTSEL "
            "while plugging the board in, or pass --drive DIR"
        )
    if len(matching) > 1:
        raise FlashError(f"several {label} drives: {', '.join(map(str, matching))}; choose one with --drive")
    return matching[0]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def flash_uf2(profile: dict[str, Any], image: str | Path | None, drive: str | Path | None = None) -> Flashed:
    started = time.monotonic()
    f = profile["flash"]
    img = _image(image, "Pico's .uf2")
    data = img.read_bytes()
    info = check_uf2(data, f["family_id"])
    target = Path(drive) if drive else find_uf2_drive(f["drive_label"])
    if not (target / "INFO_UF2.TXT").is_file():
        raise FlashError(f"{target} is not a UF2 bootloader drive (no INFO_UF2.TXT)")
    dest = target / img.name
    # The bootloader writes blocks as they arrive and reboots after the last: one sequential write.
    with open(dest, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return Flashed(profile["name"], "uf2", str(target), str(img), len(data), time.monotonic() - started,
                   f"{info.blocks} blocks, family 0x{info.family_id:08x}; the board reboots when it has all")


# -------------------------------------------------------------------------------------------- esptool


def _chip_key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def check_esp_image(data: bytes, chip: str) -> None:
    """An ESP image starts with 0xE9; its extended header (bytes 12-13) names the chip it was built for."""
    from esptool.targets import CHIP_DEFS

    if chip not in CHIP_DEFS:
        raise FlashError(f"unknown ESP chip {chip!r} in the profile; esptool knows {', '.join(CHIP_DEFS)}")
    if len(data) < 24 or data[0] != ESP_IMAGE_MAGIC:
        raise FlashError("not an ESP firmware image (no 0xE9 magic byte): use MicroPython's firmware.bin")
    (image_chip,) = struct.unpack_from("<H", data, 12)
    want = getattr(CHIP_DEFS[chip], "IMAGE_CHIP_ID", None)
    if chip != "esp8266" and want is not None and image_chip != want:
        names = [n for n, c in CHIP_DEFS.items() if getattr(c, "IMAGE_CHIP_ID", None) == image_chip]
        made_for = names[0] if names else image_chip
        raise FlashError(f"wrong chip: the image is for {made_for}, the board is {chip}")


def flash_esptool(
    profile: dict[str, Any], image: str | Path | None, port: str | None, connect_attempts: int = 7
) -> Flashed:
    from esptool.cmds import attach_flash, detect_chip, erase_flash, reset_chip, run_stub, write_flash
    from esptool.util import FatalError

    started = time.monotonic()
    f = profile["flash"]
    img = _image(image, "ESP32's firmware.bin")
    data = img.read_bytes()
    check_esp_image(data, f["chip"])
    if not port:
        raise FlashError("--port is required: the board's serial port (e.g. /dev/ttyUSB0)")
    if not Path(port).exists() and "://" not in port:
        raise FlashError(f"no serial port {port}: check the name (`ls /dev/ttyUSB* /dev/ttyACM*`)")
    esp = None
    try:
        # esptool prints its progress on stdout: keep stdout for our own (JSON) result.
        with contextlib.redirect_stdout(sys.stderr):
            try:
                esp = detect_chip(port, 115200, connect_attempts=connect_attempts)
            except FatalError as e:
                text = str(e)
                if "No serial data received" in text or "Failed to connect" in text:
                    raise FlashError(
                        f"no chip answered on {port}: is an ESP board there, in bootloader mode (hold BOOT, "
                        "tap EN/RESET), and no other program using the port?"
                    ) from None
                raise FlashError(f"cannot talk to {port}: {text.splitlines()[0]}") from None
            if _chip_key(esp.CHIP_NAME) != _chip_key(f["chip"]):
                raise FlashError(
                    f"wrong chip: {port} has an {esp.CHIP_NAME}, the {profile['name']} profile is for "
                    f"{f['chip']}; choose the right --board"
                )
            esp = run_stub(esp)
            if f.get("baudrate"):
                esp.change_baud(f["baudrate"])
            attach_flash(esp)
            if f.get("erase"):
                erase_flash(esp)
            write_flash(esp, [(f["offset"], data)])  # esptool draws its own progress (on stderr)
            reset_chip(esp, "hard-reset")
    except FatalError as e:
        first = str(e).splitlines()[0]
        raise FlashError(f"flashing {port} failed: {first}; the board may need flashing again") from None
    finally:
        if esp is not None:
            with contextlib.suppress(Exception):
                esp._port.close()
    return Flashed(profile["name"], "esptool", port, str(img), len(data), time.monotonic() - started,
                   f"{f['chip']} at 0x{f['offset']:x}")


# ----------------------------------------------------------------------------------------------- QEMU


def boot_qemu(name: str, firmware_path: Path | None = None, log: StepReport | None = None) -> QemuBoard:
    """A QEMU board is booted, not flashed: build its firmware (a cache hit when nothing changed), boot it."""
    profile = profiles.load(name)
    if firmware_path is None:
        firmware_path, _ = firmware.ensure_built(profile, log)
    try:
        return qemu.boot(profile, firmware_path)
    except qemu.QemuError as e:
        raise FlashError(str(e)) from None


def flash(
    profile: dict[str, Any], image: str | Path | None = None, port: str | None = None,
    drive: str | Path | None = None,
) -> Flashed:
    """Flash by the profile's method (esptool or uf2); QEMU boards are booted by `boot_qemu`."""
    method = profile["flash"]["method"]
    if method == "esptool":
        return flash_esptool(profile, image, port)
    if method == "uf2":
        return flash_uf2(profile, image, drive)
    if method == "none":
        hint = "deploy the application with `spoolbus deploy`" if profile.get("port") == "linux" else \
            "build it with `spoolbus build-firmware`"
        raise FlashError(f"{profile['name']} boards are not flashed by spoolbus: {hint}")
    if method == "qemu":
        raise FlashError(f"{profile['name']} is a QEMU board: it is booted (`boot_qemu`), not flashed")
    raise FlashError(f"{profile['name']}: no flash method {method!r}")
