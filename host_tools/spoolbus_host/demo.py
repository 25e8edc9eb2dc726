"""`spoolbus demo`: the whole system in one command.

Grows with the project; today it shows MicroPython and CPython sharing the wire format.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demo of the whole system")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print("spoolbus demo: nothing to show yet")
    return 0
