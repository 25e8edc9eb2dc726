"""`spoolbus boards [NAME] [--json]`: the board profiles in boards/, each checked as deploy and flash read it.

Without NAME, one line a board (port, filesystem, flash and deploy method, serial speed, heap budget);
with NAME, that whole profile. A profile that does not pass the checks is shown with the reason, and
the command exits 1, so a typo in a profile is found before a deploy or a flash needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from spoolbus_host.boards import methods, profiles


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("boards", help="list the board profiles and check them")
    p.add_argument("name", nargs="?", help="show this board's whole profile")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def describe(name: str) -> dict[str, Any]:
    """The board's profile as both loaders check it; {"name", "error"} when one of them refuses it."""
    try:
        profile = profiles.load(name)
        data = methods.read(name, profiles.BOARDS)
    except (profiles.BoardProfileError, methods.ProfileError) as e:
        return {"name": name, "error": str(e)}
    return {
        "name": name,
        "description": profile.description,
        "port": profile.port,
        "filesystem": profile.filesystem,
        "flash": data["flash"],
        "deploy": data["deploy"],
        "serial": {"baudrate": profile.baudrate, "max_frame": profile.max_frame,
                   "keepalive_ms": profile.keepalive_ms, "dead_ms": profile.dead_ms},
        "heap": profile.heap,
        "simulated": profile.console is not None,  # the HIL plugin can start it on this host
        "path": str(profile.path),
    }


def run(args: argparse.Namespace) -> int:
    names = [args.name] if args.name is not None else profiles.available()
    if args.name is not None and args.name not in profiles.available():
        print(f"spoolbus boards: no board profile {args.name!r}: known boards are "
              f"{', '.join(profiles.available())}", file=sys.stderr)
        return 2
    found = [describe(n) for n in names]
    if args.json:
        print(json.dumps(found[0] if args.name is not None else found, indent=2))
    elif args.name is not None and "error" not in found[0]:
        for key, value in found[0].items():
            print(f"{key:12} {json.dumps(value) if isinstance(value, dict) else value}")
    else:
        print(f"{'board':16} {'port':6} {'filesystem':10} {'flash':8} {'deploy':14} {'baud':>7} {'heap':>9}")
        for b in found:
            if "error" in b:
                print(f"{b['name']:16} INVALID: {b['error']}")
                continue
            print(f"{b['name']:16} {b['port']:6} {b['filesystem']:10} {b['flash']['method']:8} "
                  f"{b['deploy']['method']:14} {b['serial']['baudrate']:>7} {b['heap']:>9}")
    return 1 if any("error" in b for b in found) else 0
