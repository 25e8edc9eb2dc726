"""The spoolbus transport over MQTT (MQTTClient): envelopes go to inbox topics, presence to status.

Guarantees: one node's inbox is <prefix>/<bridge>/<device>/inbox (QoS 1); its status topic holds a
retained "online", turned to "offline" by close() or by the broker's last will if the node dies.
A Node on this transport is named "bridge/device", the form peers() returns and send() accepts.
"""

from time import sleep

from spoolbus.errors import ticks_diff, ticks_ms
from spoolbus.names import check_name
from spoolbus.transport.mqtt_client import MQTTConnectionError, MQTTProtocolError

ONLINE = b"online"
OFFLINE = b"offline"
WHO = "_who"  # <prefix>/_who: where a node asks who is online (docs/protocol.md §7, "Presence")
HEARTBEAT_MS = 10000  # a node with a status publishes it again this often...
STALE_FACTOR = 3  # ...and a status not heard again for this many heartbeats is read as offline
ANSWER_MS = 1000  # a node answers who-queries at most this often


_check = check_name  # a bridge or device name every broker carries as one topic level


def base_topic(prefix, bridge, device):
    """<prefix>/<bridge>/<device>: the root of one node's topics."""
    return "%s/%s/%s" % (prefix, _check(bridge), _check(device))


def inbox_topic(prefix, bridge, dst):
    """The inbox of node `dst`, given as "device" (on `bridge`) or as "bridge/device"."""
    if "/" in dst:
        bridge, _, dst = dst.partition("/")
    return base_topic(prefix, bridge, dst) + "/inbox"


def status_topic(prefix, bridge, device):
    """The retained presence of node bridge/device: ONLINE or OFFLINE."""
    return base_topic(prefix, bridge, device) + "/status"


def topic_filter(prefix, leaf, bridge="+"):
    """The subscription to topic `leaf` ("inbox", "status", "#") of every node of `bridge` ("+": all)."""
    return "%s/%s/+/%s" % (prefix, bridge, leaf)


def who_topic(prefix):
    """Where a node asks who is online: payload a bridge name (that bridge's nodes answer) or empty (all)."""
    return prefix + "/" + WHO


