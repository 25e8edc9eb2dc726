"""Spool transport: processes on one board exchange messages through inbox spools root/<node name>/.

send puts into the destination's inbox (it waits there if that node is down); recv claims the oldest
message of its own inbox and acks it as it hands it over: a node that dies before the hand-over gets
the message again on restart, one that dies after has it, never both (docs/rpc.md).
"""

import os
import time

from spoolbus import errors
from spoolbus.spool import Spool

try:
    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
    _sleep_ms = time.sleep_ms
except AttributeError:  # CPython

    def _ticks_ms():
        return int(time.monotonic() * 1000)

    def _ticks_diff(a, b):
        return a - b

    def _sleep_ms(ms):
        time.sleep(ms / 1000)


def _valid_name(name):
    """A node name is a plain directory name: letters, digits, '-', '_', '.', not starting with '.'."""
    if type(name) is not str or not name or name[0] == "." or len(name) > 64:
        return False
    for c in name:
        if not (c.isalpha() or c.isdigit() or c in "-_."):
            return False
    return True


class SpoolTransport:
    """Node `name`'s link to the other nodes under `root`; each inbox holds at most `max_messages`.

    recv(timeout_ms) polls the inbox every `poll_ms` while it waits. Handles on other nodes' inboxes
    are opened on first send and kept (at most `max_open`).
    """

    def __init__(self, root, name, max_messages=256, max_bytes=None, durable=False, poll_ms=1, max_open=8):
        if not _valid_name(name):
            raise errors.SpoolError("node name %r must be letters, digits, '-', '_', '.'" % (name,))
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
        self._inbox = Spool(root + "/" + name, max_messages, max_bytes, durable)
        self._out = {name: self._inbox}

    def send(self, dst, data):
        """Put `data` into dst's inbox; SpoolFull if it is full, SpoolError for a name that is no node's."""
        sp = self._out.get(dst)
        if sp is None:
            if not _valid_name(dst):
                raise errors.SpoolError("cannot send to %r: not a node name" % (dst,))
            if len(self._out) > self._max_open:
                for other in self._out:
                    if other != self.name:
                        self._out.pop(other).close()
                        break
            sp = Spool(self.root + "/" + dst, *self._limits)
            self._out[dst] = sp
        sp.put(data)

    def recv(self, timeout_ms=0):
        """The oldest message in this node's inbox (acked: now the caller's), or None after timeout_ms."""
        got = self._inbox.claim()
        if got is None and timeout_ms > 0:
            start = _ticks_ms()
            while got is None and _ticks_diff(_ticks_ms(), start) < timeout_ms:
                _sleep_ms(self._poll_ms)
                got = self._inbox.claim()
        if got is None:
            return None
        self._inbox.ack(got[0])
        return got[1]

    def peers(self):
        """Names of the other nodes that have an inbox under root."""
        out = []
        for entry in os.listdir(self.root):
            if entry != self.name and _valid_name(entry) and os.stat(self.root + "/" + entry)[0] & 0x4000:
                out.append(entry)
        return out

    def close(self):
        for dst in self._out:
            self._out[dst].close()
        self._out = {}
