"""The bridge: federates the devices on one host's links into an MQTT broker (issue 7).

Each device on a link is the node <bridge>/<device>: what it sends must carry that name as src (a
device speaks only as itself), goes straight to another local device when the destination is on this
bridge (broker up or down), else to the destination's inbox on the broker, through a spool outbox in
order while the uplink is down. Inbox messages are acknowledged to the broker only once written to the
device's link or, when the link cannot take them (down, full), held in a spool <outbox>.held/<device>
and written from there, in order, when it can: an acknowledged message is never lost. Presence:
retained status per device, and the bridge's own with the broker's last will.

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
from typing import Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus import auth, cbor, errors, wire
from spoolbus.spool import Spool
from spoolbus.transport.mqtt import OFFLINE, ONLINE, base_topic, inbox_topic
from spoolbus.transport.spool import SpoolTransport

from spoolbus_host.bridge.registry import Registry
from spoolbus_host.mqtt.paho import nodelay

log = logging.getLogger("spoolbus.bridge")

BRIDGE_NODE = "_bridge"  # the device name under which the bridge publishes its own status
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
    """Bridge `name` on the broker at host:port; attach() links, then step() from a loop or run()."""

    def __init__(self, name: str, host: str, port: int, outbox: str, prefix: str = "spoolbus",
                 user: str | None = None, password: str | None = None, tls: dict | None = None,
                 max_message: int = 4096, outbox_messages: int = 10000, registry: Registry | None = None,
                 keys: dict[str, bytes] | None = None, device_quota: int | None = None):
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
        self.outbox = Spool(outbox, max_messages=outbox_messages)
        self.backlog = len(self.outbox)  # messages in the outbox, kept here: len(Spool) lists directories
        # One device may have at most device_quota messages in the outbox (counted from this process's
        # start): past it, its messages are dropped (`quota`) and the others keep their room.
        self.device_quota = device_quota or max(1, outbox_messages // 10)
        self.queued: Counter[str] = Counter()
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
        self._incoming: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self._wake = threading.Event()  # set by paho's thread when a broker message arrives
        self._up = threading.Event()
        self._status = base_topic(prefix, name, BRIDGE_NODE) + "/status"
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}/{BRIDGE_NODE}", clean_session=False,
                        protocol=paho.MQTTv311, manual_ack=True)
        if user is not None:
            c.username_pw_set(user, password)
        if tls is not None:
            c.tls_set(**tls)
        c.will_set(self._status, OFFLINE, qos=1, retain=True)
        c.reconnect_delay_set(0.1, 2)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = lambda *a: self._up.clear()
        c.on_message = self._on_message
        nodelay(c)
        self.client = c
        c.connect_async(host, port, 30)
        c.loop_start()

    # ------------------------------------------------------------------ links

    def attach(self, device: str, link: Link, where: str = "") -> None:
        """Serve `device` (node <bridge>/<device>) on `link`; `where` (its port) goes to the registry."""
        base_topic(self.prefix, self.name, device)  # checks the name
        if device.startswith("."):
            raise ValueError(f"device name {device!r} may not start with '.'")  # names a held/ directory
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
        if link is None and device != BRIDGE_NODE:
            node = f"{self.name}/{device}"
            for spool in self.spools:
                if spool.has_inbox(node):
                    self.attach(device, _SpoolDevice(spool), where=spool.root)
                    return self.links[device]
        return link

    def step(self, timeout_ms: int = 2) -> int:
        """One pass: every link, the broker's inbox messages, the outbox; waits up to timeout_ms if idle.

        The idle wait bounds the latency a message from a link waits for its turn (each pass polls every
        link); a message from the broker ends the wait at once.
        """
        self._wake.clear()  # before the broker's queue is drained: what arrives after it wakes the wait
        moved = 0
        for device, link in list(self.links.items()):
            moved += self._from_link(device, link)
        for spool in self.spools:
            moved += self._from_spool(spool)
        moved += self._from_broker()
        self._ack_published()
        moved += self._flush_held()
        moved += self._flush_outbox()
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
        return self._up.is_set()

    def close(self) -> None:
        if self._up.is_set():
            for device in list(self.online):
                self._presence(device, False)
            self.client.publish(self._status, OFFLINE, qos=1, retain=True).wait_for_publish(5)
            self._ack_published()  # acknowledged in order: the earlier publishes were, too
        self.client.disconnect()
        self.client.loop_stop()
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
        for _ in range(BUDGET):
            try:
                data = link.recv(0)
            except errors.LinkError as e:  # reset or down: the device comes back by itself
                log.info("%s/%s: link %s", self.name, device, type(e).__name__)
                self._presence(device, False)
                return moved
            if data is None:
                return moved
            self._presence(device, True)
            if self.registry:
                self.registry.seen(f"{self.name}/{device}")
            self._route(device, bytes(data))
            moved += 1
        self._throttled(f"{self.name}/{device}")
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
        bridge, _, device = env.src.rpartition("/") if isinstance(env.src, str) else ("", "", "")
        link = self._link(device) if bridge == self.name else None
        if not (isinstance(link, _SpoolDevice) and link.spool is spool):
            self.stats["spoofed"] += 1
            log.warning("%s: dropped a message that claims to come from %r (no such device there)",
                        spool.root, env.src)
            return None
        self._presence(device, True)
        if self.registry:
            self.registry.seen(env.src)
        return self._forward(device, env, data)

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

    def _route(self, device: str, data: bytes) -> None:
        me = f"{self.name}/{device}"
        env = self._decode(me, data)
        if env is None:
            return
        if env.src != me:
            self.stats["spoofed"] += 1
            log.warning("%s: dropped a message that claims to come from %r", me, env.src)
            return
        self._forward(device, env, data)

    def _forward(self, device: str, env: wire.Envelope, data: bytes) -> paho.MQTTMessageInfo | None:
        """Route `env` (from local device `device`): to the bridge itself, a local device, or the broker.

        Returns the publish's info when it went straight to the broker (not yet acknowledged by it)."""
        me = f"{self.name}/{device}"
        if self.auth is not None:
            reason = self.auth.check(env)
            if reason is not None:
                self.stats[reason] += 1
                log.warning("%s: dropped a message that failed the signature check (%s)", me, reason)
                return
        dst = env.dst if isinstance(env.dst, str) else ""
        if env.kind == wire.HELLO:
            if self.registry:
                self.registry.hello(me, env.body)
            if dst in (self.name, f"{self.name}/{BRIDGE_NODE}"):
                self.stats["hellos"] += 1  # to the bridge itself (the link's peer): recorded, not forwarded
                return
        bridge, _, dev = dst.rpartition("/")
        if bridge in ("", self.name) and self._link(dev) is not None:
            if self._deliver(dev, data):  # local first: the broker is not needed
                self.stats["local"] += 1
            return
        try:
            topic = inbox_topic(self.prefix, bridge or self.name, dev)
        except ValueError:
            self.stats["bad_destination"] += 1
            log.warning("%s: dropped a message to %r (not a node name)", me, dst)
            return
        if self._up.is_set() and not self.backlog:
            info = self.client.publish(topic, data, qos=1)
            self.stats["uplink"] += 1
            return info
        if self.queued[device] >= self.device_quota:
            self.stats["quota"] += 1
            self._warn_rarely("quota", me, "%s: has %d messages in the outbox, its quota: more are dropped "
                              "(logged once a minute)", me, self.device_quota)
        else:
            try:
                self.outbox.put(cbor.dumps([topic, data]))
                self.backlog += 1
                self.queued[device] += 1
                self.stats["spooled"] += 1
            except errors.SpoolFull:
                self.stats["outbox_full"] += 1
                log.warning("%s: outbox full, message to %s dropped", me, dst)

    def _from_broker(self) -> int:
        moved = 0
        while True:
            try:
                msg = self._incoming.get_nowait()
            except queue.Empty:
                return moved
            if self._to_device(msg.topic, msg.payload):
                self.client.ack(msg.mid, msg.qos)
                moved += 1

    def _to_device(self, topic: str, payload: bytes) -> bool:
        """Write one inbox message from the broker to its device; True once the broker may forget it."""
        inbox = f"{self.prefix}/{self.name}/"
        ours = topic.startswith(inbox) and topic.endswith("/inbox")
        device = topic[len(inbox):-len("/inbox")] if ours else ""
        if not device or "/" in device:
            self.stats["bad_topic"] += 1
            log.warning("%s: message on %r dropped: not %s<device>/inbox", self.name, topic, inbox)
            return True
        if len(payload) > self.max_message:
            self.stats["oversized_in"] += 1
            log.warning("%s: message on %s dropped: %d bytes, more than %d", self.name, topic, len(payload),
                        self.max_message)
            return True
        try:
            wire.decode(payload, max_size=self.max_message)
        except errors.UnsupportedWireVersion:
            pass  # the device's node answers it with the versions it supports
        except errors.DecodeError as e:
            self.stats["malformed_in"] += 1
            log.warning("%s: malformed message on %s dropped: %s", self.name, topic, e)
            return True
        if self._link(device) is None:
            self.stats["unroutable_in"] += 1
            log.warning("%s: message on %s dropped: no such device on this bridge", self.name, topic)
            return True
        if not self.held[device] and self._deliver(device, payload):
            return True
        return self._hold(device, payload)

    def _hold(self, device: str, data: bytes) -> bool:
        """Keep `data` until `device`'s link takes it; False (not acked: the broker keeps it) if full."""
        spool = self._held.get(device)
        try:
            if spool is None:
                spool = self._held[device] = Spool(f"{self._held_root}/{device}", max_messages=1000)
            spool.put(data)
        except errors.SpoolError as e:
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

    def _flush_outbox(self, batch: int = 64) -> int:
        if not self._up.is_set() or not self.backlog:
            return 0
        moved = 0
        for _ in range(batch):
            got = self.outbox.claim()
            if got is None:
                self.backlog = 0
                break
            msg_id, record = got
            try:
                topic, data = cbor.loads(record)
                env = wire.decode(data, max_size=self.max_message)
            except (errors.DecodeError, ValueError, TypeError):
                self.stats["outbox_corrupt"] += 1  # the spool checks records; this is belt and braces
                self.outbox.ack(msg_id)
                self.backlog -= 1
                continue
            device = env.src.rpartition("/")[2]  # the bridge checked src before it spooled the message
            if env.deadline is not None and env.deadline < time.time() * 1000:
                self.stats["expired"] += 1
                self.outbox.ack(msg_id)
                self.backlog -= 1
                self.queued[device] = max(0, self.queued[device] - 1)
                continue
            info = self.client.publish(topic, data, qos=1)
            info.wait_for_publish(5)
            if not info.is_published():
                self.outbox.nack(msg_id)  # the uplink went away again: keep it, in order
                break
            self.outbox.ack(msg_id)  # only after the broker's PUBACK
            self.backlog -= 1
            self.queued[device] = max(0, self.queued[device] - 1)
            self.stats["forwarded"] += 1
            moved += 1
        return moved

    def _presence(self, device: str, up: bool) -> None:
        if up == (device in self.online):
            return
        (self.online.add if up else self.online.discard)(device)
        if self.registry:
            self.registry.seen(f"{self.name}/{device}", up)
        status = base_topic(self.prefix, self.name, device) + "/status"
        self.client.publish(status, ONLINE if up else OFFLINE, qos=1, retain=True)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self._incoming.put(msg)
        self._wake.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("%s: broker refused the bridge: %s", self.name, reason_code)
            return
        client.subscribe(f"{self.prefix}/{self.name}/+/inbox", 1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        client.publish(self._status, ONLINE, qos=1, retain=True)
        for device in self.online:
            client.publish(base_topic(self.prefix, self.name, device) + "/status", ONLINE, qos=1, retain=True)
        self._up.set()  # only now can messages to our devices reach us
