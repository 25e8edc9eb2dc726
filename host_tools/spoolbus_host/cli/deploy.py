"""`spoolbus deploy APP`: put an application and the runtime on a board (see deploy/micropython.py,
deploy/ota.py, deploy/linux_service.py).

MicroPython boards over their serial port (--port) or over the bus, through the MQTT broker to the board's
update service (--to NODE); a Raspberry Pi (Linux) as a systemd service, into a local root directory
(--root) or over ssh (--ssh). `--rollback` boots a MicroPython board's previous tree again.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from pathlib import Path

from spoolbus.transport.mqtt_client import MQTTConnectionError

from spoolbus_host.cli import mqtt_options, options
from spoolbus_host.deploy.micropython import DeployError, deploy, rollback
from spoolbus_host.progress import Progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="compile and copy an application and the runtime to a board, switching atomically",
        description="Compile APP (a directory with main.py) and the spoolbus runtime, copy only what "
        "changed, verify hashes, switch atomically, restart the application.",
    )
    p.add_argument("app", type=Path, nargs="?", help="application directory (must contain main.py)")
    p.add_argument("--board", help="board profile from boards/ (default: a MicroPython board on --port)")
    p.add_argument("--port", help="serial port of a MicroPython board, e.g. /dev/ttyUSB0 or /dev/pts/3")
    p.add_argument("--to", type=options.node, metavar="NODE",
                   help="deploy over the bus: the board's node on the broker, e.g. gw1/sensor-1 (its "
                   "application serves spoolbus.update)")
    p.add_argument("--rollback", action="store_true",
                   help="boot the board's previous tree again (with --port or --to; no APP)")
    p.add_argument("--window", type=options.positive_int("4"),
                   help="--to: file chunks in flight (default 4)")
    p.add_argument("--timeout", type=options.seconds,
                   help="--to: seconds to wait for each reply of the board (default 5)")
    p.add_argument("--baud", type=options.positive_int("115200"),
                   help="serial baud rate (default: the profile's, else 115200)")
    p.add_argument("--board-dir", help="directory on the board that holds main.py and app/ "
                   "(default: the profile's deploy.root, else the working directory)")
    p.add_argument("--mpy-cross", help="mpy-cross to compile with (default: the project's own build)")
    p.add_argument("--no-reset", action="store_true", help="do not soft-reset the board afterwards")
    p.add_argument("--root", type=Path, help="raspberry-pi: install into this directory as if it were /")
    p.add_argument("--ssh", help="raspberry-pi: install on this host over ssh (user@host)")
    mqtt_options.add_key_option(p)
    mqtt_options.add_broker_options(p)  # and --json
    p.set_defaults(run=run)

# Options of one way only: (option, its attribute, the way it belongs to).
_SERIAL_ONLY = (("--baud", "baud"), ("--board-dir", "board_dir"), ("--no-reset", "no_reset"),
                ("--root", "root"), ("--ssh", "ssh"))
_BUS_ONLY = (("--window", "window"), ("--timeout", "timeout"), ("--key-file", "key_file"))


_fail = functools.partial(options.fail, "deploy")


def _wrong_way(args: argparse.Namespace) -> str | None:
    """Why the options do not make one deploy (one of --port, --to, a Linux board's --root/--ssh), or None."""
    if args.rollback and args.app is not None:
        return "--rollback takes no APP: it boots the tree the board ran before the last deploy"
    if not args.rollback and args.app is None:
        return "the following arguments are required: app (or --rollback)"
    if args.to and args.port:
        return "give one of --port (the serial port) or --to NODE (over the bus), not both"
    if args.to:
        for opt, attr in _SERIAL_ONLY:
            if getattr(args, attr) not in (None, False):
                return f"{opt} is for a deploy over a serial port or to a Linux board, not --to {args.to}"
    else:
        for opt, attr in _BUS_ONLY:
            if getattr(args, attr) is not None:
                return f"{opt} is for a deploy over the bus: add --to NODE (or leave {opt} out)"
    return None


def run(args: argparse.Namespace) -> int:
    wrong = _wrong_way(args)
    if wrong:
        return _fail(wrong)
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
    if method == "linux-service" and (args.to or args.rollback):
        return _fail(f"--board {args.board} installs a Linux service (--root or --ssh): "
                     f"{'--to' if args.to else '--rollback'} is for MicroPython boards")
    if args.to:
        return _over_the_bus(args, mpy_cross)
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
                return _fail("--port is required: the board's serial port (e.g. /dev/ttyUSB0), or --to NODE "
                             "to deploy over the bus")
            root = args.board_dir if args.board_dir is not None else profile.get("deploy", {}).get("root", "")
            baud = args.baud or profile.get("serial", {}).get("baudrate", 115200)
            if args.rollback:
                report = rollback(args.port, root, reset=not args.no_reset, baudrate=baud)
            else:
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


def _over_the_bus(args: argparse.Namespace, mpy_cross: str | None) -> int:
    """--to NODE: the board's update service through the broker (deploy/ota.py)."""
    from spoolbus_host.deploy import ota

    window = args.window or 4
    timeout = args.timeout or 5.0
    try:
        n = mqtt_options.bus_node(args, args.to, pending=window + 1)
    except ValueError as e:
        return _fail(str(e))
    except MQTTConnectionError as e:
        return mqtt_options.unreachable("deploy", e)
    try:
        if args.rollback:
            report = ota.rollback_over_bus(n, args.to, timeout=timeout)
        else:
            report = ota.deploy_over_bus(n, args.to, args.app, mpy_cross=mpy_cross, window=window,
                                         timeout=timeout, progress=None if args.json else Progress("deploy"))
    except DeployError as e:
        return _fail(str(e))
    except MQTTConnectionError as e:
        return mqtt_options.unreachable("deploy", e)
    finally:
        n.close()
    print(json.dumps(report.__dict__, default=str) if args.json else report.summary())
    return 0
