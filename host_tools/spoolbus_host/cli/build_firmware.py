"""`spoolbus build-firmware --board NAME`: build a board's firmware with spoolbus frozen in.

Cached by content (see firmware.py): a second run with unchanged sources prints the cached path at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from spoolbus_host.boards import firmware, profiles


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-firmware", help="build MicroPython firmware with spoolbus frozen in")
    p.add_argument("--board", required=True, help="board profile name (boards/NAME.toml) or a .toml path")
    p.add_argument("--variant", default="", help="another frozen manifest: firmware/VARIANT/manifest.py "
                   "(deployable: the runtime frozen in, the REPL left free for `spoolbus deploy`)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


class _Bar:
    """One status line: a bar when the build's length is known from the last build, else a spinner."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = 0.0

    def __call__(self, fraction: float | None, step: str) -> None:
        now = time.monotonic()
        if not self._tty:
            if fraction == 1.0 or now - self._last > 5:
                self._last = now
                pct = "" if fraction is None else f"{fraction * 100:3.0f}% "
                print(f"  {pct}{step}",
                      file=self._stream, flush=True)
            return
        if now - self._last < 0.05 and fraction != 1.0:
            return
        self._last = now
        if fraction is None:
            bar = "[{}]".format("-\\|/"[int(now * 8) % 4].center(30))
        else:
            filled = int(30 * fraction)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:3.0f}%"
        self._stream.write(f"\r\033[K{bar} {step[:60]}")
        if fraction == 1.0:
            self._stream.write("\n")
        self._stream.flush()


def run(args: argparse.Namespace) -> int:
    try:
        profile = profiles.load(args.board)
    except profiles.BoardProfileError as e:
        print(f"spoolbus build-firmware: {e}", file=sys.stderr)
        return 2
    started = time.monotonic()
    show = None if args.json else _Bar(sys.stderr)
    try:
        path, cached = firmware.ensure_built(profile, show, variant=args.variant)
    except firmware.FirmwareBuildError as e:
        print(f"spoolbus build-firmware: {e}", file=sys.stderr)
        return 1
    seconds = round(time.monotonic() - started, 1)
    if args.json:
        result = {"board": profile.name, "variant": args.variant, "firmware": str(path), "cached": cached,
                  "seconds": seconds}
        print(json.dumps(result))
    else:
        print(f"{profile.name}: {path} ({'cached' if cached else 'built'}, {seconds:.1f} s)")
    return 0
