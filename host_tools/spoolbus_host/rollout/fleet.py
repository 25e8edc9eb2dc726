"""The broker's view of the fleet: which devices are online (their statuses and their bridges', heard
after a who-query and not stale), and what each runs (its hello: services and API versions;
update.status: its tree).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from spoolbus import errors
from spoolbus.node import Node
from spoolbus.transport.mqtt import ANSWER_MS

from spoolbus_host.deploy import ota
from spoolbus_host.mqtt.paho import PahoTransport

BRIDGE_DEVICE = "_bridge"  # the bridge's own status: <bridge>/_bridge
# After the subscription: the who-query is answered within ANSWER_MS (retained statuses, where a broker
# keeps them, come at once).
_SETTLE_S = ANSWER_MS / 1000 + 0.5


@dataclass
class DeviceView:
    """One device as the rollout sees it: `why` says why it cannot take part (None: it can)."""

    node: str
    services: dict[str, str]
    tree: str | None = None
    trial: str | None = None
    why: str | None = None


def online(transport: PahoTransport, settle_s: float = _SETTLE_S) -> tuple[list[str], list[str]]:
    """(online, offline) device names of every bridge: a device is online when its status says so and
    its bridge's does too (a bridge killed outright leaves its devices' retained "online" behind)."""
    time.sleep(settle_s)
    statuses = transport.statuses()
    up, down = [], []
    for name, is_online in sorted(statuses.items()):
        bridge, _, device = name.partition("/")
        if device == BRIDGE_DEVICE or name == transport.name:
            continue
        bridge_ok = statuses.get(f"{bridge}/{BRIDGE_DEVICE}", True)  # a device on the broker has no bridge
        (up if is_online and bridge_ok else down).append(name)
    return up, down


def probe(node: Node, name: str, timeout: float) -> DeviceView:
    """Hello and update.status of `name`: its services, tree and trial, or why it cannot be updated."""
    node.peers.pop(name, None)  # what it advertises now, not in an older hello
    node.hello(name)
    try:
        st = node.call(name, "update.status", {}, timeout=timeout, retries=1)
    except errors.RemoteError as e:
        why = "serves no update service" if e.type == "no_such_service" else f"{e.type}: {e.message}"
        return DeviceView(name, _services(node, name), why=why)
    except (errors.Timeout, errors.LinkError):
        return DeviceView(name, _services(node, name), why=f"no reply to update.status in {timeout:g} s")
    if not isinstance(st, dict):
        return DeviceView(name, _services(node, name), why=f"answered update.status with {st!r}")
    deadline = time.monotonic() + timeout  # the hello's answer may come after the status reply
    while name not in node.peers and time.monotonic() < deadline:
        node.poll(50)
    return DeviceView(name, _services(node, name), _tree(st.get("current")), _tree(st.get("trial")))


def _services(node: Node, name: str) -> dict[str, str]:
    peer = node.peers.get(name)
    return dict(peer[0]) if peer else {}


def _tree(d: object) -> str | None:
    """The tree id of a pointer's text ("<id>", "<id>.1", a trial's "<id> booted")."""
    return ota.tree_id(d.split(" ")[0]) if isinstance(d, str) else None
