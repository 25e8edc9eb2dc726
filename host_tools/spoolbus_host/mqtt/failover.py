"""Which of several MQTT brokers a client connects to next, and how long it waits first; no I/O.

Guarantees: the addresses are tried in turn (round robin); a broker that takes the TCP connection and
then fails (refuses the session, closes before or within STABLE_S of CONNACK) is retried with
exponential backoff and jitter up to MAX_S, one that cannot be reached at all up to UNREACHABLE_MAX_S;
the loss of a connection that stayed up STABLE_S resets the backoff and moves on at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

FIRST_S = 0.1  # the wait after a first failure; it doubles with each failure that follows
MAX_S = 30.0  # the longest wait before a broker that accepted TCP and then failed is tried again
UNREACHABLE_MAX_S = 2.0  # the longest wait when the TCP connection itself failed (nothing listens)
JITTER = 0.5  # each wait is drawn within ±50% of the backoff: clients that lost one broker spread out
STABLE_S = 5.0  # a connection that lasted this long was a good one: its loss is news, not a failure

Address = tuple[str, int]


def where(address: Address) -> str:
    """HOST:PORT, as the logs and errors name a broker."""
    return f"{address[0]}:{address[1]}"


def address(text: str) -> Address:
    """(host, port) from HOST:PORT (or HOST, port 1883); ValueError naming the fix for anything else."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "1883"
    if not host or any(c.isspace() or c == "," for c in host) or not port.isdigit() \
            or not 0 < int(port) < 65536:
        raise ValueError(f"broker {text!r} is not HOST:PORT; give e.g. 127.0.0.1:1883")
    return host, int(port)


class Failover:
    """The broker addresses, the one in use (`current`), and the wait before each next attempt.

    The client reports what happened to its attempt at `current`: connected() at a CONNACK that
    accepted it, then closed() when that TCP connection ended (lost, refused, or dropped before any
    CONNACK), or unreachable() when no TCP connection could be made. The last two move to the next
    address and return the seconds to wait before trying it. `clock` and `rand` are injected by tests.
    """

    def __init__(self, brokers: Sequence[Address], first_s: float = FIRST_S, max_s: float = MAX_S,
                 unreachable_max_s: float = UNREACHABLE_MAX_S, jitter: float = JITTER,
                 stable_s: float = STABLE_S, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random):
        if not brokers:
            raise ValueError("no broker address; give at least one HOST:PORT")
        self.brokers: tuple[Address, ...] = tuple(brokers)
        self.index = 0
        self.failures = 0  # in a row, since the last connection that stayed up
        self._first_s, self._max_s, self._unreachable_max_s = first_s, max_s, unreachable_max_s
        self._jitter, self._stable_s = jitter, stable_s
        self._clock, self._rand = clock, rand
        self._connected_at: float | None = None

    @property
    def current(self) -> Address:
        return self.brokers[self.index]

    def connected(self) -> None:
        """`current` accepted the connection (CONNACK)."""
        self._connected_at = self._clock()

    def closed(self) -> float:
        """The connection to `current` ended: at once to the next address after a good connection,
        else after the backoff (the broker took TCP but would not keep the client)."""
        since, self._connected_at = self._connected_at, None
        if since is not None and self._clock() - since >= self._stable_s:
            self.failures = 0
            self._next()
            return 0.0
        return self._failed(self._max_s)

    def unreachable(self) -> float:
        """No TCP connection to `current` (refused, timed out, no route): the next address after the
        backoff, capped lower: trying a closed port costs the broker nothing."""
        self._connected_at = None
        return self._failed(self._unreachable_max_s)

    def _failed(self, cap: float) -> float:
        backoff = min(self._first_s * 2 ** min(self.failures, 64), cap)
        self.failures += 1
        self._next()
        return min(backoff * (1 + self._jitter * (2 * self._rand() - 1)), cap)

    def _next(self) -> None:
        self.index = (self.index + 1) % len(self.brokers)
