"""Calls checked against a contract before they are sent: what `Node.client(dst, service)` returns.

A module of its own, imported by Node.client when first used, so that a board that only serves does not
hold its code in its heap.
"""

from spoolbus import contract, errors


class Client:
    """Calls to one destination checked against a service contract, with an oslo-style version cap.

    version_cap=None caps at the version the destination advertised in hello, if it did.
    """

    def __init__(self, node, dst, service, version_cap=None):
        self.node = node
        self.dst = dst
        self.service = service
        self.version_cap = version_cap

    def can_send_version(self, version):
        """Whether a call needing API `version` may be sent (within the contract and the cap)."""
        v = contract.parse_version(version)
        if v[0] != self.service.major or v[1] > self.service.minor:
            return False
        cap = self.version_cap or self.node.peer_version(self.dst, self.service.name)
        if cap is None:
            return True
        c = contract.parse_version(cap)
        return v[0] == c[0] and v[1] <= c[1]

    def call(self, method, args=None, timeout=None, retries=None):
        """Check, then call; returns the reply (see Node.call for the errors)."""
        args = args if args is not None else {}
        return self.node.call(self.dst, self.service.name + "." + method, args, timeout=timeout,
                              version=self._version(method, args), retries=retries)

    def cast(self, method, args=None, ttl=None):
        """Check, then cast."""
        args = args if args is not None else {}
        self.node.cast(self.dst, self.service.name + "." + method, args, version=self._version(method, args),
                       ttl=ttl)

    def _version(self, method, args):
        v = self.service.call_version(method, args)
        text = "%d.%d" % v
        if not self.can_send_version(text):
            raise errors.UnsupportedVersion("%s.%s with these arguments needs API %s; %s is capped at %s"
                                            % (self.service.name, method, text, self.dst,
                                               self.version_cap or self.node.peer_version(
                                                   self.dst, self.service.name)))
        return text
