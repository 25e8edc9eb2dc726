"""The settings of `spoolbus bridge`: a TOML file (examples/bridge.toml), then flags over it.

load() checks every key and type; a mistake raises BridgeConfigError naming the file, the key and what
to write instead, before the bridge touches the broker or a device. docs/operations.md has the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from spoolbus.names import check_name

from spoolbus_host.bridge.routing import BRIDGE_NODE
from spoolbus_host.mqtt.failover import address
from spoolbus_host.toml_checks import TomlFile

_HEX = re.compile(r"^([0-9a-fA-F]{2})+$")
_TLS_KEYS = ("ca", "cert", "key")


class BridgeConfigError(ValueError):
    """A bridge configuration file that is missing, unreadable, or has a wrong key or value."""


@dataclass
class SerialDevice:
    port: str
    baudrate: int | None = None  # None: the bridge's default baudrate


@dataclass
class BridgeConfig:
    """Every setting of one bridge; None (or empty) where neither the file nor a flag said."""

    name: str | None = None
    brokers: list[str] = field(default_factory=list)  # HOST:PORT addresses, in the order to try them
    prefix: str | None = None
    user: str | None = None
    password: str | None = None
    tls: dict[str, str] = field(default_factory=dict)  # ca, cert, key: file paths
    outbox: str | None = None
    registry: str | None = None
    baudrate: int | None = None
    device_quota: int | None = None  # messages one device may have in the outbox
    serial: dict[str, SerialDevice] = field(default_factory=dict)
    spools: list[str] = field(default_factory=list)
    keys: dict[str, bytes] = field(default_factory=dict)  # device name -> signing key


_EXAMPLES = {
    "name": 'name = "gw1"',
    "broker": 'broker = "mqtt.plant:8883"',
    "brokers": 'brokers = ["mqtt1.plant:8883", "mqtt2.plant:8883"]',
    "prefix": 'prefix = "spoolbus"',
    "user": 'user = "gw1"',
    "password": 'password = "..."',
    "outbox": 'outbox = "/var/lib/spoolbus/outbox"',
    "registry": 'registry = "/var/lib/spoolbus/devices.db"',
    "baudrate": "baudrate = 115200",
    "device_quota": "device_quota = 1000",
    "spools": 'spools = ["/run/spoolbus/board"]',
    "tls": '[tls] with ca = "/etc/spoolbus/ca.crt" (and cert, key for a client certificate)',
    "serial": '[serial] with sensor = "/dev/ttyUSB0" or sensor = { port = "/dev/ttyUSB0", baudrate = 9600 }',
    "keys": '[keys] with sensor = "<hex>" or sensor = { file = "/etc/spoolbus/keys/sensor.key" }',
}


def own_name(name: str) -> str:
    """`name` if an operator may give it to a bridge or a device: a name every transport carries
    (check_name), not one of spoolbus's own (a leading '_'). ValueError naming the fix."""
    check_name(name)
    if name.startswith("_"):
        raise ValueError(f"{name!r} is reserved: a leading '_' marks spoolbus's own nodes ({BRIDGE_NODE} is "
                         "the bridge's); give another name")
    return name


