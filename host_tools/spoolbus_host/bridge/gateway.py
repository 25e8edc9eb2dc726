"""The bridge: federates the devices on one host's links into an MQTT broker.

Each device on a link is the node <bridge>/<device>: what it sends must carry that name as src (a
device speaks only as itself), goes straight to another local device when the destination is on this
bridge (broker up or down), else to the destination's inbox on the broker, through a spool outbox in
order while the uplink is down. Inbox messages are acknowledged to the broker only once written to the
device's link or, when the link cannot take them (down, full), held in a spool <outbox>.held/<device>
and written from there, in order, when it can: an acknowledged message is never lost. Presence:
retained status per device, and the bridge's own with the broker's last will. A CALL the bridge drops
(no such device, too large for the link, a wrong source) is answered with an ERROR saying why.

Where each message goes is decided in `routing` (no I/O); this module carries it out on the links,
`uplink` (the MQTT client) and `outbox`. Nothing in a pass waits for the broker.

A spool directory is one link with many devices: the bridge is node <bridge>/_bridge there, its devices
are the <bridge>/<device> nodes with an inbox in it and send what leaves the spool to the bridge's inbox
(SpoolTransport(..., gateway=...)). The directory's file permissions are the trust boundary: a message
from it may speak as any device of that spool, never as a device of another link.
"""


from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

import paho.mqtt.client as paho
from spoolbus import auth, errors, wire
from spoolbus.frame import MAX_FRAME
from spoolbus.spool import Spool, SpoolError, SpoolFull
from spoolbus.transport.mqtt import HEARTBEAT_MS, OFFLINE, ONLINE, inbox_topic, status_topic
from spoolbus.transport.serial import SerialTransport
from spoolbus.transport.spool import SpoolTransport

from spoolbus_host.bridge import routing
from spoolbus_host.bridge.config import own_name
from spoolbus_host.bridge.outbox import Outbox
from spoolbus_host.bridge.registry import Registry
from spoolbus_host.bridge.routing import BRIDGE_NODE, Route
from spoolbus_host.bridge.uplink import Uplink

log = logging.getLogger("spoolbus.bridge")

BUDGET = 16  # messages read from one link per pass: a flooding device cannot starve the others
RETRY_S = 0.2  # how soon a link that could not take a message is tried again
RARE_LOG_S = 60.0  # at most one "throttled" or "quota" log line per link per minute


class Link(Protocol):
    """A device's link: one peer (SerialTransport, or anything with the transport interface)."""

    def send(self, dst: str, data: bytes) -> None: ...
    def recv(self, timeout_ms: int = 0) -> bytes | None: ...
    def close(self) -> None: ...


class _SpoolDevice:
    """A device on an attached spool: written to through its inbox; what it sends reaches the bridge's
    own inbox on that spool (read by Bridge.step, so recv() has nothing)."""

    def __init__(self, spool: SpoolTransport):
        self.spool = spool

    def send(self, dst: str, data: bytes) -> None:
        self.spool.send(dst, data)

    def recv(self, timeout_ms: int = 0) -> None:
        return None

    def close(self) -> None:
        pass


