"""What the MQTT commands (call, cast, monitor, deploy --to, fetch) share: broker options, signing keys
and a host node on the broker."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import TYPE_CHECKING

from spoolbus_host.cli import options
from spoolbus_host.mqtt import failover

if TYPE_CHECKING:  # paho is imported when a transport is made: `spoolbus deploy --port` never needs it
    from spoolbus.node import Node

    from spoolbus_host.mqtt.paho import PahoTransport

# What to do when the broker cannot be reached; the MQTT commands end their line with it.
CHECK_BROKER = "check that the broker runs and that --broker names it"


def unreachable(verb: str, e: Exception) -> int:
    """The one line a command prints when the broker cannot be reached, and its exit status (3)."""
    print(f"spoolbus {verb}: {e}; {CHECK_BROKER}", file=sys.stderr)
    return 3


def add_broker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", default=os.environ.get("SPOOLBUS_BROKER", "127.0.0.1:1883"),
                   type=options.argtype(broker_list), action=_Brokers, metavar="HOST:PORT",
                   help="MQTT broker HOST:PORT; repeat it (or give A,B) for more addresses of the same "
                   "broker service, tried in turn (default $SPOOLBUS_BROKER, which may be a list A,B, "
                   "or 127.0.0.1:1883)")
    p.add_argument("--prefix", default="spoolbus", type=options.prefix,
                   help="topic prefix, one topic level (default spoolbus)")
    p.add_argument("--user", help="MQTT user name")
    p.add_argument("--password", default=os.environ.get("SPOOLBUS_BROKER_PASSWORD"),
                   help="MQTT password (default $SPOOLBUS_BROKER_PASSWORD)")
    p.add_argument("--ca", type=options.argtype(check_ca),
                   help="CA certificate file: connect with TLS and verify the broker against it")
    p.add_argument("--json", action="store_true", help="print results as JSON")


class _Brokers(argparse.Action):
    """--broker, repeatable: the addresses given, in order, instead of the default ones."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        given = getattr(namespace, self.dest)  # the default (a string, or None) until a first --broker
        setattr(namespace, self.dest, (given if isinstance(given, list) else []) + values)


def broker_address(text: str) -> tuple[str, int]:
    """HOST:PORT (or HOST, port 1883); ValueError with the fix for anything else."""
    try:
        return failover.address(text)
    except ValueError:
        raise ValueError(f"broker {text!r} is not HOST:PORT (from --broker, $SPOOLBUS_BROKER or a file); "
                         "give e.g. 127.0.0.1:1883") from None


def broker_list(text: str) -> list[str]:
    """One or more HOST:PORT separated by commas, each checked (broker_address)."""
    brokers = [b.strip() for b in text.split(",")]
    for b in brokers:
        broker_address(b)
    return brokers


def brokers(args: argparse.Namespace) -> list[tuple[str, int]]:
    """The (host, port) addresses of --broker (or its default), in the order to try them."""
    return [broker_address(b) for b in args.broker]


def check_ca(path: str) -> str:
    """A file of PEM CA certificates, as TLS will load it; ValueError with the fix."""
    import ssl  # only for TLS: its import costs a command without it 10 ms

    fix = "the CA certificate (PEM) that signed the broker's certificate"
    options.readable_file(path, fix)
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a CA certificate ({getattr(e, 'reason', None) or e}); "
                         f"give {fix}") from None
    return path


def check_client_cert(cert: str, key: str) -> None:
    """A PEM client certificate and its private key that match, as TLS will load them."""
    import ssl

    fix = "a client certificate (PEM) and its private key"
    options.readable_file(cert, fix)
    options.readable_file(key, fix)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ValueError(f"{cert}, {key}: not a certificate and its key "
                         f"({getattr(e, 'reason', None) or e}); give {fix}") from None


def transport(args: argparse.Namespace, bridge: str, device: str, **kw: object) -> PahoTransport:
    """A clean-session node bridge/device on the broker, without presence: it leaves no trace there
    (raises MQTTConnectionError/MQTTRefused); `kw`: more of PahoTransport's keywords (watch, client_id)."""
    from spoolbus_host.mqtt.paho import PahoTransport

    (host, port), *more = brokers(args)
    return PahoTransport(host, port, bridge, device, prefix=args.prefix, user=args.user,
                         password=args.password, clean_session=True, presence=False,
                         tls={"ca_certs": args.ca} if args.ca else None, brokers=more, **kw)


_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_KEY_FILE = 'a JSON or TOML file of node name = "hex key" (the board\'s and this host\'s)'


def add_key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-file", type=options.argtype(read_key_file), metavar="FILE",
                   help='sign with these keys: JSON {"gw1/sensor-1": "<hex>", "host/ops": "<hex>"} or the '
                   "same as TOML; the board's key and this host's, whose entry names the command's node")


def read_key_file(path: str) -> dict[str, bytes]:
    """{node name: key} from a JSON or TOML file of node name -> hex key; ValueError with the fix."""
    options.readable_file(path, _KEY_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file; give {_KEY_FILE}") from None
    try:
        if text.lstrip().startswith("{"):
            table = json.loads(text)
        else:
            import tomllib

            table = tomllib.loads(text)
    except ValueError as e:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ValueError(f"{path} is neither JSON nor TOML ({e}); give {_KEY_FILE}") from None
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{path} holds no keys; give {_KEY_FILE}")
    keys = {}
    for name, value in table.items():
        try:
            options.node_name(name)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        if not isinstance(value, str) or not _HEX.match(value):
            raise ValueError(f"{path}: the key of {name} is not hex (an even number of digits 0-9, a-f)")
        keys[name] = bytes.fromhex(value)
    return keys


def bus_node(args: argparse.Namespace, target: str, pending: int = 8) -> Node:
    """The command's node on the broker, to reach `target`: host/cli-<pid>, or with --key-file the file's
    entry that is not the target's, signing its calls and refusing unsigned replies. ValueError for a key
    file that does not fit the target; MQTTConnectionError/MQTTRefused as transport()."""
    from spoolbus.node import Node

    keys = getattr(args, "key_file", None)
    name = f"host/cli-{os.getpid()}"
    if keys:
        others = [n for n in keys if n != target]
        if target not in keys or len(others) != 1:
            raise ValueError(f"--key-file must hold two keys, {target}'s and this host's (whose name the "
                             f"command's node takes); it holds {', '.join(sorted(keys))}")
        name = others[0]
    bridge, _, device = name.partition("/")
    t = transport(args, bridge, device)
    return Node(t.name, t, keys=keys or None, require=bool(keys), timeout=getattr(args, "timeout", 5.0),
                max_pending=pending, max_message=65536)


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
