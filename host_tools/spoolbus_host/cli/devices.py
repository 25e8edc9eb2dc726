"""`spoolbus devices --db FILE`: the devices a bridge has seen, from its SQLite registry.

Reads only: the registry is opened read-only, so listing it never changes a bridge's file.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time

from spoolbus_host.bridge.registry import Registry


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list the devices a bridge has seen (its SQLite registry)")
    p.add_argument("--db", required=True, help="the bridge's registry file (spoolbus bridge --registry)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    fix = "give the file a bridge keeps (spoolbus bridge --registry FILE)"
    problem = None
    if os.path.isdir(args.db):
        problem = "is a directory"
    elif not os.path.exists(args.db):
        problem = "no such file"
    else:
        try:
            reg = Registry(args.db, read_only=True)
            rows = reg.devices()
            reg.close()
        except sqlite3.Error as e:
            problem = f"not a device registry ({e})"
    if problem:
        print(f"spoolbus devices: cannot open registry {args.db}: {problem}; {fix}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows))
        return 0
    for d in rows:
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["last_seen"]))
        services = " ".join(f"{k}@{v}" for k, v in sorted(d["services"].items())) or "-"
        print(f"{d['node']:<24} {'online ' if d['online'] else 'offline'} {d['link']:<20} "
              f"{d['firmware'] or '-':<10} {services}  last seen {seen}")
    return 0
