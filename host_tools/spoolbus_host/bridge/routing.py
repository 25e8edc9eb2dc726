"""The bridge's routing decisions without I/O: where a message from a device or from the broker goes.

Plain functions of a decoded envelope and the bridge's state (values and callables passed in): each
returns a Route naming the action, the counter the case bumps and, for a CALL that cannot get through,
the error its caller is answered with. The gateway carries the decisions out; tests drive them alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from spoolbus import wire
from spoolbus.transport.mqtt import inbox_topic, split_topic

BRIDGE_NODE = "_bridge"  # the device name of the bridge itself: its status, its node on a spool

# Counters of a message lost or refused (the demo fails on any of them), then those of normal work.
ERRORS = ("malformed", "malformed_in", "oversized_in", "too_large", "bad_topic", "spoofed", "forged",
          "unsigned", "unknown_key", "replayed", "internal_errors", "link_send_failed", "outbox_full",
          "outbox_corrupt", "held_full", "quota", "unroutable_in", "bad_destination", "expired",
          "quarantined")
TRAFFIC = ("local", "uplink", "spooled", "forwarded", "hellos", "held", "throttled", "delivered",
           "refused_calls")
COUNTERS = TRAFFIC + ERRORS

# Actions. From a device: DROP, RECORD (a hello to the bridge itself), LOCAL (to another device of the
# bridge), UPLINK (publish now), OUTBOX (spool, then publish in order). From the broker: DROP,
# DELIVER (write to the device's link), HOLD (keep until the link takes it, behind what waits already).
DROP, RECORD, LOCAL, UPLINK, OUTBOX, DELIVER, HOLD = "drop", "record", "local", "uplink", "outbox", \
    "deliver", "hold"

# The error types a refused CALL is answered with (docs/protocol.md, section 3).
UNREACHABLE = "unreachable"
TOO_LARGE = "too_large"
WRONG_SOURCE = "wrong_source"


class Route(NamedTuple):
    action: str
    counter: str  # the bridge counter this case bumps
    target: str = ""  # the local device (LOCAL, DELIVER, HOLD) or the broker topic (UPLINK, OUTBOX)
    error: tuple[str, str] | None = None  # (type, message) of a refusal: logged, and a CALL answered


def _refused(counter: str, kind: str, message: str) -> Route:
    return Route(DROP, counter, error=(kind, message))


def from_device(bridge: str, prefix: str, env: wire.Envelope, size: int, speaks_as: Callable[[str], bool],
                limit: Callable[[str], int | None], uplink_free: bool, queued: int, quota: int) -> Route:
    """Where `env` (`size` bytes), read from a device's link, goes.

    speaks_as(src): whether that link may speak as node `src`; limit(device): the largest message the
    link of local device `device` takes, None if there is no such device; uplink_free: connected with
    nothing older in the outbox; queued: what the sender has in the outbox, against its `quota`.
    """
    src = env.src if isinstance(env.src, str) else ""
    if not speaks_as(src):
        return _refused("spoofed", WRONG_SOURCE,
                        f"the bridge {bridge} forwards only what a device sends as itself, not as {src!r}")
    dst = env.dst if isinstance(env.dst, str) else ""
    if env.kind == wire.HELLO and dst in (bridge, f"{bridge}/{BRIDGE_NODE}"):
        return Route(RECORD, "hellos")
    node, _, device = dst.rpartition("/")
    if node in ("", bridge):
        most = limit(device)
        if most is None:
            return _refused("bad_destination", UNREACHABLE,
                            f"no such device {device!r} on bridge {bridge}")
        if size > most:
            return _refused("too_large", TOO_LARGE,
                            f"{size} bytes: the link of {bridge}/{device} takes at most {most}")
        return Route(LOCAL, "local", device)
    try:
        topic = inbox_topic(prefix, node, device)
    except ValueError:
        return _refused("bad_destination", UNREACHABLE, f"{dst!r} is not a node name (bridge/device)")
    if uplink_free:
        return Route(UPLINK, "uplink", topic)
    if queued >= quota:
        return Route(DROP, "quota")
    return Route(OUTBOX, "spooled", topic)


def device_of(bridge: str, prefix: str, topic: str) -> str | None:
    """The device of this bridge whose inbox `topic` is, or None."""
    got = split_topic(prefix, topic)
    if got is None or got[1] != "inbox" or not got[0].startswith(bridge + "/"):
        return None
    return got[0][len(bridge) + 1:]


def from_broker(bridge: str, device: str | None, env: wire.Envelope | None, size: int, max_message: int,
                limit: Callable[[str], int | None], held: int, newer_wire: bool = False) -> Route:
    """Where an inbox message from the broker for local `device` (None: not a topic of ours) goes.

    env: the decoded envelope, None if it did not decode; newer_wire: it did not because its wire major
    is newer (delivered all the same: the device's node answers with the versions it supports);
    held: how many messages wait for the device already (a new one goes behind them).
    """
    if device is None:
        return Route(DROP, "bad_topic")
    if size > max_message:
        return _refused("oversized_in", TOO_LARGE,
                        f"{size} bytes: bridge {bridge} takes at most {max_message}")
    if env is None and not newer_wire:
        return Route(DROP, "malformed_in")
    most = limit(device)
    if most is None:
        return _refused("unroutable_in", UNREACHABLE, f"no such device {device!r} on bridge {bridge}")
    if size > most:
        return _refused("too_large", TOO_LARGE,
                        f"{size} bytes: the link of {bridge}/{device} takes at most {most}")
    return Route(HOLD, "held", device) if held else Route(DELIVER, "delivered", device)


def refusal(env: wire.Envelope, error: tuple[str, str], msg_id: int, bridge: str) -> wire.Envelope | None:
    """The ERROR that answers refused CALL `env`, from the node it called so that its caller takes it;
    None for anything else (a CAST or a reply has no one waiting)."""
    if env.kind != wire.CALL or not isinstance(env.src, str):
        return None
    src = env.dst if isinstance(env.dst, str) and env.dst else f"{bridge}/{BRIDGE_NODE}"
    return wire.Envelope(kind=wire.ERROR, id=msg_id, src=src, dst=env.src, reply_to=env.id,
                         body=wire.error_body(error[0], error[1]))
