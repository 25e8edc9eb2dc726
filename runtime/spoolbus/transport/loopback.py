"""In-memory transport: nodes in one process exchange messages through a shared Hub (tests, simulations).

Delivers every message once, in order, to the named inbox; an inbox holds at most `max_messages`.
"""

from spoolbus import errors


class Hub:
    """The shared medium: one bounded inbox (a list of bytes) per node name.

    Nodes `attach`ed to the hub run each other: when one waits on an empty inbox (e.g. in call),
    the hub polls the other attached nodes once, so a single-threaded test needs no loop of its own.
    """

    def __init__(self, max_messages=256):
        self.max_messages = max_messages
        self.inboxes = {}
        self._nodes = []
        self._depth = 0

    def attach(self, node):
        self._nodes.append(node)

    def pump(self, waiting):
        """Poll every attached node but `waiting` once; re-entered by nested calls, up to 4 deep."""
        if self._depth >= 4:
            return
        self._depth += 1
        try:
            for node in self._nodes:
                if node.name != waiting:
                    node.poll(0)
        finally:
            self._depth -= 1


class Loopback:
    """The transport of node `name` on `hub`."""

    def __init__(self, hub, name):
        self.hub = hub
        self.name = name
        self._inbox = hub.inboxes.setdefault(name, [])

    def send(self, dst, data):
        """Queue `data` in dst's inbox (created if dst has not started yet); Busy when it is full."""
        box = self.hub.inboxes.setdefault(dst, [])
        if len(box) >= self.hub.max_messages:
            raise errors.Busy("loopback inbox of %r is full (%d messages)" % (dst, len(box)))
        box.append(bytes(data))

    def recv(self, timeout_ms=0):
        """The oldest waiting message or None; when waiting, first lets the hub run the other nodes."""
        if not self._inbox and timeout_ms > 0:
            self.hub.pump(self.name)
        return self._inbox.pop(0) if self._inbox else None

    def peers(self):
        """Names of the other inboxes on the hub."""
        return [n for n in self.hub.inboxes if n != self.name]

    def close(self):
        pass
