"""`spoolbus build-firmware --board NAME`: build a board's firmware with spoolbus frozen in.

Cached by content (see firmware.py): a second run with unchanged sources prints the cached path at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from spoolbus_host.boards import firmware, profiles
from spoolbus_host.progress import Progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-firmware", help="build MicroPython firmware with spoolbus frozen in")
    p.add_argument("--board", required=True, help="board profile name (boards/NAME.toml) or a .toml path")
    p.add_argument("--variant", default="", help="another frozen manifest: firmware/VARIANT/manifest.py "
                   "(deployable: the runtime frozen in, the REPL left free for `spoolbus deploy`)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        profile = profiles.load(args.board)
    except profiles.BoardProfileError as e:
        print(f"spoolbus build-firmware: {e}", file=sys.stderr)
        return 2
    started = time.monotonic()
    show = None if args.json else Progress("build-firmware").step
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
