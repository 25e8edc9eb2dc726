"""The `spoolbus` command.

One entry point with subcommands; each says what went wrong and what to do, and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys

import spoolbus


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spoolbus",
        description="Versioned CBOR RPC for MicroPython boards and hosts.",
    )
    parser.add_argument("--version", action="version", version=f"spoolbus {spoolbus.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the demo of the whole system")
    demo.set_defaults(run=_run_demo)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    from spoolbus_host import demo

    return demo.run()


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