def load(path: str | Path) -> BridgeConfig:
    """The bridge settings in TOML file `path`, checked."""
    path = Path(path)
    data = TomlFile(path, BridgeConfigError, "the bridge configuration", "examples/bridge.toml").read()
    cfg = BridgeConfig()
    if "broker" in data and "brokers" in data:
        raise BridgeConfigError(f"{path}: both broker and brokers are set; keep one: broker = \"HOST:PORT\" "
                                "for one address, or brokers = [\"HOST:PORT\", ...] with every address")
    for key, value in data.items():
        if key not in _EXAMPLES:
            raise BridgeConfigError(f"{path}: unknown key {key!r}; the keys are {', '.join(_EXAMPLES)}")
        if key == "broker":
            cfg.brokers = [_broker(path, key, value)]
        elif key == "brokers":
            if not isinstance(value, list) or not value:
                raise _wrong(path, key, value)
            cfg.brokers = [_broker(path, f"brokers[{i}]", v) for i, v in enumerate(value)]
        elif key in ("name", "prefix", "user", "password", "outbox", "registry"):
            setattr(cfg, key, _typed(path, key, value, str))
            if key == "name":
                _name(path, key, value)
        elif key in ("baudrate", "device_quota"):
            setattr(cfg, key, _positive(path, key, value))
        elif key == "spools":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _wrong(path, key, value)
            cfg.spools = list(value)
        elif key == "tls":
            for k, v in _table(path, key, value).items():
                if k not in _TLS_KEYS:
                    raise BridgeConfigError(f"{path}: unknown key 'tls.{k}'; the keys are ca, cert, key")
                cfg.tls[k] = _typed(path, f"tls.{k}", v, str, 'a file path, e.g. "/etc/spoolbus/ca.crt"')
        elif key == "serial":
            table = _table(path, key, value)
            cfg.serial = {_name(path, key, d): _serial(path, d, v) for d, v in table.items()}
        else:
            table = _table(path, key, value)
            cfg.keys = {_name(path, key, d): _key(path, d, v) for d, v in table.items()}
    return cfg


def _name(path: Path, key: str, name: str) -> str:
    try:
        return own_name(name)
    except ValueError as e:
        raise BridgeConfigError(f"{path}: {key}: {e}") from None


def _broker(path: Path, key: str, value: object) -> str:
    """A HOST:PORT string, from broker = or one element of brokers = [...]."""
    try:
        if isinstance(value, str):
            address(value)
            return value
    except ValueError:
        pass
    raise _wrong(path, key, value)


def _wrong(path: Path, key: str, value: object, example: str | None = None) -> BridgeConfigError:
    example = example or _EXAMPLES[key.partition(".")[0].partition("[")[0]]
    return BridgeConfigError(f"{path}: {key} = {value!r} is not valid; write {example}")


def _typed(path: Path, key: str, value: object, kind: type, example: str | None = None) -> object:
    if type(value) is not kind:
        raise _wrong(path, key, value, example)
    return value


def _positive(path: Path, key: str, value: object, example: str | None = None) -> int:
    if type(value) is not int or value < 1:
        raise _wrong(path, key, value, example)
    return value


def _table(path: Path, key: str, value: object) -> dict:
    if not isinstance(value, dict):
        raise _wrong(path, key, value)
    return value


def _serial(path: Path, device: str, value: object) -> SerialDevice:
    example = f'{device} = "/dev/ttyUSB0" or {device} = {{ port = "/dev/ttyUSB0", baudrate = 115200 }}'
    if isinstance(value, str):
        return SerialDevice(value)
    if not (isinstance(value, dict) and isinstance(value.get("port"), str)
            and set(value) <= {"port", "baudrate"}):
        raise _wrong(path, f"serial.{device}", value, example)
    baudrate = value.get("baudrate")
    if baudrate is not None:
        _positive(path, f"serial.{device}.baudrate", baudrate, "baudrate = 115200")
    return SerialDevice(value["port"], baudrate)


def _key(path: Path, device: str, value: object) -> bytes:
    example = f'{device} = "<hex: an even number of digits>" or {device} = {{ file = "/etc/{device}.key" }}'
    if isinstance(value, str) and _HEX.match(value):
        return bytes.fromhex(value)
    if isinstance(value, dict) and set(value) == {"file"} and isinstance(value["file"], str):
        try:
            key = Path(value["file"]).read_bytes()
        except OSError as e:
            raise BridgeConfigError(f"{path}: keys.{device}: cannot read {value['file']}: {e.strerror}") \
                from None
        if not key:
            raise BridgeConfigError(f"{path}: keys.{device}: {value['file']} is empty")
        return key
    raise _wrong(path, f"keys.{device}", value, example)
