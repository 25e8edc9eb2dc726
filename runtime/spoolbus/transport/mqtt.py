"""The spoolbus transport over MQTT (MQTTClient): envelopes go to inbox topics, presence to status.

Guarantees: one node's inbox is <prefix>/<bridge>/<device>/inbox (QoS 1); its status topic holds a
retained "online", turned to "offline" by close() or by the broker's last will if the node dies.
A Node on this transport is named "bridge/device", the form peers() returns and send() accepts.
"""

from time import sleep

from spoolbus import errors
from spoolbus.errors import ticks_diff, ticks_ms

ONLINE = b"online"
OFFLINE = b"offline"


def _check(name):
    if not name or "+" in name or "#" in name or "/" in name:
        raise ValueError("%r is not a topic level (empty, or has '/' or an MQTT wildcard)" % name)
    return name


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


def split_topic(prefix, topic):
    """(node "bridge/device", the rest: "inbox", "status", ...) of a topic under `prefix`, or None."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1:].split("/", 2)
    if len(parts) < 3 or not parts[0] or not parts[1] or not parts[2]:
        return None
    return parts[0] + "/" + parts[1], parts[2]


class MQTTTransport:
    """A node on MQTT through `client` (an MQTTClient, not yet connected), named bridge/device.

    send() reconnects at once when the link is down (raising MQTTConnectionError if that fails);
    recv() retries the connection at most every retry_ms and returns None while it is down, keeping
    the error that took the link down (lost connection, bad broker packet) in `last_error`.
    """

    def __init__(self, client, bridge, device, prefix="spoolbus", qos=1, retry_ms=1000, max_peers=32):
        self.client = client
        self.prefix = prefix
        self.base = base_topic(prefix, bridge, device)
        self.bridge = bridge
        self.name = bridge + "/" + device
        self.qos = qos
        self.retry_ms = retry_ms
        self._status = status_topic(prefix, bridge, device)
        self._inbox = inbox_topic(prefix, bridge, device)
        self._peers = []  # "bridge/device" of the nodes on this bridge whose status is online
        self._max_peers = max_peers
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
                wait = self.retry_ms - ticks_diff(ticks_ms(), self._tried)
                if wait > 0:
                    sleep(min(wait, timeout_ms) / 1000)  # a board loop that waits should not spin
                    return None
                try:
                    self._connect()
                except (errors.MQTTConnectionError, errors.MQTTProtocolError) as e:
                    self.last_error = e
                    return None
            try:
                c.poll(timeout_ms)
            except (errors.MQTTConnectionError, errors.MQTTProtocolError) as e:
                self.last_error = e  # the client has closed the link; the next recv() reconnects
                return None
            msg = self._message()
        return msg

    def peers(self):
        """The other nodes of this bridge that are online ("bridge/device"), from their status topics."""
        return [p for p in self._peers if p != self.name]

    def close(self):
        """Publish the retained "offline" status and disconnect."""
        c = self.client
        if c.connected:
            try:
                c.publish(self._status, OFFLINE, 1, True)
                start = ticks_ms()
                while c.pending and ticks_diff(ticks_ms(), start) < c.timeout_ms:
                    c.poll(50)
            except errors.MQTTConnectionError:
                pass
            c.disconnect()

    def _connect(self):
        self._tried = ticks_ms()
        c = self.client
        c.connect()
        if not self._subscribed:  # later reconnects restore them (MQTTClient remembers subscriptions)
            c.subscribe(self._inbox, 1)
            c.subscribe(topic_filter(self.prefix, "status", self.bridge), 0)
            self._subscribed = True
        c.publish(self._status, ONLINE, 1, True)

    def _message(self):
        """The next inbox payload; status messages update peers() on the way."""
        while True:
            msg = self.client.message()
            if msg is None:
                return None
            topic, payload = msg[0], msg[1]
            if topic == self._inbox:
                return payload
            got = split_topic(self.prefix, topic)
            if got is not None and got[1] == "status":
                name = got[0]
                if payload == ONLINE:
                    if name not in self._peers and len(self._peers) < self._max_peers:
                        self._peers.append(name)
                elif name in self._peers:
                    self._peers.remove(name)
