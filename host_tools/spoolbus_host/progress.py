"""Progress of long host work on stderr: deploys (files and bytes) and firmware builds (steps).

A bar is drawn only when stderr is a terminal, so `--json` output and test logs stay clean; a build,
long enough that a log should show it is alive, writes one line every 5 s there instead.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 30
_QUIET_LINE_S = 5.0  # between the step lines written where stderr is not a terminal


class Progress:
    """Counts files and bytes (`start`, `advance_bytes`, `advance_file`, `finish`), or shows the steps
    of a build (`step`, a `firmware.StepReport`); redraws at most 20 times a second."""

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

    def step(self, fraction: float | None, text: str) -> None:
        """One step of a build: `fraction` done (None: unknown, a spinner), 1.0 ends the bar."""
        now = time.monotonic()
        last = fraction == 1.0
        if not self.enabled:
            if last or now - self._drawn > _QUIET_LINE_S:
                self._drawn = now
                pct = "" if fraction is None else f"{fraction * 100:3.0f}% "
                print(f"  {pct}{text}", file=self.stream, flush=True)
            return
        if now - self._drawn < 0.05 and not last:
            return
        self._drawn = now
        if fraction is None:
            bar = "[{}]".format("-\\|/"[int(now * 8) % 4].center(_WIDTH))
        else:
            bar = f"{_bar(fraction)} {fraction * 100:3.0f}%"
        self.stream.write(f"\r\033[K{self.label} {bar} {text[:60]}" + ("\n" if last else ""))
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
        self.stream.write(
            f"\r{self.label} {_bar(frac)} {self.files_done}/{self.files} files "
            f"{self.bytes_done / 1024:.1f}/{self.bytes / 1024:.1f} KB {self.current[-30:]:<30}"
        )
        self.stream.flush()


def _bar(fraction: float) -> str:
    fill = int(min(fraction, 1.0) * _WIDTH)
    return f"[{'#' * fill}{'.' * (_WIDTH - fill)}]"
