"""A progress bar for long host work (deploy, flash) on stderr, drawn only when stderr is a terminal.

Never draws into a pipe or a log, so `--json` output and test logs stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts files and bytes; redraws at most 20 times a second."""

    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.files = self.files_done = self.bytes = self.bytes_done = 0
        self.current = ""
        self._drawn = 0.0

    def start(self, files: int, nbytes: int) -> None:
        self.files, self.bytes = files, nbytes
        self._draw(force=True)

    def advance_bytes(self, n: int) -> None:
        self.bytes_done += n
        self._draw()

    def advance_file(self, name: str) -> None:
        self.files_done += 1
        self.current = name
        self._draw()

    def finish(self) -> None:
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn < 0.05):
            return
        self._drawn = now
        if self.bytes:
            frac = self.bytes_done / self.bytes
        else:
            frac = self.files_done / self.files if self.files else 1.0
        width = 30
        fill = int(min(frac, 1.0) * width)
        self.stream.write(
            f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {self.files_done}/{self.files} files "
            f"{self.bytes_done / 1024:.1f}/{self.bytes / 1024:.1f} KB {self.current[-30:]:<30}"
        )
        self.stream.flush()
