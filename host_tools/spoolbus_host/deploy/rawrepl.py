"""The raw REPL of a MicroPython board over pyserial: enter it without a reset, paste code, leave it.

The same mechanics as mpremote's transport_serial.py (Ctrl-C, Ctrl-A, raw-paste flow control, Ctrl-B,
Ctrl-D), without importing mpremote. Each step either gets the bytes a MicroPython raw REPL sends, or
raises `ReplError` saying what came instead.
"""

from __future__ import annotations

import time

import serial

BANNER = b"raw REPL; CTRL-B to exit\r\n"


class ReplError(Exception):
    """The board's raw REPL did not answer as a MicroPython raw REPL does."""


def enter(port: serial.Serial, timeout: float) -> None:
    """The raw REPL without a soft reset, asked again each second while a board boots.

    The Ctrl-C line first ends an agent left waiting by a cut link; on a REPL or an application it is
    an interrupt and an empty line. Ctrl-A then gives the raw REPL banner; the prompt after it is left
    for `paste`.
    """
    deadline = time.monotonic() + timeout
    asked = 0.0
    tries = 0
    seen = b""
    while not seen.endswith(BANNER):
        now = time.monotonic()
        if now > deadline:
            raise ReplError(f"no raw REPL prompt within {timeout:.0f} s (got {seen[-60:]!r})")
        if now > asked + 1.0:
            # 64 Ctrl-C first: they complete a binary chunk an agent cut off mid-way was waiting for.
            port.write(b"\x03" * 64 + b"\n\r\x03\x03\r\x01")
            asked, tries, seen = now, tries + 1, b""
        seen += port.read(1)
    if tries > 1:
        # Several requests may each still be answered (a slow console can still be printing one after a
        # pause): wait until the line has been quiet for 0.2 s, then ask once more.
        quiet = time.monotonic() + 0.2
        while time.monotonic() < quiet:
            if port.in_waiting:
                port.reset_input_buffer()
                quiet = time.monotonic() + 0.2
                if quiet > deadline:
                    raise ReplError(f"the board's console did not go quiet within {timeout:.0f} s")
            time.sleep(0.02)
        port.write(b"\x01")
        if not port.read_until(BANNER).endswith(BANNER):
            raise ReplError("the raw REPL banner did not come again")


def paste(port: serial.Serial, src: bytes) -> None:
    """Start `src` in raw-paste mode (MicroPython 1.14+), the board's flow-control window at a time."""
    if not port.read_until(b">").endswith(b">"):
        raise ReplError("no raw REPL prompt")
    port.write(b"\x05A\x01")
    mode = port.read(2)
    if mode != b"R\x01":
        raise ReplError(f"no raw-paste mode (MicroPython 1.14 or later has it): {mode!r}")
    window = remain = int.from_bytes(port.read(2), "little")
    i = 0
    while i < len(src):
        while remain == 0 or port.in_waiting:
            if port.read(1) != b"\x01":  # 0x01: one more window; 0x04: the board gave up
                raise ReplError("the board ended the raw paste")
            remain += window
        chunk = src[i : i + remain]
        port.write(chunk)
        i, remain = i + len(chunk), remain - len(chunk)
    port.write(b"\x04")
    if not port.read_until(b"\x04").endswith(b"\x04"):
        raise ReplError("the raw paste was not acknowledged")


def leave(port: serial.Serial, reset: bool) -> None:
    """After the pasted code ended: the friendly REPL, and with `reset` a soft reboot (boot.py, main.py)."""
    for stream in ("output", "error output"):  # the end of an exec: 0x04 after each
        if not port.read_until(b"\x04").endswith(b"\x04"):
            raise ReplError(f"the raw REPL did not end the pasted code's {stream}")
    port.write(b"\r\x02")  # Ctrl-B: the friendly REPL
    if reset:
        port.write(b"\x04")  # friendly-REPL Ctrl-D: soft reboot
        port.flush()
