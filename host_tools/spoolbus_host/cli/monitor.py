"""`spoolbus monitor [FILTER]`: live, decoded view of the spoolbus traffic on the MQTT broker.

Reads only: it publishes nothing but a who-query, so that it shows who is online on a broker that keeps
no retained statuses. Statuses are shown when they change (heartbeats are not news), and as "stale"
when a node's heartbeats stop (docs/protocol.md §7, "Presence"). A payload that is not a valid
envelope is shown as such, with the decoder's reason: the monitor is how one finds a misbehaving node.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time

from spoolbus import errors, wire
from spoolbus.names import check_name
from spoolbus.transport.mqtt import split_topic, status_topic
from spoolbus.transport.mqtt_client import MQTTConnectionError, MQTTRefused

from spoolbus_host.cli import mqtt_options, options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="show the live spoolbus traffic on the MQTT broker, decoded")
    p.add_argument("filter", nargs="?", default="+/+", type=options.argtype(_filter),
                   help="nodes to watch as bridge/device, MQTT wildcards allowed (default +/+: all)")
    p.add_argument("--count", type=options.positive_int("10"), help="stop after this many messages")
    p.add_argument("--seconds", type=options.seconds, help="stop after this many seconds")
    mqtt_options.add_broker_options(p)
    p.set_defaults(run=run)


_KINDS = {wire.CALL: "call", wire.CAST: "cast", wire.REPLY: "reply", wire.ERROR: "error",
          wire.NOTIFY: "notify", wire.HELLO: "hello"}


def _is_name(level: str) -> bool:
    try:
        return bool(check_name(level))
    except ValueError:
        return False


def _filter(text: str) -> str:
    levels = text.split("/")
    if len(levels) != 2 or not all(level == "+" or _is_name(level) for level in levels):
        raise ValueError(f"{text!r} is not a node filter; give bridge/device where either may be +, "
                         "e.g. gw1/+ or +/+")
    return text


def describe(prefix: str, topic: str, payload: bytes) -> dict:
    """One message as the monitor shows it: node, what (inbox/status/events), and the decoded envelope."""
    node, what = split_topic(prefix, topic) or ("", "")
    out: dict = {"topic": topic, "node": node, "what": what}
    if what == "status":
        out["status"] = payload.decode(errors="replace")
        return out
    try:
        env = wire.decode(payload)
    except errors.DecodeError as e:
        out["error"] = f"{type(e).__name__}: {e}"
        out["bytes"] = len(payload)
        return out
    out["envelope"] = {"kind": _KINDS.get(env.kind, env.kind),
                       "id": env.id, "src": env.src, "dst": env.dst, "method": env.method,
                       "version": env.version, "body": mqtt_options.jsonable(env.body),
                       "reply_to": env.reply_to, "deadline": env.deadline, "signed": env.sig is not None}
    return out


def _line(d: dict) -> str:
    stamp = time.strftime("%H:%M:%S")
    if "status" in d:
        return f"{stamp} {d['node']} status {d['status']}"
    if "error" in d:
        return f"{stamp} {d['topic']} BAD ({d['bytes']} bytes): {d['error']}"
    e = d["envelope"]
    extra = f" reply_to={e['reply_to']}" if e["reply_to"] is not None else ""
    return (f"{stamp} {e['kind']} #{e['id']} {e['src']} -> {e['dst']} {e['method'] or ''}"
            f"{' v' + e['version'] if e['version'] else ''}{extra} {json.dumps(e['body'])}")


def run(args: argparse.Namespace) -> int:
    bridge = args.filter.split("/")[0]
    try:
        t = mqtt_options.transport(args, "host", f"monitor-{os.getpid()}", watch=bridge,
                                   tap=f"{args.prefix}/{args.filter}/#")
    except (MQTTConnectionError, MQTTRefused) as e:
        return mqtt_options.unreachable("monitor", e)
    print("watching", file=sys.stderr, flush=True)
    shown: dict[str, str] = {}  # node -> the status last printed for it
    deadline = time.monotonic() + args.seconds if args.seconds else None
    seen = 0

    def show(d: dict) -> None:
        nonlocal seen
        print(json.dumps(d) if args.json else _line(d), flush=True)
        seen += 1

    try:
        while (not args.count or seen < args.count) and (deadline is None or time.monotonic() < deadline):
            for node, up in t.statuses().items():  # a node whose heartbeats stopped, said by nobody
                if not up and shown.get(node) == "online" and (not args.count or seen < args.count):
                    shown[node] = "stale"
                    show({"topic": status_topic(args.prefix, *node.split("/")), "node": node,
                          "what": "status", "status": "stale"})
            try:
                topic, payload = t.tapped.get(timeout=0.2)
            except queue.Empty:
                continue
            d = describe(args.prefix, topic, payload)
            if "status" in d:
                if shown.get(d["node"]) == d["status"]:
                    continue  # a heartbeat, or an answer to a who-query: no news
                shown[d["node"]] = d["status"]
            show(d)
    except KeyboardInterrupt:
        pass
    finally:
        t.close()
    return 0
