"""What the MQTT commands (call, cast, monitor) share: broker options and a host node on the broker."""

from __future__ import annotations

import argparse
import json
import os

from spoolbus_host.mqtt.paho import PahoTransport


def add_broker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", default=os.environ.get("SPOOLBUS_BROKER", "127.0.0.1:1883"),
                   help="MQTT broker HOST:PORT (default $SPOOLBUS_BROKER or 127.0.0.1:1883)")
    p.add_argument("--prefix", default="spoolbus", help="topic prefix (default spoolbus)")
    p.add_argument("--user", help="MQTT user name")
    p.add_argument("--password", default=os.environ.get("SPOOLBUS_BROKER_PASSWORD"),
                   help="MQTT password (default $SPOOLBUS_BROKER_PASSWORD)")
    p.add_argument("--ca", help="CA certificate file: connect with TLS and verify the broker against it")
    p.add_argument("--json", action="store_true", help="print results as JSON")


def broker_address(text: str) -> tuple[str, int]:
    """HOST:PORT (or HOST, port 1883); ValueError with the fix for anything else."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, 1883
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--broker {text!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


def transport(args: argparse.Namespace, bridge: str, device: str) -> PahoTransport:
    """A clean-session node bridge/device on the broker, without presence: it leaves no trace there
    (raises MQTTConnectionError/MQTTRefused)."""
    host, port = broker_address(args.broker)
    return PahoTransport(host, port, bridge, device, prefix=args.prefix, user=args.user,
                         password=args.password, clean_session=True, presence=False,
                         tls={"ca_certs": args.ca} if args.ca else None)


def jsonable(value: object) -> object:
    """A decoded CBOR value as JSON can carry it: bytes as hex strings, map keys as strings."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def parse_value(text: str) -> object:
    """key=value arguments: JSON where it parses (3, 1.5, true, "x", [1]), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text
