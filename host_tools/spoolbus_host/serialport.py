"""Host side of a serial link: a pyserial port (any URL pyserial opens) for SerialTransport.

A port that fails (board unplugged, QEMU gone) is closed and reopened by itself, at most every
`reopen_s`; meanwhile reads return nothing and writes are dropped, and the link reports LinkDown.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import serial
from spoolbus import frame
from spoolbus.transport.serial import SerialTransport


class PySerialPort:
    """read_into/write over serial.serial_for_url(url)."""

    def __init__(self, url: str, baudrate: int = 115200, reopen_s: float = 0.5) -> None:
        self.url = url
        self.baudrate = baudrate
        self.reopen_s = reopen_s
        self.failures = 0  # times the port failed and was closed
        self.last_error: Exception | None = None
        self.tap: Callable[[bytes], None] | None = None  # sees every byte read (console logs)
        self._ser: serial.SerialBase | None = None
        self._next_open = 0.0
        self._open()
        if self._ser is None:
            raise serial.SerialException(f"cannot open serial port {url!r}: {self.last_error}")

    def _open(self) -> None:
        try:
            self._ser = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0)
        except (serial.SerialException, OSError, ValueError) as e:
            self.last_error = e
            self._ser = None
            self._next_open = time.monotonic() + self.reopen_s

    def _fail(self, e: Exception) -> None:
        self.failures += 1
        self.last_error = e
        if self._ser is not None:
            try:
                self._ser.close()
            except (serial.SerialException, OSError):
                pass
        self._ser = None
        self._next_open = time.monotonic() + self.reopen_s

    def read_into(self, buf: bytearray, timeout_ms: int) -> int:
        if self._ser is None:
            if time.monotonic() < self._next_open:
                time.sleep(min(timeout_ms / 1000, max(0.0, self._next_open - time.monotonic())))
                return 0
            self._open()
            if self._ser is None:
                return 0
        ser = self._ser
        try:
            waiting = ser.in_waiting
            if not waiting:
                ser.timeout = timeout_ms / 1000
                data = ser.read(1)
                if not data:
                    return 0
                buf[0] = data[0]
                got = 1
                if self.tap:
                    self.tap(data)
                waiting = ser.in_waiting
            else:
                got = 0
            if waiting:
                ser.timeout = 0
                data = ser.read(min(waiting, len(buf) - got))
                buf[got : got + len(data)] = data
                got += len(data)
                if self.tap:
                    self.tap(data)
            return got
        except (serial.SerialException, OSError) as e:
            self._fail(e)
            return 0

    def write(self, data: bytes) -> None:
        if self._ser is None:
            return
        try:
            self._ser.write(data)
        except (serial.SerialException, OSError) as e:
            self._fail(e)

    def close(self) -> None:
        if self._ser is not None:
            self._ser.close()
            self._ser = None


def connect(url: str, name: str = "host", baudrate: int = 115200, max_frame: int = frame.MAX_FRAME,
            keepalive_ms: int = 500, dead_ms: int = 2000) -> SerialTransport:
    """A SerialTransport on the pyserial port `url`, hello already sent."""
    link = SerialTransport(PySerialPort(url, baudrate), name=name, max_frame=max_frame,
                           keepalive_ms=keepalive_ms, dead_ms=dead_ms)
    link.open()
    return link
