"""Spool transport: processes on one board exchange messages through inbox spools root/<node name>/.

send puts into the destination's inbox (it waits there if that node is down); recv claims the oldest
message of its own inbox and acks it as it hands it over: a node that dies before the hand-over gets
the message again on restart, one that dies after has it, never both (docs/rpc.md).
A node name is "device" or "bridge/device" (its inbox is root/bridge~device), each part a name
check_name accepts, as on MQTT; with a `gateway`, a message to a node that has no inbox under root
goes to the gateway's inbox instead (a bridge: docs/mqtt.md).
"""

import os

from spoolbus.errors import sleep_ms as _sleep_ms
from spoolbus.errors import ticks_diff as _ticks_diff
from spoolbus.errors import ticks_ms as _ticks_ms
from spoolbus.names import check_name
from spoolbus.spool import Spool


def _check_node(name):
    """`name` if it is a node name ("part" or "bridge/part"); ValueError from check_name if not."""
    i = name.find("/") if type(name) is str else -1
    if i < 0:
        return check_name(name)
    check_name(name[:i])
    check_name(name[i + 1:])
    return name


def _valid_name(name):
    try:
        _check_node(name)
        return True
    except ValueError:
        return False


def inbox_dir(name):
    """The directory name of node `name`'s inbox: "bridge/device" -> "bridge~device"."""
    return name.replace("/", "~")


class SpoolTransport:
    """Node `name`'s link to the other nodes under `root`; each inbox holds at most `max_messages`.

    recv(timeout_ms) polls the inbox every `poll_ms` while it waits. Handles on other nodes' inboxes
    are opened on first send and kept (at most `max_open`). Without a `gateway`, a send to a node with
    no inbox makes its inbox (the message waits for that node); with one, it goes to the gateway's.
    `inbox` is this node's own Spool: recv() acks what it hands out, so a consumer that must ack only
    once it has passed a message on (the bridge, after the broker's PUBACK) claims and acks there.
    """

    def __init__(self, root, name, max_messages=256, max_bytes=None, durable=False, poll_ms=1, max_open=8,
                 gateway=None):
        _check_node(name)
        if gateway is not None:
            _check_node(gateway)
        root = root.rstrip("/")
        try:
            os.mkdir(root)
        except OSError:
            pass  # exists (or cannot be made: the Spool below says why)
        self.root = root
        self.name = name
        self._limits = (max_messages, max_bytes, durable)
        self._poll_ms = poll_ms
        self._max_open = max_open
        self.gateway = gateway
        self.inbox = Spool(root + "/" + inbox_dir(name), max_messages, max_bytes, durable)
        self._out = {name: self.inbox}

    def send(self, dst, data):
        """Put `data` into dst's inbox (or the gateway's); SpoolFull if full, ValueError for a bad name."""
        sp = self._out.get(dst)
        if sp is None:
            _check_node(dst)
            if self.gateway is not None and not self.has_inbox(dst):
                dst = self.gateway  # not cached under dst: its inbox may appear later
                sp = self._out.get(dst)
        if sp is None:
            if len(self._out) > self._max_open:
                for other in self._out:
                    if other != self.name:
                        self._out.pop(other).close()
                        break
            sp = Spool(self.root + "/" + inbox_dir(dst), *self._limits)
            self._out[dst] = sp
        sp.put(data)

    def has_inbox(self, name):
        """Whether node `name` has an inbox directory under root."""
        if not _valid_name(name):
            return False
        try:
            return bool(os.stat(self.root + "/" + inbox_dir(name))[0] & 0x4000)
        except OSError:
            return False

    def recv(self, timeout_ms=0):
        """The oldest message in this node's inbox (acked: now the caller's), or None after timeout_ms."""
        got = self.inbox.claim()
        if got is None and timeout_ms > 0:
            start = _ticks_ms()
            while got is None and _ticks_diff(_ticks_ms(), start) < timeout_ms:
                _sleep_ms(self._poll_ms)
                got = self.inbox.claim()
        if got is None:
            return None
        self.inbox.ack(got[0])
        return got[1]

    def peers(self):
        """Names of the other nodes that have an inbox under root ("bridge/device" for bridge~device)."""
        out = []
        for entry in os.listdir(self.root):
            name = entry.replace("~", "/")
            if name != self.name and _valid_name(name) and self.has_inbox(name):
                out.append(name)
        return out

    def close(self):
        for dst in self._out:
            self._out[dst].close()
        self._out = {}
