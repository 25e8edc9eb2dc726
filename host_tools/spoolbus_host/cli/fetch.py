"""`spoolbus fetch NODE PATH`: a file from a board's update service through the MQTT broker (a log, the
report of a failed trial in app/failed), printed or written to --out FILE.

Exit 0 with the file, 2 for bad arguments or a refusal (no such file, a path outside the board's root, no
reply), 3 when the broker cannot be reached.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

from spoolbus.transport.mqtt_client import MQTTConnectionError

from spoolbus_host.cli import mqtt_options, options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch", help="read a file from a board over the bus (its update service)",
                       description="Read PATH (relative to the board's deploy root, e.g. app/failed) from "
                       "NODE's update service through the broker; print it, or write it to --out FILE.")
    p.add_argument("node", type=options.node, help="the board's node, as bridge/device")
    p.add_argument("path", type=options.argtype(_board_path),
                   help="the file under the board's deploy root, e.g. app/failed")
    p.add_argument("--out", type=options.argtype(_out_file), metavar="FILE",
                   help="write the file here instead of printing it")
    p.add_argument("--window", type=options.positive_int("4"), default=4, help="reads in flight (default 4)")
    p.add_argument("--timeout", type=options.seconds, default=5.0,
                   help="seconds to wait for each reply (default 5)")
    mqtt_options.add_key_option(p)
    mqtt_options.add_broker_options(p)
    p.set_defaults(run=run)


def _out_file(text: str) -> str:
    if os.path.isdir(text):
        raise ValueError(f"{text} is a directory; give the file to write")
    parent = os.path.dirname(text) or "."
    if not os.path.isdir(parent):
        raise ValueError(f"directory {parent} does not exist; create it (mkdir -p {parent}) or give another")
    return text


_fail = functools.partial(options.fail, "fetch")


def _board_path(text: str) -> str:
    """A path under the board's deploy root, as its update service takes one (it refuses others: bad_path)."""
    parts = text.split("/")
    if not text or text.startswith("/") or ".." in parts or "\\" in text or "" in parts:
        raise ValueError(f"{text!r} is not a path under the board's deploy root; give e.g. app/failed")
    return text


def run(args: argparse.Namespace) -> int:
    from spoolbus_host.deploy import ota

    try:
        n = mqtt_options.bus_node(args, args.node, pending=args.window + 1)
    except ValueError as e:
        return _fail(str(e))
    except MQTTConnectionError as e:
        return mqtt_options.unreachable("fetch", e)
    try:
        data = ota.fetch(n, args.node, args.path, window=args.window, timeout=args.timeout)
    except ota.DeployError as e:
        return _fail(str(e))
    except MQTTConnectionError as e:
        return mqtt_options.unreachable("fetch", e)
    finally:
        n.close()
    if args.out:
        tmp = f"{args.out}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, args.out)
    if args.json:
        out = {"node": args.node, "path": args.path, "size": len(data)}
        print(json.dumps(dict(out, out=args.out) if args.out else dict(out, data=data.hex())))
    elif not args.out:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0
