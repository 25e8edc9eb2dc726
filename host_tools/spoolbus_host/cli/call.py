"""`spoolbus call NODE service.method key=value ...` and `spoolbus cast ...`: RPC over the MQTT broker.

The command is a short-lived node named host/cli-<pid> (clean session); exit 0 with the reply, 1 for an
error reply, 2 for bad arguments, 3 when the broker cannot be reached, 4 on timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from spoolbus import errors, node
from spoolbus.transport.mqtt_client import MQTTConnectionError

from spoolbus_host.cli import mqtt_options, options


def add_parser(sub: argparse._SubParsersAction) -> None:
    for verb, text in (("call", "call a method on a node through the MQTT broker and print the reply"),
                       ("cast", "send a one-way call (no reply) to a node through the MQTT broker")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("node", type=options.node, help="the node, as bridge/device")
        p.add_argument("method", type=options.method, help="service.method")
        p.add_argument("args", nargs="*", metavar="key=value", type=options.key_value,
                       help="arguments; a value is parsed as JSON if it can be (3, 1.5, true, [1])")
        p.add_argument("--timeout", type=options.seconds, default=5.0,
                       help="seconds to wait for the reply (call)")
        p.add_argument("--version", type=options.api_version, default=None,
                       help="API version to send, major.minor (default: the node's default)")
        mqtt_options.add_broker_options(p)
        p.set_defaults(run=run, verb=verb)


def run(args: argparse.Namespace) -> int:
    call_args = {}
    for pair in args.args:  # each checked as key=value by argparse
        key, _, value = pair.partition("=")
        call_args[key] = mqtt_options.parse_value(value)
    try:
        t = mqtt_options.transport(args, "host", f"cli-{os.getpid()}")
    except MQTTConnectionError as e:
        return mqtt_options.unreachable(args.verb, e)
    n = node.Node(t.name, t, timeout=args.timeout)
    try:
        if args.verb == "cast":
            n.cast(args.node, args.method, call_args, version=args.version)  # close() waits for its PUBACK
            print(json.dumps({"sent": True}) if args.json else "sent")
            return 0
        reply = n.call(args.node, args.method, call_args, timeout=args.timeout, version=args.version)
    except errors.RemoteError as e:
        if args.json:
            print(json.dumps({"error": {"type": e.type, "message": e.message,
                                        "details": mqtt_options.jsonable(e.details)}}))
        else:
            print(f"error from {args.node}: {e}", file=sys.stderr)
        return 1
    except errors.Timeout:
        print(f"spoolbus call: no reply from {args.node} in {args.timeout} s (is it online? "
              f"see `spoolbus monitor {args.node}`)", file=sys.stderr)
        return 4
    except MQTTConnectionError as e:
        return mqtt_options.unreachable(args.verb, e)
    except errors.SpoolbusError as e:  # what the node refuses to send (too large, not encodable)
        print(f"spoolbus {args.verb}: {e}", file=sys.stderr)
        return 2
    finally:
        n.close()
    reply = mqtt_options.jsonable(reply)
    print(json.dumps({"reply": reply} if args.json else reply))
    return 0
