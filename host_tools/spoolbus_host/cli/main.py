"""The `spoolbus` command.

One entry point; each subcommand lives in its own module of this folder that offers `add_parser(subparsers)`,
sets `run=` on its parser, and returns an exit status. Errors name the problem and the fix.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import spoolbus

# Each subcommand and its module in this folder, in the order `--help` lists them.
COMMANDS = {"demo": "demo", "build-firmware": "build_firmware", "deploy": "deploy", "rollout": "rollout",
            "fetch": "fetch", "package": "package",
            "flash": "flash", "spool": "spool", "call": "call", "cast": "call", "monitor": "monitor",
            "bridge": "bridge", "devices": "devices", "boards": "boards"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or only of `command`'s module: importing all of them (paho,
    esptool, ...) costs a quarter of a second that `spoolbus deploy` should not wait for."""
    parser = argparse.ArgumentParser(
        prog="spoolbus",
        description="Versioned CBOR RPC for MicroPython boards and hosts.",
    )
    parser.add_argument("--version", action="version", version=f"spoolbus {spoolbus.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else COMMANDS.values()
    for name in dict.fromkeys(modules):
        importlib.import_module("spoolbus_host.cli." + name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"spoolbus {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`spoolbus monitor | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:
        if os.environ.get("SPOOLBUS_DEBUG") == "1":
            raise
        print(f"spoolbus {args.command}: unexpected {type(e).__name__}: {e}; this is a bug, please report "
              "it (run with SPOOLBUS_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
