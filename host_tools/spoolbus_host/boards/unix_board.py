"""A MicroPython unix board behind a serial port: the unix ROM on one pty, relayed to a pty the host opens.

The host sees what a USB board gives it: a /dev/pts/N path that pyserial and mpremote open, close and
reopen while the board keeps running; its working directory is the board's flash. Closing the host's
side never kills the board; `kill()` is a power cut; `start()` again is a power-on with the same flash.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import subprocess
import termios
import threading
import time
import tty
from pathlib import Path

from spoolbus_host.paths import MICROPYTHON_BUILD

ROM = Path(__file__).with_name("unix_rom.py")
MICROPYTHON = MICROPYTHON_BUILD / "micropython"


def _controlling_tty() -> None:
    """In the child: its stdin pty becomes the controlling terminal, so Ctrl-C there is SIGINT."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _write_all(fd: int, data: bytes, timeout: float | None) -> None:
    """Write every byte (a pty takes a few KB at a time); give up after `timeout` s without progress."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            if not select.select([], [fd], [], timeout)[1]:
                return
        except OSError as e:
            if e.errno == errno.EIO:  # the other side is gone
                return
            raise


class UnixBoard:
    """Start with `start()` (returns the host-side port path); `stop()` ends the board and its relay."""

    def __init__(
        self, flash: Path, micropython: str | None = None, heap: str = "512k", baud: int | None = None
    ):
        """`baud`: pace the link like a UART (10 bits a byte, each way); None: as fast as a pty goes."""
        self.flash = Path(flash)
        self.baud = baud
        self.micropython = micropython or os.environ.get("SPOOLBUS_MICROPYTHON") or str(MICROPYTHON)
        self.heap = heap
        self.proc: subprocess.Popen | None = None
        self.console = bytearray()  # everything the board wrote, for test failure messages
        self._host_master, self._host_slave = os.openpty()
        tty.setraw(self._host_slave)  # raw before any host opens it: no echo back into the board
        os.set_blocking(self._host_master, False)
        self.port = os.ttyname(self._host_slave)
        self._board_master = -1
        self._relays: list[threading.Thread] = []
        self._stop = threading.Event()

    def start(self) -> str:
        self.flash.mkdir(parents=True, exist_ok=True)
        self._board_master, board_slave = os.openpty()
        os.set_blocking(self._board_master, False)
        tty.setraw(board_slave)  # no Ctrl-C -> SIGINT before the ROM has its handler: it would kill the board
        self.proc = subprocess.Popen(
            [self.micropython, "-X", f"heapsize={self.heap}", str(ROM)],
            cwd=self.flash, stdin=board_slave, stdout=board_slave, stderr=board_slave,
            preexec_fn=_controlling_tty, close_fds=True,
        )
        os.close(board_slave)
        # A new event per power-on: a relay of the previous one must never run on reused descriptors.
        self._stop = stop = threading.Event()
        board, host = self._board_master, self._host_master
        self._relays = [
            threading.Thread(target=self._relay, args=(board, host, True, stop), daemon=True),
            threading.Thread(target=self._relay, args=(host, board, False, stop), daemon=True),
        ]
        for t in self._relays:
            t.start()
        return self.port

    def _relay(self, src: int, dst: int, from_board: bool, stop: threading.Event) -> None:
        """One direction of the link; with a baud rate, no faster than a UART sends."""
        poller = select.poll()
        poller.register(src, select.POLLIN)
        free_at = 0.0
        chunk = 4096 if self.baud is None else max(1, self.baud // 1000)  # about 10 ms of line time
        while not stop.is_set():
            if not poller.poll(50):
                continue
            try:
                data = os.read(src, chunk)
            except BlockingIOError:
                continue
            except OSError as e:  # EIO: the board is gone (its pty closed)
                if e.errno == errno.EIO and from_board:
                    return
                raise
            if self.baud:
                free_at = max(free_at, time.monotonic()) + len(data) * 10 / self.baud
                time.sleep(max(0.0, free_at - time.monotonic()))
            if from_board:
                self.console += data
            # Nobody reading for a while (the host's port closed, a board stuck): the rest is lost, as on
            # a UART, and the relay can always stop.
            _write_all(dst, data, timeout=1.0 if from_board else 5.0)

    def kill(self) -> None:
        """A power cut: the board stops at once, whatever it was writing."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stop.set()
        for t in self._relays:
            t.join()  # every wait in a relay is bounded (poll 50 ms, a stalled write 5 s)
        self._relays = []
        if self._board_master >= 0:
            os.close(self._board_master)
            self._board_master = -1

    def stop(self) -> None:
        self.kill()
        for fd in (self._host_master, self._host_slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> UnixBoard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
