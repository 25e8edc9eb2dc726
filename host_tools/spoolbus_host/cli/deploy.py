"""`spoolbus deploy APP`: put an application and the runtime on a board (see deploy.py, linux_service.py).

MicroPython boards over their serial port (--port); a Raspberry Pi (Linux) as a systemd service, into a
local root directory (--root) or over ssh (--ssh).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from pathlib import Path

from spoolbus_host.cli import options
from spoolbus_host.deploy.micropython import DeployError, deploy
from spoolbus_host.progress import Progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="compile and copy an application and the runtime to a board, switching atomically",
        description="Compile APP (a directory with main.py) and the spoolbus runtime, copy only what "
        "changed, verify hashes, switch atomically, restart the application.",
    )
    p.add_argument("app", type=Path, help="application directory (must contain main.py)")
    p.add_argument("--board", help="board profile from boards/ (default: a MicroPython board on --port)")
    p.add_argument("--port", help="serial port of a MicroPython board, e.g. /dev/ttyUSB0 or /dev/pts/3")
    p.add_argument("--baud", type=options.positive_int("115200"),
                   help="serial baud rate (default: the profile's, else 115200)")
    p.add_argument("--board-dir", help="directory on the board that holds main.py and app/ "
                   "(default: the profile's deploy.root, else the working directory)")
    p.add_argument("--mpy-cross", help="mpy-cross to compile with (default: the project's own build)")
    p.add_argument("--no-reset", action="store_true", help="do not soft-reset the board afterwards")
    p.add_argument("--root", type=Path, help="raspberry-pi: install into this directory as if it were /")
    p.add_argument("--ssh", help="raspberry-pi: install on this host over ssh (user@host)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)



_fail = functools.partial(options.fail, "deploy")


def run(args: argparse.Namespace) -> int:
    profile = {}
    if args.board:  # imported only here: reading a profile (tomllib) costs a deploy without one 7 ms
        from spoolbus_host.boards import methods

        try:
            profile = methods.read(args.board)
        except methods.ProfileError as e:
            return _fail(str(e))
    method = profile.get("deploy", {}).get("method", "micropython")
    if args.root is not None and args.root.exists() and not args.root.is_dir():
        return _fail(f"--root {args.root} is not a directory; give the directory that stands for the "
                     "board's / (created if new)")
    mpy_cross = args.mpy_cross
    if mpy_cross is not None and not (os.path.isfile(mpy_cross) and os.access(mpy_cross, os.X_OK)):
        return _fail(f"--mpy-cross {args.mpy_cross} is not an executable file; give the path of mpy-cross "
                     "(or leave it out for the project's own build)")
    try:
        if method == "linux-service":
            from spoolbus_host.deploy import linux_service

            if bool(args.root) == bool(args.ssh):
                return _fail("--board raspberry-pi needs exactly one of --root DIR or --ssh HOST")
            result = linux_service.install(args.app, profile, root=args.root, ssh=args.ssh)
            summary = result.summary()
            data = result.__dict__
        else:
            if not args.port:
                return _fail("--port is required: the board's serial port (e.g. /dev/ttyUSB0)")
            root = args.board_dir if args.board_dir is not None else profile.get("deploy", {}).get("root", "")
            baud = args.baud or profile.get("serial", {}).get("baudrate", 115200)
            report = deploy(
                args.port, args.app, mpy_cross=args.mpy_cross, root=root, reset=not args.no_reset,
                progress=None if args.json else Progress("deploy"), baudrate=baud,
            )
            summary = report.summary()
            data = report.__dict__
    except DeployError as e:
        return _fail(str(e))
    print(json.dumps(data, default=str) if args.json else summary)
    return 0