class Bridge:
    """Bridge `name` on the broker at host:port; attach() links, then step() from a loop or run().

    `brokers`: more (host, port) addresses of the broker service, moved to when one fails (uplink.py).
    Its status and its online devices' are published again every `heartbeat_s` (docs/protocol.md §7).

    It connects at once, in the background; its retained status says "online" from the first step()
    on, so a bridge that is closed before it served (a start-up error) leaves no status behind.
    """

    def __init__(self, name: str, host: str, port: int, outbox: str, prefix: str = "spoolbus",
                 user: str | None = None, password: str | None = None, tls: dict | None = None,
                 max_message: int = 4096, outbox_messages: int = 10000, registry: Registry | None = None,
                 keys: dict[str, bytes] | None = None, device_quota: int | None = None,
                 brokers: Sequence[tuple[str, int]] = (), heartbeat_s: float = HEARTBEAT_MS / 1000):
        own_name(name)  # a name every transport carries, not one of spoolbus's own
        self.name = name
        self.prefix = prefix
        self.max_message = max_message
        self.links: dict[str, Link] = {}
        self.spools: list[SpoolTransport] = []  # the bridge's own node on each attached spool
        self.registry = registry
        # Devices with a key in `keys` ({"bridge/device": key}) must sign what they send; checked here too.
        self.auth = auth.Auth(f"{name}/{BRIDGE_NODE}", keys, max_sources=max(16, len(keys))) if keys else None
        self.online: set[str] = set()
        self.stats: Counter[str] = Counter()
        # One device may have at most device_quota messages in the outbox (counted from this process's
        # start): past it, its messages are dropped (`quota`) and the others keep their room.
        self.outbox = Outbox(outbox, outbox_messages, device_quota or max(1, outbox_messages // 10),
                             max_message)
        self._held_root = outbox.rstrip("/") + ".held"
        os.makedirs(self._held_root, exist_ok=True)
        self._held: dict[str, Spool] = {}  # device -> inbox messages its link could not take yet
        self.held: Counter[str] = Counter()  # how many wait there, per device
        for device in os.listdir(self._held_root):  # left by a previous bridge process
            self._held[device] = Spool(f"{self._held_root}/{device}")
            self.held[device] = len(self._held[device])
        self._retry_at: dict[str, float] = {}
        # Messages read from a spool and published, oldest first: each is acked in its spool only after
        # the broker's PUBACK, so a bridge killed before that leaves it there for the next one to send.
        self._unpublished: list[tuple[Spool, str, paho.MQTTMessageInfo]] = []
        self._logged: dict[tuple[str, str], float] = {}
        self._corrupt: dict[int, int] = {}  # id(spool) -> files it had quarantined when last looked at
        self._id = 0  # of the ERROR replies the bridge sends
        self._wake = threading.Event()  # set by paho's thread when a broker message or a PUBACK arrives
        self._uplink = Uplink(name, BRIDGE_NODE, [(host, port), *brokers], prefix, self._wake, user,
                              password, tls, heartbeat_ms=int(heartbeat_s * 1000))

    # ------------------------------------------------------------------ links

    def attach(self, device: str, link: Link, where: str = "") -> None:
        """Serve `device` (node <bridge>/<device>) on `link`; `where` (its port) goes to the registry."""
        own_name(device)  # as the bridge's; it also names the device's directory under <outbox>.held
        self.links[device] = link
        if self.registry:
            self.registry.attach(f"{self.name}/{device}", self.name, where)

    def attach_spool(self, root: str) -> None:
        """Serve the devices on spool directory `root`: the bridge reads node <bridge>/_bridge's inbox."""
        spool = SpoolTransport(root, f"{self.name}/{BRIDGE_NODE}", max_open=1024)
        self.spools.append(spool)
        for peer in spool.peers():
            bridge, _, device = peer.rpartition("/")
            if bridge == self.name:
                self._link(device)

    def _link(self, device: str) -> Link | None:
        """The link of local device `device`: attached, or found by its inbox on an attached spool."""
        link = self.links.get(device)
        if link is None and not device.startswith("_"):  # spoolbus's own nodes are no devices
            node = f"{self.name}/{device}"
            for spool in self.spools:
                if spool.has_inbox(node):
                    self.attach(device, _SpoolDevice(spool), where=spool.root)
                    return self.links[device]
        return link

    def _limit(self, device: str) -> int | None:
        """The largest message local device `device`'s link takes; None if there is no such device."""
        link = self._link(device)
        if link is None:
            return None
        if isinstance(link, SerialTransport):
            return min(self.max_message, getattr(link, "max_frame", MAX_FRAME))
        return self.max_message

    def step(self, timeout_ms: int = 2) -> int:
        """One pass: every link, the broker's inbox messages, the outbox; waits up to timeout_ms if idle.

        The idle wait bounds the latency a message from a link waits for its turn (each pass polls every
        link); a message or an acknowledgement from the broker ends the wait at once.
        """
        self._wake.clear()  # before the broker's queue is drained: what arrives after it wakes the wait
        self._uplink.check(self.online)
        moved = 0
        for device, link in list(self.links.items()):
            moved += self._from_link(device, link)
        for spool in self.spools:
            moved += self._from_spool(spool)
        moved += self._from_broker()
        self._ack_published()
        moved += self._flush_held()
        moved += self.outbox.flush(self._uplink.publish, self._uplink.up, self.stats)
        self._note_quarantined()
        if not moved:
            self._wake.wait(timeout_ms / 1000)
        return moved

    def run(self, stop: threading.Event) -> None:
        """step() until `stop` is set; an unexpected error is logged and counted, never fatal."""
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - the bridge must keep serving the other devices
                self.stats["internal_errors"] += 1
                log.exception("%s: internal error (the bridge goes on)", self.name)
                time.sleep(0.1)

    @property
    def uplink(self) -> bool:
        """Connected to the broker and subscribed to the devices' inboxes."""
        return self._uplink.up

    def report(self) -> dict[str, int | str]:
        """What `spoolbus bridge` prints: the message counters (`stats`), the uplink's (uplink_down,
        reconnects, failovers, connect_failures) and the broker it uses now."""
        return {**self.stats, **self._uplink.stats, "broker": self._uplink.broker}

    @property
    def client(self) -> paho.Client:
        """The paho client of the uplink (its queue holds what the broker has not acknowledged yet)."""
        return self._uplink.client

    @property
    def backlog(self) -> int:
        """Messages in the outbox, in flight to the broker or not yet sent."""
        return self.outbox.backlog

    def close(self) -> None:
        for device in list(self.online):
            self._presence(device, False)
        self._uplink.close()  # its status acknowledged in order: the earlier publishes were, too
        self._ack_published()
        self.outbox.flush(self._uplink.publish, False, self.stats)
        for link in self.links.values():
            link.close()
        for spool in self.spools:
            spool.close()
        self.outbox.close()
        for spool in self._held.values():
            spool.close()

    # --------------------------------------------------------------- internals

    def _from_link(self, device: str, link: Link) -> int:
        moved = 0
        me = f"{self.name}/{device}"
        for _ in range(BUDGET):
            try:
                data = link.recv(0)
            except errors.LinkError as e:  # reset or down: the device comes back by itself
                log.info("%s: link %s", me, type(e).__name__)
                self._presence(device, False)
                return moved
            if data is None:
                return moved
            self._presence(device, True)
            if self.registry:
                self.registry.seen(me)
            data = bytes(data)
            env = self._decode(me, data)
            if env is not None:
                self._forward(me, env, data, lambda src: src == me, link.send)
            moved += 1
        self._throttled(me)
        return moved

    def _throttled(self, who: str) -> None:
        """`who` used up its budget this pass: the rest waits on its link (in order) for the next."""
        self.stats["throttled"] += 1
        self._warn_rarely("throttled", who, "%s: sends more than %d messages a pass: throttled "
                          "(logged once a minute)", who, BUDGET)

    def _warn_rarely(self, what: str, who: str, *msg: object) -> None:
        """Log `msg` at most once a minute for each (what, who)."""
        now = time.monotonic()
        if now - self._logged.get((what, who), -RARE_LOG_S) >= RARE_LOG_S:
            self._logged[what, who] = now
            log.warning(*msg)

    def _from_spool(self, spool: SpoolTransport) -> int:
        """What the devices of one spool sent out of it; each may speak only as a device of that spool.

        Claimed, not received (SpoolTransport.recv acks at once): a message stays in the spool until it is
        dropped, delivered locally, in the outbox, or published and acknowledged by the broker.
        """
        inbox = spool.inbox  # the bridge's own inbox on that spool
        moved = 0
        for _ in range(BUDGET):
            got = inbox.claim()
            if got is None:
                return moved
            moved += 1
            info = self._from_spool_device(spool, got[1])
            if info is None:
                inbox.ack(got[0])
            else:
                self._unpublished.append((inbox, got[0], info))
        self._throttled(spool.root)
        return moved

    def _from_spool_device(self, spool: SpoolTransport, data: bytes) -> paho.MQTTMessageInfo | None:
        env = self._decode(spool.root, data)
        if env is None:
            return None

        def of_this_spool(src: str) -> bool:
            bridge, _, device = src.rpartition("/")
            link = self._link(device) if bridge == self.name else None
            return isinstance(link, _SpoolDevice) and link.spool is spool

        def back(dst: str, reply: bytes) -> None:  # an ERROR goes only to an inbox that is there
            if spool.has_inbox(dst):
                spool.send(dst, reply)

        if of_this_spool(env.src if isinstance(env.src, str) else ""):
            self._presence(env.src.rpartition("/")[2], True)
            if self.registry:
                self.registry.seen(env.src)
        return self._forward(spool.root, env, data, of_this_spool, back)

    def _ack_published(self) -> None:
        """Ack in their spools the messages the broker has acknowledged, oldest first."""
        done = 0
        for inbox, msg_id, info in self._unpublished:
            if not info.is_published():
                break
            inbox.ack(msg_id)
            done += 1
        del self._unpublished[:done]

    def _decode(self, who: str, data: bytes) -> wire.Envelope | None:
        try:
            return wire.decode(data, max_size=self.max_message)
        except errors.DecodeError as e:
            self.stats["malformed"] += 1
            log.warning("%s: malformed message dropped: %s", who, e)
            return None

    def _forward(self, who: str, env: wire.Envelope, data: bytes, speaks_as: Callable[[str], bool],
                 back: Callable[[str, bytes], None]) -> paho.MQTTMessageInfo | None:
        """Carry out the route of `env`, read from `who` (a device, or a spool of devices): `back` answers
        the sender. Returns the publish's info when it went straight to the broker (not yet acknowledged)."""
        src = env.src if isinstance(env.src, str) else ""
        if self.auth is not None and speaks_as(src):
            reason = self.auth.check(env)
            if reason is not None:
                self.stats[reason] += 1
                log.warning("%s: dropped a message that failed the signature check (%s)", src, reason)
                return None
        if env.kind == wire.HELLO and self.registry and speaks_as(src):
            self.registry.hello(src, env.body)
        device = src.rpartition("/")[2]
        route = routing.from_device(self.name, self.prefix, env, len(data), speaks_as, self._limit,
                                    self._uplink.up and not self.outbox.backlog, self.outbox.queued[device],
                                    self.outbox.quota)
        if route.action == routing.LOCAL:
            if self._deliver(route.target, data):  # local first: the broker is not needed
                self.stats["local"] += 1
        elif route.action == routing.UPLINK:
            self.stats["uplink"] += 1
            return self._uplink.publish(route.target, data)
        elif route.action == routing.OUTBOX:
            try:
                self.outbox.put(device, route.target, data)
                self.stats["spooled"] += 1
            except SpoolFull:
                self.stats["outbox_full"] += 1
                log.warning("%s: outbox full, message to %s dropped", src, env.dst)
        else:
            self.stats[route.counter] += 1
            if route.action == routing.DROP:
                self._dropped(who, env, route, back)
        return None

    def _dropped(self, who: str, env: wire.Envelope, route: Route,
                 back: Callable[[str, bytes], None]) -> None:
        """Log a drop (quota: once a minute) and answer a dropped CALL with the reason."""
        if route.counter == "quota":
            self._warn_rarely("quota", who, "%s: has %d messages in the outbox, its quota: more are dropped "
                              "(logged once a minute)", env.src, self.outbox.quota)
        else:
            log.warning("%s: dropped a message from %r to %r (%s)", who, env.src, env.dst,
                        route.error[1] if route.error else route.counter)
        reply = routing.refusal(env, route.error, self._id + 1, self.name) if route.error else None
        if reply is None:
            return
        self._id = reply.id % 0xFFFFFFFF
        try:
            back(env.src, wire.encode(reply))
            self.stats["refused_calls"] += 1
        except (errors.SpoolbusError, ValueError) as e:  # the caller times out instead
            log.warning("%s: cannot answer %r that its call was dropped: %s", who, env.src, e)

    def _from_broker(self) -> int:
        moved = 0
        while True:
            try:
                msg = self._uplink.incoming.get_nowait()
            except queue.Empty:
                return moved
            if self._to_device(msg.topic, msg.payload):
                self._uplink.ack(msg)
                moved += 1

    def _to_device(self, topic: str, payload: bytes) -> bool:
        """Write one inbox message from the broker to its device; True once the broker may forget it."""
        device = routing.device_of(self.name, self.prefix, topic)
        env, newer, why = None, False, ""
        if device is not None:
            try:  # past max_message too, to tell a caller its call was too large
                env = wire.decode(payload, max_size=max(self.max_message, len(payload)))
            except errors.UnsupportedWireVersion:
                newer = True  # the device's node answers it with the versions it supports
            except errors.DecodeError as e:
                why = str(e)
        route = routing.from_broker(self.name, device, env, len(payload), self.max_message, self._limit,
                                    self.held[device] if device else 0, newer)
        if route.action == routing.DELIVER:
            if self._deliver(route.target, payload):
                self.stats["delivered"] += 1
                return True
            return self._hold(route.target, payload)
        if route.action == routing.HOLD:
            return self._hold(route.target, payload)
        self.stats[route.counter] += 1
        if route.counter == "bad_topic":
            log.warning("%s: message on %r dropped: not %s/%s/<device>/inbox", self.name, topic, self.prefix,
                        self.name)
        elif route.counter == "malformed_in":
            log.warning("%s: malformed message on %s dropped: %s", self.name, topic, why)
        elif env is None:
            log.warning("%s: message on %s dropped: %d bytes, more than %d", self.name, topic, len(payload),
                        self.max_message)
        else:
            self._dropped(topic, env, route, self._publish_reply)
        return True

    def _publish_reply(self, dst: str, data: bytes) -> None:
        self._uplink.publish(inbox_topic(self.prefix, self.name, dst), data)

    def _hold(self, device: str, data: bytes) -> bool:
        """Keep `data` until `device`'s link takes it; False (not acked: the broker keeps it) if full."""
        spool = self._held.get(device)
        try:
            if spool is None:
                spool = self._held[device] = Spool(f"{self._held_root}/{device}", max_messages=1000)
            spool.put(data)
        except SpoolError as e:
            self.stats["held_full"] += 1
            log.warning("%s/%s: cannot hold a message for the device (%s): left unacknowledged at the broker",
                        self.name, device, e)
            return False
        if not self.held[device]:
            self._retry_at[device] = time.monotonic() + RETRY_S
        self.held[device] += 1
        self.stats["held"] += 1
        return True

    def _flush_held(self) -> int:
        """Write held messages, oldest first, to the links that can take them again."""
        now = time.monotonic()
        due = [d for d, n in self.held.items() if n and self._retry_at.get(d, 0) <= now]
        return sum(self._deliver_held(device, now) for device in due)

    def _deliver_held(self, device: str, now: float) -> int:
        spool = self._held[device]
        for moved in range(BUDGET):
            got = spool.claim()
            if got is None:
                self.held[device] = 0
                return moved
            if self._link(device) is None:
                self.stats["unroutable_in"] += 1  # no longer on this bridge (after a restart)
            elif not self._deliver(device, got[1]):
                spool.nack(got[0])
                self._retry_at[device] = now + RETRY_S
                return moved
            spool.ack(got[0])
            self.held[device] -= 1
        return BUDGET

    def _deliver(self, device: str, data: bytes) -> bool:
        try:
            self.links[device].send(f"{self.name}/{device}", data)
            return True
        except errors.SpoolbusError as e:
            self.stats["link_send_failed"] += 1
            log.warning("%s/%s: cannot write to the link: %s", self.name, device, e)
            return False

    def _note_quarantined(self) -> None:
        """Count and log the files the bridge's spools quarantined (torn or foreign: never delivered)."""
        spools = [self.outbox.spool, *self._held.values(), *(s.inbox for s in self.spools)]
        for spool in spools:
            seen = self._corrupt.get(id(spool), 0)
            if spool.corrupt > seen:
                self._corrupt[id(spool)] = spool.corrupt
                self.stats["quarantined"] += spool.corrupt - seen
                log.warning("%s: quarantined %d file(s) that are not spool records, the last: %s",
                            spool.path, spool.corrupt - seen, ", ".join(spool.quarantined[-3:]))

    def _presence(self, device: str, up: bool) -> None:
        if up == (device in self.online):
            return
        (self.online.add if up else self.online.discard)(device)
        if self.registry:
            self.registry.seen(f"{self.name}/{device}", up)
        self._uplink.publish(status_topic(self.prefix, self.name, device), ONLINE if up else OFFLINE,
                             retain=True)
