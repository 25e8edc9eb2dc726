"""`spoolbus demo [--seconds S] [--json]`: the whole system in one command (see demo/run.py)."""

from __future__ import annotations

import argparse

from spoolbus_host.cli import options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demo of the whole system (broker, bridge, QEMU and unix boards)")
    p.add_argument("--seconds", type=options.seconds, default=30.0,
                   help="seconds of traffic after start-up (default 30)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as JSON on stdout (progress on stderr)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from spoolbus_host.demo import run  # paho, the fleet and its boards: only when the demo runs

    return run.run(args.seconds, args.json)
