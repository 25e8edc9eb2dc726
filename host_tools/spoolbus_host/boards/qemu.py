"""Booting a QEMU board: the profile's qemu-system-* on a firmware, and the pty QEMU gives its UART.

One start for `spoolbus flash`, the HIL plugin and the demo. QEMU's output is read to its end (so
QEMU never blocks on a full pipe) and handed to `console`; a start that shows no pty within the
profile's boot timeout is stopped and raises QemuError with the end of what QEMU printed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spoolbus_host.boards.profiles import BoardProfile

_PTY_LINE = re.compile(rb"char device redirected to (/dev/pts/\d+)")


class QemuError(RuntimeError):
    """QEMU is missing, or did not start the board; the message says which, with QEMU's last words."""


@dataclass
class QemuBoard:
    """A booted QEMU board: its process and the pty of its UART, where deploy and the bridge connect."""

    proc: subprocess.Popen
    port: str
    firmware: str
    seconds: float

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def boot(
    profile: BoardProfile, firmware: Path, console: Callable[[bytes], None] | None = None,
    cwd: Path | None = None,
) -> QemuBoard:
    """Start `profile`'s QEMU command on `firmware` (its own process group) and wait for the UART's pty."""
    started = time.monotonic()
    if not shutil.which(profile.command[0]):
        raise QemuError(f"{profile.command[0]} is not installed: run `make setup` "
                        "(Debian packages qemu-system-arm, qemu-system-misc)")
    proc = subprocess.Popen(
        profile.run_command(firmware), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
    )
    assert proc.stdout is not None
    out = proc.stdout
    seen = b""
    deadline = time.monotonic() + profile.boot_timeout_s
    while time.monotonic() < deadline:
        line = out.readline()
        if not line:
            break
        seen = (seen + line)[-400:]
        if console:
            console(line)
        m = _PTY_LINE.search(line)
        if m:
            threading.Thread(target=_drain, args=(out, console), daemon=True).start()
            return QemuBoard(proc, m.group(1).decode(), str(firmware), time.monotonic() - started)
    proc.kill()
    proc.wait()
    raise QemuError(f"QEMU did not start the board: {seen.decode(errors='replace')}")


def _drain(out, console: Callable[[bytes], None] | None) -> None:
    for line in out:
        if console:
            console(line)
