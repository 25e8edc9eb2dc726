"""`spoolbus bridge [NAME] [--config FILE.toml] [--serial DEVICE=PORT] [--spool DIR] ...`: run a bridge.

Each --serial attaches the device on a serial port (any pyserial URL) as node NAME/DEVICE; each --spool
a spool directory whose NAME/DEVICE inboxes are devices. The settings come from the TOML file
(bridge_config.py), flags over it. Runs until Ctrl-C or SIGTERM; log lines go to stderr; at exit the
counters and the broker in use are printed (as JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
import threading

import serial
from spoolbus import errors

from spoolbus_host.bridge import config as bridge_config
from spoolbus_host.bridge.config import BridgeConfig, SerialDevice
from spoolbus_host.bridge.gateway import Bridge
from spoolbus_host.bridge.registry import Registry
from spoolbus_host.cli import mqtt_options, options
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
    p.add_argument("--baudrate", type=options.positive_int("115200"),
                   help="of the serial ports (default 115200)")
    p.add_argument("--device-quota", type=options.positive_int("1000"),
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
    for key in ("name", "prefix", "user", "password", "outbox", "registry", "baudrate", "device_quota"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.broker is not None:  # every --broker, in order, instead of the file's
        cfg.brokers = args.broker
    for flag, key in (("ca", "ca"), ("tls_cert", "cert"), ("tls_key", "key")):
        if getattr(args, flag):
            cfg.tls[key] = getattr(args, flag)
    for spec in args.serial:
        device, _, port = spec.partition("=")
        if not device or not port:
            raise ValueError(f"--serial {spec!r}: expected DEVICE=PORT, e.g. --serial sensor=/dev/ttyUSB0")
        cfg.serial[device] = SerialDevice(port)
    cfg.spools += args.spool
    if not cfg.brokers:
        cfg.brokers = mqtt_options.broker_list(os.environ.get("SPOOLBUS_BROKER", "127.0.0.1:1883"))
    if cfg.prefix is None:
        cfg.prefix = "spoolbus"
    if cfg.password is None:
        cfg.password = os.environ.get("SPOOLBUS_BROKER_PASSWORD")
    _check(cfg)
    return cfg


def _check(cfg: BridgeConfig) -> None:
    """What neither argparse nor the file's loader can check alone: the settings as merged."""
    if not cfg.name:
        raise ValueError("no bridge name: give NAME, or name = \"gw1\" in the --config file")
    _own_name(cfg.name, "bridge name", "NAME or name in the --config file")
    options.topic_level(cfg.prefix, "prefix", "spoolbus (--prefix or prefix in the file)")
    for broker in cfg.brokers:
        mqtt_options.broker_address(broker)
    if not cfg.outbox:
        raise ValueError("no outbox: give --outbox DIR, or outbox = \"/var/lib/spoolbus/outbox\" in the file")
    if not cfg.serial and not cfg.spools:
        raise ValueError("no devices: expected --serial DEVICE=PORT or --spool DIR at least once "
                         "(or [serial] / spools in the --config file)")
    for device in list(cfg.serial) + list(cfg.keys):
        _own_name(device, "device name", "in --serial, [serial] or [keys]")
    _check_directories(cfg)
    if cfg.registry:
        _check_registry(cfg.registry)
    if ("cert" in cfg.tls) != ("key" in cfg.tls):
        raise ValueError("a client certificate needs both --tls-cert and --tls-key (tls.cert and tls.key)")
    try:
        if "ca" in cfg.tls:
            mqtt_options.check_ca(cfg.tls["ca"])
        if "cert" in cfg.tls:
            mqtt_options.check_client_cert(cfg.tls["cert"], cfg.tls["key"])
    except ValueError as e:
        raise ValueError(f"TLS (--ca, --tls-cert, --tls-key or [tls] in the file): {e}") from None


def _own_name(name: str, what: str, where: str) -> None:
    try:
        bridge_config.own_name(name)
    except ValueError as e:
        raise ValueError(f"{what} ({where}): {e}") from None


def _check_directories(cfg: BridgeConfig) -> None:
    """The outbox (and its .held) and the spools: each a directory or new, none inside another."""
    outbox = os.path.realpath(cfg.outbox)
    _check_parent("--outbox", outbox)
    places = [("--outbox", outbox), ("--outbox (its .held)", outbox.rstrip("/") + ".held")]
    places += [("--spool", os.path.realpath(s)) for s in cfg.spools]
    for flag, path in places[2:]:
        _check_parent(flag, path)
    for i, (flag, path) in enumerate(places):
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"{flag} {path} is not a directory; give a spool directory (created if new)")
        for other_flag, other in places[:i]:
            if os.path.commonpath([path, other]) in (path, other):
                raise ValueError(f"{other_flag} {other} and {flag} {path} overlap; give each its own "
                                 "directory, none inside another")


def _check_parent(flag: str, path: str) -> None:
    """The directory `path` is made in exists: state directories are the operator's to create."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path}: directory {parent} does not exist; create it "
                         f"(mkdir -p {parent}) or give a place in another directory")


def _check_registry(path: str) -> None:
    _check_parent("--registry", path)
    if os.path.isdir(path):
        raise ValueError(f"--registry {path} is a directory; give the registry's file (created if new)")
    if os.path.exists(path) and os.path.getsize(path):
        try:
            Registry(path, read_only=True).close()
        except sqlite3.Error as e:
            raise ValueError(f"--registry {path}: not a device registry ({e}); give the bridge's own "
                             "registry file or a new one") from None


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    links = {}
    try:
        cfg = settings(args)
        (host, port), *more = [mqtt_options.broker_address(b) for b in cfg.brokers]
        tls = {k: cfg.tls[t] for k, t in (("ca_certs", "ca"), ("certfile", "cert"), ("keyfile", "key"))
               if t in cfg.tls} or None
        registry = Registry(cfg.registry) if cfg.registry else None
        for device, dev in cfg.serial.items():  # before the bridge connects: a bad port stops it first
            links[device] = connect(dev.port, name=cfg.name, baudrate=dev.baudrate or cfg.baudrate or 115200)
        bridge = Bridge(cfg.name, host, port, cfg.outbox, prefix=cfg.prefix, user=cfg.user,
                        password=cfg.password, tls=tls, registry=registry,
                        keys={f"{cfg.name}/{d}": k for d, k in cfg.keys.items()},
                        device_quota=cfg.device_quota, brokers=more)
    except sqlite3.Error as e:
        print(f"spoolbus bridge: --registry {cfg.registry}: {e}; give a writable file", file=sys.stderr)
        return 2
    except (ValueError, OSError, errors.SpoolbusError) as e:  # serial.SerialException is an OSError
        for link in links.values():
            link.close()
        print(f"spoolbus bridge: {e}", file=sys.stderr)
        return 2
    try:
        for device, link in links.items():
            bridge.attach(device, link, where=cfg.serial[device].port)
        for root in cfg.spools:
            bridge.attach_spool(root)
    except (ValueError, OSError, serial.SerialException, errors.SpoolbusError) as e:
        print(f"spoolbus bridge: {e}", file=sys.stderr)
        bridge.close()
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    logging.info("bridge %s: %d serial device(s), %d spool(s) on the broker at %s", cfg.name,
                 len(cfg.serial), len(cfg.spools), ", ".join(cfg.brokers))
    bridge.run(stop)
    bridge.close()
    counters = bridge.report()
    print(json.dumps(counters) if args.json else " ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    return 0
