"""`spoolbus devices`: the devices a bridge has seen (`--db FILE`, its SQLite registry), or who is
online on the broker now (`--broker`, from the statuses every bridge and node publishes).

Reads only: the registry is opened read-only, so listing it never changes a bridge's file; on the
broker the command leaves no status, only asks who is online (docs/protocol.md §7, "Presence").
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time

from spoolbus.transport.mqtt_client import MQTTConnectionError, MQTTRefused

from spoolbus_host.bridge.registry import Registry
from spoolbus_host.cli import mqtt_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list the devices a bridge has seen (--db, its registry) or who "
                       "is online on the broker (without --db)")
    p.add_argument("--db", help="the bridge's registry file (spoolbus bridge --registry); without it, ask "
                   "the broker")
    mqtt_options.add_broker_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return from_registry(args) if args.db else from_broker(args)


def from_broker(args: argparse.Namespace) -> int:
    """Every bridge's devices, online or not, as the broker's statuses say after a who-query."""
    from spoolbus_host.rollout import fleet

    try:
        t = mqtt_options.transport(args, "host", f"devices-{os.getpid()}", watch="+")
    except (MQTTConnectionError, MQTTRefused) as e:
        return mqtt_options.unreachable("devices", e)
    try:
        up, down = fleet.online(t)
    finally:
        t.close()
    rows = [{"node": n, "online": True} for n in up] + [{"node": n, "online": False} for n in down]
    rows.sort(key=lambda r: r["node"])
    if args.json:
        print(json.dumps(rows))
    for r in rows if not args.json else ():
        print(f"{r['node']:<24} {'online' if r['online'] else 'offline'}")
    return 0


def from_registry(args: argparse.Namespace) -> int:
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