def split_topic(prefix, topic):
    """(node "bridge/device", the rest: "inbox", "status", ...) of a topic under `prefix`, or None."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1:].split("/", 2)
    if len(parts) < 3 or not parts[0] or not parts[1] or not parts[2]:
        return None
    return parts[0] + "/" + parts[1], parts[2]


class Presence:
    """Who is online, from the status messages heard, read as offline once stale.

    A status counts for STALE_FACTOR heartbeats after it was last heard: a broker need not keep
    retained messages or publish last wills (a RabbitMQ cluster keeps retained messages per node and
    a dead node publishes no will for its clients), so presence rests on the heartbeats and on the
    answers to who-queries, which any MQTT 3.1.1 broker carries. At most `max_nodes` names are kept.
    """

    def __init__(self, heartbeat_ms=HEARTBEAT_MS, max_nodes=32):
        self.stale_ms = heartbeat_ms * STALE_FACTOR
        self.max_nodes = max_nodes
        self._heard = {}  # name -> (online, ticks when heard)

    def heard(self, name, payload, now):
        """Note a status message of node `name` received at ticks `now`."""
        heard = self._heard
        if name not in heard and len(heard) >= self.max_nodes:
            for old in list(heard):
                if not self._up(heard[old], now):
                    del heard[old]
                    break
            else:
                return  # full of live nodes: the newcomer waits for a place
        heard[name] = (payload == ONLINE, now)

    def online(self, now):
        """The names whose last status said online and is not stale, sorted."""
        return sorted(n for n, entry in self._heard.items() if self._up(entry, now))

    def statuses(self, now):
        """Every name heard: whether it is online now (False once its status is stale)."""
        return {n: self._up(entry, now) for n, entry in self._heard.items()}

    def _up(self, entry, now):
        return entry[0] and ticks_diff(now, entry[1]) < self.stale_ms


class Heartbeat:
    """When a node publishes its status again: every heartbeat_ms, and soon after a who-query (at
    most every ANSWER_MS, so a crowd of late joiners costs one answer)."""

    def __init__(self, heartbeat_ms=HEARTBEAT_MS):
        self.heartbeat_ms = heartbeat_ms
        self._sent = None
        self._asked = False

    def asked(self):
        self._asked = True

    def due(self, now):
        if self._sent is None:
            return True
        since = ticks_diff(now, self._sent)
        return since >= self.heartbeat_ms or (self._asked and since >= ANSWER_MS)

    def sent(self, now):
        self._sent = now
        self._asked = False


class MQTTTransport:
    """A node on MQTT through `client` (an MQTTClient, not yet connected), named bridge/device.

    send() reconnects at once when the link is down (raising MQTTConnectionError if that fails);
    Connecting tries each of the client's brokers once, from its next one. recv() retries the
    connection at most every retry_ms (or the client's backoff_ms, when that is longer: brokers that
    refused or dropped it soon after accepting it) and returns None while it is down, keeping
    the error that took the link down (lost connection, bad broker packet) in `last_error`.
    """

    def __init__(self, client, bridge, device, prefix="spoolbus", qos=1, retry_ms=1000, max_peers=32,
                 heartbeat_ms=HEARTBEAT_MS):
        self.client = client
        self.prefix = prefix
        self.base = base_topic(prefix, bridge, device)
        self.bridge = bridge
        self.name = bridge + "/" + device
        self.qos = qos
        self.retry_ms = retry_ms
        self._status = status_topic(prefix, bridge, device)
        self._inbox = inbox_topic(prefix, bridge, device)
        self._presence = Presence(heartbeat_ms, max_peers)  # the nodes of this bridge
        self._heartbeat = Heartbeat(heartbeat_ms)
        self._who = who_topic(prefix)
        self._asking = bridge.encode()  # the who-query's payload: this bridge's nodes answer it
        self._tried = ticks_ms()
        self._subscribed = False
        self.last_error = None
        client.will = (self._status, OFFLINE, 1, True)
        self._connect()

    def send(self, dst, data):
        if not self.client.connected:
            self._connect()
        self.client.publish(inbox_topic(self.prefix, self.bridge, dst), data, self.qos)

    def recv(self, timeout_ms=0):
        """The next envelope sent to this node's inbox, waiting up to timeout_ms; None if none came."""
        c = self.client
        msg = self._message()
        if msg is None:
            if not c.connected:
                wait = max(self.retry_ms, c.backoff_ms) - ticks_diff(ticks_ms(), self._tried)
                if wait > 0:
                    sleep(min(wait, timeout_ms) / 1000)  # a board loop that waits should not spin
                    return None
                try:
                    self._connect()
                except (MQTTConnectionError, MQTTProtocolError) as e:
                    self.last_error = e
                    return None
            try:
                c.poll(timeout_ms)
            except (MQTTConnectionError, MQTTProtocolError) as e:
                self.last_error = e  # the client has closed the link; the next recv() reconnects
                return None
            msg = self._message()
        self._beat()
        return msg

    def peers(self):
        """The other nodes of this bridge that are online ("bridge/device"): their statuses, heard
        within the last STALE_FACTOR heartbeats."""
        return [p for p in self._presence.online(ticks_ms()) if p != self.name]

    def close(self):
        """Publish the retained "offline" status and disconnect."""
        c = self.client
        if c.connected:
            try:
                c.publish(self._status, OFFLINE, 1, True)
                start = ticks_ms()
                while c.pending and ticks_diff(ticks_ms(), start) < c.timeout_ms:
                    c.poll(50)
            except MQTTConnectionError:
                pass
            c.disconnect()

    def _connect(self):
        self._tried = ticks_ms()
        c = self.client
        for left in range(len(c.brokers) - 1, -1, -1):  # each broker once, from the client's next one
            try:
                c.connect()
                break
            except (MQTTConnectionError, MQTTProtocolError):
                if not left:
                    raise
        if not self._subscribed:  # later reconnects restore them (MQTTClient remembers subscriptions)
            c.subscribe(self._inbox, 1)
            c.subscribe(topic_filter(self.prefix, "status", self.bridge), 0)
            c.subscribe(self._who, 0)
            self._subscribed = True
        c.publish(self._status, ONLINE, 1, True)
        self._heartbeat.sent(ticks_ms())
        c.publish(self._who, self._asking, 0)  # the peers answer: their retained statuses may not come

    def _beat(self):
        """Publish the status again when the heartbeat, or a who-query, says it is time."""
        now = ticks_ms()
        if self.client.connected and self._heartbeat.due(now):
            self._heartbeat.sent(now)
            try:
                self.client.publish(self._status, ONLINE, 1, True)
            except MQTTConnectionError as e:
                self.last_error = e

    def _message(self):
        """The next inbox payload; status messages and who-queries are taken in on the way."""
        while True:
            msg = self.client.message()
            if msg is None:
                return None
            topic, payload = msg[0], msg[1]
            if topic == self._inbox:
                return payload
            if topic == self._who:
                if not payload or payload == self._asking:
                    self._heartbeat.asked()
                continue
            got = split_topic(self.prefix, topic)
            if got is not None and got[1] == "status":
                self._presence.heard(got[0], payload, ticks_ms())
