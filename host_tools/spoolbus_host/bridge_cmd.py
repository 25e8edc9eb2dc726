"""`spoolbus bridge NAME --serial DEVICE=PORT ...`: run a bridge until Ctrl-C or SIGTERM.

Each --serial attaches the device on a serial port (any pyserial URL) as node NAME/DEVICE. Log lines go
to stderr; at exit the counters are printed (as JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

import serial
from spoolbus import errors

from spoolbus_host import mqtt_cli
from spoolbus_host.bridge import Bridge
from spoolbus_host.registry import Registry
from spoolbus_host.serialport import connect


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bridge", help="join the devices on this host's serial ports to the MQTT broker")
    p.add_argument("name", help="the bridge's name: its devices become NAME/DEVICE on the broker")
    p.add_argument("--serial", action="append", default=[], metavar="DEVICE=PORT",
                   help="a device on a serial port (path or pyserial URL); repeat for more")
    p.add_argument("--outbox", required=True,
                   help="spool directory for messages held while the uplink is down")
    p.add_argument("--baudrate", type=int, default=115200)
    p.add_argument("--registry", help="SQLite file of the devices seen (read it with `spoolbus devices`)")
    mqtt_cli.add_broker_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        host, port = mqtt_cli.broker_address(args.broker)
        devices = [spec.partition("=")[::2] for spec in args.serial]
        bad = [spec for spec, (d, p) in zip(args.serial, devices, strict=True) if not d or not p]
        if bad or not devices:
            raise ValueError(f"expected --serial DEVICE=PORT at least once, got {bad or 'none'}")
        bridge = Bridge(args.name, host, port, args.outbox, prefix=args.prefix, user=args.user,
                        password=args.password, tls={"ca_certs": args.ca} if args.ca else None,
                        registry=Registry(args.registry) if args.registry else None)
    except (ValueError, errors.SpoolbusError) as e:
        print(f"spoolbus bridge: {e}", file=sys.stderr)
        return 2
    try:
        for device, url in devices:
            bridge.attach(device, connect(url, name=args.name, baudrate=args.baudrate), where=url)
    except (ValueError, serial.SerialException) as e:
        print(f"spoolbus bridge: {e}", file=sys.stderr)
        bridge.close()
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    logging.info("bridge %s: %d device(s) on %s:%d", args.name, len(devices), host, port)
    bridge.run(stop)
    bridge.close()
    counters = dict(bridge.stats)
    print(json.dumps(counters) if args.json else " ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    return 0
