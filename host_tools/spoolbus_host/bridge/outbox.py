"""The bridge's outbox: messages for the broker kept in a spool while the uplink is down or behind.

They leave in order through a window of at most WINDOW publishes the broker has not acknowledged yet;
each is acked in the spool only after its PUBACK, so a bridge killed before that leaves it for the next
one (at least once: the receiving node's dedup absorbs a duplicate). Flushing never waits for the broker.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable

import paho.mqtt.client as paho
from spoolbus import cbor, errors, wire
from spoolbus.spool import Spool

WINDOW = 32  # publishes in flight from the outbox; a slow broker holds back only the outbox itself


class Outbox:
    """Spool `path` of (topic, envelope) records; each device may have at most `quota` in it."""

    def __init__(self, path: str, max_messages: int, quota: int, max_message: int):
        self.spool = Spool(path, max_messages=max_messages)
        self.backlog = len(self.spool)  # kept here: len(Spool) lists directories
        self.quota = quota
        self.max_message = max_message
        self.queued: Counter[str] = Counter()  # per device, counted from this process's start
        self._in_flight: deque[tuple[str, str, paho.MQTTMessageInfo]] = deque()  # msg id, device, info

    def put(self, device: str, topic: str, data: bytes) -> None:
        """Keep one message of `device` for `topic`; SpoolFull when the outbox is full."""
        self.spool.put(cbor.dumps([topic, data]))
        self.backlog += 1
        self.queued[device] += 1

    def flush(self, publish: Callable[[str, bytes], paho.MQTTMessageInfo], up: bool,
              stats: Counter[str]) -> int:
        """Ack what the broker acknowledged; if `up`, publish the oldest messages into the free window."""
        moved = 0
        while self._in_flight and self._in_flight[0][2].is_published():
            msg_id, device, _ = self._in_flight.popleft()
            self._done(msg_id, device)
            stats["forwarded"] += 1
            moved += 1
        while up and self.backlog and len(self._in_flight) < WINDOW:
            got = self.spool.claim()
            if got is None:
                if not self._in_flight:
                    self.backlog = 0  # resynchronised with the spool
                break
            msg_id, record = got
            try:
                topic, data = cbor.loads(record)
                env = wire.decode(data, max_size=self.max_message)
            except (errors.DecodeError, ValueError, TypeError):
                stats["outbox_corrupt"] += 1  # the spool checks records; this is belt and braces
                self._done(msg_id, "")
                continue
            device = env.src.rpartition("/")[2]  # the bridge checked src before it spooled the message
            if env.deadline is not None and env.deadline < time.time() * 1000:
                stats["expired"] += 1
                self._done(msg_id, device)
                continue
            self._in_flight.append((msg_id, device, publish(topic, data)))
            moved += 1
        return moved

    def close(self) -> None:
        self.spool.close()

    def _done(self, msg_id: str, device: str) -> None:
        self.spool.ack(msg_id)
        self.backlog -= 1
        if device:
            self.queued[device] = max(0, self.queued[device] - 1)

    def __len__(self) -> int:
        """Messages in the spool (lists its directories: a look, not a hot path)."""
        return len(self.spool)
