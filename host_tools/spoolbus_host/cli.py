"""The `spoolbus` command.

One entry point; each subcommand lives in its own module that offers `add_parser(subparsers)`,
sets `run=` on its parser, and returns an exit status. Errors name the problem and the fix.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import spoolbus

# Modules of spoolbus_host that contribute a subcommand, in the order `--help` lists them.
COMMAND_MODULES = ("demo", "firmware_cmd", "deploy_cmd", "flash_cmd", "spool_cmd", "call_cmd", "monitor_cmd",
                   "bridge_cmd", "registry", "boards_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spoolbus",
        description="Versioned CBOR RPC for MicroPython boards and hosts.",
    )
    parser.add_argument("--version", action="version", version=f"spoolbus {spoolbus.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module("spoolbus_host." + name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
