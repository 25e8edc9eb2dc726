"""`spoolbus monitor [FILTER]`: live, decoded view of the spoolbus traffic on the MQTT broker.

Reads only (subscribes, never publishes). A payload that is not a valid envelope is shown as such,
with the decoder's reason: the monitor is how one finds a misbehaving node.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus import errors, wire
from spoolbus.transport.mqtt import split_topic

from spoolbus_host.cli import mqtt_options, options

CONNACK_S = 5.0  # how long a broker may take to accept the connection, as for `spoolbus call`


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


def _filter(text: str) -> str:
    levels = text.split("/")
    if len(levels) != 2 or not all(level == "+" or (level and not set(level) & set("+#"))
                                   for level in levels):
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
    host, port = mqtt_options.broker_address(args.broker)  # checked by argparse
    got: queue.Queue = queue.Queue()
    answered = threading.Event()  # CONNACK came (accepted or refused), or the connection closed
    refused: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
            client.disconnect()
        else:  # at every (re)connect: the session is clean
            client.subscribe(f"{args.prefix}/{args.filter}/#", 0)
        answered.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    if args.user:
        c.username_pw_set(args.user, args.password)
    if args.ca:
        c.tls_set(ca_certs=args.ca)
    c.on_connect = on_connect
    c.on_disconnect = lambda *a: answered.set()
    c.on_message = lambda client, userdata, msg: got.put((msg.topic, msg.payload))
    c.on_subscribe = lambda *a: print("watching", file=sys.stderr, flush=True)
    try:
        c.connect(host, port)
    except OSError as e:
        print(f"spoolbus monitor: cannot connect to MQTT broker {host}:{port}: {e}; "
              f"{mqtt_options.CHECK_BROKER}", file=sys.stderr)
        return 3
    c.loop_start()
    if not answered.wait(CONNACK_S) or not c.is_connected():
        c.loop_stop()
        if refused:
            why = f"refused the connection ({refused[0]}); check --user and --password"
        elif answered.is_set():
            why = "closed the connection before accepting it; check --ca (TLS) and the port"
        else:
            why = f"did not accept the connection in {CONNACK_S:g} s; check that --broker is an MQTT broker"
        print(f"spoolbus monitor: MQTT broker {host}:{port} {why}", file=sys.stderr)
        return 3
    deadline = time.monotonic() + args.seconds if args.seconds else None
    seen = 0
    try:
        while (not args.count or seen < args.count) and (deadline is None or time.monotonic() < deadline):
            try:
                topic, payload = got.get(timeout=0.2)
            except queue.Empty:
                continue
            d = describe(args.prefix, topic, payload)
            print(json.dumps(d) if args.json else _line(d), flush=True)
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        c.loop_stop()
        c.disconnect()
    return 0
