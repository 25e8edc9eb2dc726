"""Envelope signing: HMAC-SHA256 on hashlib.sha256 (MicroPython has no hmac), replay windows per source.

A message passes `Auth.check` only if its signature verifies in constant time under the key of its
source and its [boot nonce, counter] was not seen before; state per source is bounded.
"""

import hashlib

from spoolbus import wire

_BLOCK = 64
# Counters older than this many behind the newest are refused; 30 bits stay a small int on 32-bit ports.
WINDOW = 30
_MASK = (1 << WINDOW) - 1
_RETIRED = 2  # earlier boot nonces remembered per source, so their messages cannot be replayed

# Reasons `Auth.check` gives for refusing a message (the node counts them under these names).
FORGED = "forged"
UNSIGNED = "unsigned"
UNKNOWN_KEY = "unknown_key"
REPLAYED = "replayed"


class Key:
    """One HMAC-SHA256 key with its padded inner and outer blocks computed once."""

    def __init__(self, key):
        if isinstance(key, str):
            key = key.encode()
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = bytes(key) + bytes(_BLOCK - len(key))
        self._inner = bytes(b ^ 0x36 for b in key)
        self._outer = bytes(b ^ 0x5C for b in key)

    def mac(self, data):
        """HMAC-SHA256 of `data` (RFC 2104): two fresh hashes, as MicroPython's sha256 has no copy()."""
        h = hashlib.sha256(self._inner)
        h.update(data)
        inner = h.digest()
        h = hashlib.sha256(self._outer)
        h.update(inner)
        return h.digest()


def hmac_sha256(key, data):
    """HMAC-SHA256 of `data` under `key` (bytes or str)."""
    return Key(key).mac(data)


def equal(a, b):
    """Compare two byte strings in time that depends only on their length."""
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


class Auth:
    """Signs what a node sends and checks what it receives.

    `keys` maps node names to keys (the node's own and its peers'). A message from a source whose
    key is known must be signed; with `require` every message must be, from a known source.
    """

    def __init__(self, name, keys=None, require=False, max_sources=16):
        keys = keys or {}
        self._keys = {}
        for src in keys:
            self._keys[src] = Key(keys[src])
        self._own = self._keys.get(name)
        self.require = require
        self._max_sources = max_sources
        self._windows = {}  # src -> [nonce, newest counter, bitmap, use stamp, retired nonces]
        self._stamp = 0

    def sign(self, env):
        """Set env.sig if this node has a key of its own; env.seq must already be set."""
        if self._own is not None:
            env.sig = None
            env.sig = self._own.mac(wire.signing_bytes(env))

    def check(self, env):
        """None if `env` may be processed, else the reason (FORGED, UNSIGNED, UNKNOWN_KEY, REPLAYED)."""
        key = self._keys.get(env.src)
        if env.sig is None:
            return UNSIGNED if (self.require or key is not None) else None
        if key is None:
            return UNKNOWN_KEY if self.require else None
        sig = env.sig
        env.sig = None
        ok = equal(key.mac(wire.signing_bytes(env)), sig)
        env.sig = sig
        if not ok:
            return FORGED
        return None if self._fresh(env.src, env.seq) else REPLAYED

    def _fresh(self, src, seq):
        """Record [nonce, counter] of a verified message; False if it was seen or is too old."""
        if not isinstance(seq, (list, tuple)) or len(seq) != 2:
            return False
        nonce, ctr = seq
        if not (isinstance(nonce, int) and isinstance(ctr, int)) or ctr < 0:
            return False
        self._stamp += 1
        st = self._windows.get(src)
        if st is None:
            if len(self._windows) >= self._max_sources:
                self._evict()
            self._windows[src] = [nonce, ctr, 1, self._stamp, ()]
            return True
        st[3] = self._stamp
        if st[0] != nonce:
            if nonce in st[4]:
                return False
            st[4] = ((st[0],) + st[4])[:_RETIRED]
            st[0], st[1], st[2] = nonce, ctr, 1
            return True
        top = st[1]
        if ctr > top:
            shift = ctr - top
            st[2] = ((st[2] << shift) | 1) & _MASK if shift < WINDOW else 1
            st[1] = ctr
            return True
        if top - ctr >= WINDOW:
            return False
        bit = 1 << (top - ctr)
        if st[2] & bit:
            return False
        st[2] |= bit
        return True

    def _evict(self):
        oldest = None
        for src in self._windows:
            if oldest is None or self._windows[src][3] < self._windows[oldest][3]:
                oldest = src
        del self._windows[oldest]

    def sources(self):
        """How many sources have a replay window (bounded by max_sources)."""
        return len(self._windows)
