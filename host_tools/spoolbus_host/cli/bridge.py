"""`spoolbus bridge [NAME] [--config FILE.toml] [--serial DEVICE=PORT] [--spool DIR] ...`: run a bridge.

Each --serial attaches the device on a serial port (any pyserial URL) as node NAME/DEVICE; each --spool
a spool directory whose NAME/DEVICE inboxes are devices. The settings come from the TOML file
(bridge_config.py), flags over it. Runs until Ctrl-C or SIGTERM; log lines go to stderr; at exit the
counters are printed (as JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

import serial
from spoolbus import errors

from spoolbus_host.bridge import config as bridge_config
from spoolbus_host.bridge.config import BridgeConfig, SerialDevice
from spoolbus_host.bridge.gateway import Bridge
from spoolbus_host.bridge.registry import Registry
from spoolbus_host.cli import mqtt_options
from spoolbus_host.serialport import connect


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bridge", help="join this host's devices (serial ports, spools) to the MQTT broker")
    p.add_argument("name", nargs="?", help="the bridge's name: its devices become NAME/DEVICE on the broker")
    p.add_argument("--config", metavar="FILE.toml",
                   help="settings file (docs/operations.md); flags override it")
    p.add_argument("--serial", action="append", default=[], metavar="DEVICE=PORT",
                   help="a device on a serial port (path or pyserial URL); repeat for more")
    p.add_argument("--spool", action="append", default=[], metavar="DIR",
                   help="a spool directory of devices (SpoolTransport with gateway NAME/_bridge); repeatable")
    p.add_argument("--outbox", help="spool directory for messages held while the uplink is down")
    p.add_argument("--baudrate", type=int, help="of the serial ports (default 115200)")
    p.add_argument("--device-quota", type=int,
                   help="messages one device may have in the outbox (default: a tenth); more are dropped")
    p.add_argument("--registry", help="SQLite file of the devices seen (read it with `spoolbus devices`)")
    mqtt_options.add_broker_options(p)
    p.add_argument("--tls-cert", help="client certificate file for the broker (with --tls-key)")
    p.add_argument("--tls-key", help="private key file of --tls-cert")
    # None: not given, so the file (then the environment, then the built-in default) decides.
    p.set_defaults(run=run, broker=None, prefix=None, password=None)


def settings(args: argparse.Namespace) -> BridgeConfig:
    """The file's settings with the flags over them; ValueError (BridgeConfigError) naming what is wrong."""
    cfg = bridge_config.load(args.config) if args.config else BridgeConfig()
    for key in ("name", "broker", "prefix", "user", "password", "outbox", "registry", "baudrate",
                "device_quota"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    for flag, key in (("ca", "ca"), ("tls_cert", "cert"), ("tls_key", "key")):
        if getattr(args, flag):
            cfg.tls[key] = getattr(args, flag)
    for spec in args.serial:
        device, _, port = spec.partition("=")
        if not device or not port:
            raise ValueError(f"--serial {spec!r}: expected DEVICE=PORT, e.g. --serial sensor=/dev/ttyUSB0")
        cfg.serial[device] = SerialDevice(port)
    cfg.spools += args.spool
    cfg.broker = cfg.broker or os.environ.get("SPOOLBUS_BROKER", "127.0.0.1:1883")
    cfg.prefix = cfg.prefix or "spoolbus"
    cfg.password = cfg.password or os.environ.get("SPOOLBUS_BROKER_PASSWORD")
    if not cfg.name:
        raise ValueError("no bridge name: give NAME, or name = \"gw1\" in the --config file")
    if not cfg.outbox:
        raise ValueError("no outbox: give --outbox DIR, or outbox = \"/var/lib/spoolbus/outbox\" in the file")
    if not cfg.serial and not cfg.spools:
        raise ValueError("no devices: expected --serial DEVICE=PORT or --spool DIR at least once "
                         "(or [serial] / spools in the --config file)")
    if ("cert" in cfg.tls) != ("key" in cfg.tls):
        raise ValueError("a client certificate needs both --tls-cert and --tls-key (tls.cert and tls.key)")
    return cfg


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        cfg = settings(args)
        host, port = mqtt_options.broker_address(cfg.broker)
        tls = {k: cfg.tls[t] for k, t in (("ca_certs", "ca"), ("certfile", "cert"), ("keyfile", "key"))
               if t in cfg.tls} or None
        bridge = Bridge(cfg.name, host, port, cfg.outbox, prefix=cfg.prefix, user=cfg.user,
                        password=cfg.password, tls=tls,
                        registry=Registry(cfg.registry) if cfg.registry else None,
                        keys={f"{cfg.name}/{d}": k for d, k in cfg.keys.items()},
                        device_quota=cfg.device_quota)
    except (ValueError, errors.SpoolbusError) as e:
        print(f"spoolbus bridge: {e}", file=sys.stderr)
        return 2
    try:
        for device, dev in cfg.serial.items():
            baudrate = dev.baudrate or cfg.baudrate or 115200
            bridge.attach(device, connect(dev.port, name=cfg.name, baudrate=baudrate), where=dev.port)
        for root in cfg.spools:
            bridge.attach_spool(root)
    except (ValueError, serial.SerialException, errors.SpoolbusError) as e:
        print(f"spoolbus bridge: {e}", file=sys.stderr)
        bridge.close()
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    logging.info("bridge %s: %d serial device(s), %d spool(s) on %s:%d", cfg.name, len(cfg.serial),
                 len(cfg.spools), host, port)
    bridge.run(stop)
    bridge.close()
    counters = dict(bridge.stats)
    print(json.dumps(counters) if args.json else " ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    return 0
