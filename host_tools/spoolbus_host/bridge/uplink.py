"""The bridge's MQTT client: connects and reconnects by itself, and says so when it cannot and why.

It knows one or more addresses of the broker service and moves among them as mqtt/failover.py says
(round robin, backoff for a broker that refuses or drops it); every loss, move and return is logged,
attempts that keep failing at most once every RETRY_LOG_S, and counted in `stats`.

Nothing here waits for the broker: publishes go to paho's queue (QoS 1 ones are re-sent by paho after a
reconnect), messages from the broker to a queue the gateway drains, and each event wakes its loop.
The bridge's retained status goes up only when the gateway announces it (it serves), never at connect.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Iterable, Sequence

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus.errors import ticks_ms
from spoolbus.transport.mqtt import (
    HEARTBEAT_MS,
    OFFLINE,
    ONLINE,
    Heartbeat,
    status_topic,
    topic_filter,
    who_topic,
)

from spoolbus_host.mqtt.failover import STABLE_S, Address, Failover, where
from spoolbus_host.mqtt.paho import nodelay, retry_at

log = logging.getLogger("spoolbus.bridge")

RETRY_LOG_S = 5.0  # failed attempts (and connections that did not last) are logged at most this often
SILENT_S = 10.0  # not connected for this long: say so (a broker that accepts TCP but never answers)
REPEAT_S = 60.0  # ...and again at most once a minute
COUNTERS = ("uplink_down", "reconnects", "failovers", "connect_failures")  # Uplink.stats


class Uplink:
    """Bridge `name`'s connection to the broker at one of `brokers` (tried in that order first), started
    at once in paho's thread.

    `stats`: uplink_down (connections lost), reconnects (connections after the first), failovers (of
    those, to another address than the last connection's), connect_failures (attempts that failed).
    """

    def __init__(self, name: str, node: str, brokers: Sequence[Address], prefix: str,
                 wake: threading.Event, user: str | None = None, password: str | None = None,
                 tls: dict | None = None, heartbeat_ms: int = HEARTBEAT_MS):
        self.name = name
        self.prefix = prefix
        self.stats = dict.fromkeys(COUNTERS, 0)
        self.incoming: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self._wake = wake
        self._up = threading.Event()
        self._announced = False  # the bridge's status "online" is published for this connection
        self._why = "no answer to CONNECT yet"  # the last reason the broker is not reachable
        self._failover = Failover(brokers)
        self._down_since = self._up_since = time.monotonic()
        self._failures = 0  # attempts that failed since the uplink went down
        self._last: Address | None = None  # the address of the last connection
        self._refusal: str | None = None  # a CONNACK's refusal, for the disconnect that follows it
        self._flapping = False  # the last connection was lost before it had lasted STABLE_S
        self._closing = False
        self._logged: dict[str, float] = {}
        self._said_lock = threading.RLock()  # the limit on lines: paho's thread and the bridge's
        self._said_at = -RETRY_LOG_S
        self._held = 0  # lines held back by the limit since the last one said
        self._untold: tuple[str, float] | None = None  # a "connected" line held back, and its time
        self._told_up = False  # the last line said about the uplink's state was "connected"
        self.status = status_topic(prefix, name, node)
        self._who = who_topic(prefix)
        self._bridge = name.encode()
        self._heartbeat = Heartbeat(heartbeat_ms)
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}/{node}", clean_session=False,
                        protocol=paho.MQTTv311, manual_ack=True)
        if user is not None:
            c.username_pw_set(user, password)
        if tls is not None:
            c.tls_set(**tls)
        c.will_set(self.status, OFFLINE, qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = lambda *a: wake.set()  # an acknowledgement may free the outbox's window
        nodelay(c)
        self.client = c
        c.connect_async(*self._failover.current, 30)
        c.loop_start()

    @property
    def broker(self) -> str:
        """HOST:PORT of the broker in use (or tried next, while down)."""
        return where(self._failover.current)

    @property
    def up(self) -> bool:
        """Connected and subscribed to the devices' inboxes."""
        return self._up.is_set()

    def publish(self, topic: str, data: bytes, retain: bool = False) -> paho.MQTTMessageInfo:
        """QoS 1, queued by paho (and re-sent after a reconnect) until the broker acknowledges it."""
        return self.client.publish(topic, data, qos=1, retain=retain)

    def ack(self, msg: paho.MQTTMessage) -> None:
        self.client.ack(msg.mid, msg.qos)

    def check(self, online: Iterable[str]) -> None:
        """From the bridge's loop: announce the bridge and its `online` devices once connected, again
        at every heartbeat and soon after a who-query; while not connected for long, say so."""
        self._tell_untold()
        if self._up.is_set():
            now = ticks_ms()
            if not self._announced or self._heartbeat.due(now):
                self._announced = True
                self._heartbeat.sent(now)
                self.publish(self.status, ONLINE, retain=True)
                for device in online:
                    self.publish(status_topic(self.prefix, self.name, device), ONLINE, retain=True)
            return
        down = time.monotonic() - self._down_since
        if down >= SILENT_S:
            self._rarely("silent", "%s: not connected to the broker for %.0f s (%s); retrying, next at %s, "
                         "%d attempts failed so far", self.name, down, self._why, self.broker, self._failures)

    def close(self) -> None:
        """Publish the bridge's "offline" (if it said "online") and disconnect: no will, no trace."""
        if self._up.is_set() and self._announced:
            self.publish(self.status, OFFLINE, retain=True).wait_for_publish(5)
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()
        if self.client.socket() is not None:
            # paho's thread connected after disconnect() found no socket: without a DISCONNECT the
            # broker would publish the will, an "offline" of a bridge that never said "online".
            self.client.disconnect()

    def _rarely(self, what: str, *msg: object) -> None:
        now = time.monotonic()
        if now - self._logged.get(what, -REPEAT_S) >= REPEAT_S:
            self._logged[what] = now
            log.warning(*msg)

    def _say(self, level: int, msg: str, always: bool = False) -> bool:
        """Log `msg` if `always` or if the last line was RETRY_LOG_S ago; else hold it back (counted)."""
        with self._said_lock:
            now = time.monotonic()
            if not always and now - self._said_at < RETRY_LOG_S:
                self._held += 1
                return False
            if self._held:
                msg += f" ({self._held} lines held back since the last one)"
            self._said_at, self._held, self._untold = now, 0, None
        log.log(level, "%s", msg)
        return True

    def _tell_untold(self) -> None:
        """A "connected" line held back by the limit is said once the limit allows, if still connected."""
        if self._untold is None:  # nearly always: no lock taken on the bridge's every pass
            return
        with self._said_lock:
            untold, now = self._untold, time.monotonic()
            if untold is not None and self._up.is_set() and now - self._said_at >= RETRY_LOG_S:
                self._told_up = self._say(logging.INFO, f"{untold[0]} ({now - untold[1]:.1f} s ago)")

    def _next(self, wait_s: float, at: Address) -> str:
        """Where and when paho's next attempt goes, as the log says it."""
        when = "at once" if wait_s < 0.05 else f"in {wait_s:.1f} s"
        nxt = self._failover.current
        return f"retrying {when}" if nxt == at else f"moving to the broker at {where(nxt)} {when}"

    def _retry(self, why: str, wait_s: float, at: Address) -> None:
        """An attempt at `at` failed: paho's next one goes where and when the failover says."""
        self._why = why
        self._failures += 1
        self.stats["connect_failures"] += 1
        if not self._closing:
            retry_at(self.client, self._failover.current, wait_s)
        down = time.monotonic() - self._down_since
        self._say(logging.WARNING, f"{self.name}: cannot connect to the broker at {where(at)}: {why}; "
                  f"{self._next(wait_s, at)} (attempt {self._failures}, down {down:.1f} s)")

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        # paho calls this inside its `except OSError` around the connect: the error is the current one.
        e = sys.exc_info()[1]
        at = self._failover.current
        self._retry(f"{type(e).__name__}: {e}" if e is not None else "connection failed",
                    self._failover.unreachable(), at)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._refusal = f"the broker refused the bridge: {reason_code}"  # paho disconnects next
            return
        self._failover.connected()
        client.subscribe([(topic_filter(self.prefix, "inbox", self.name), 1), (self._who, 0)])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._connected()
        self._announced = False
        self._up.set()  # only now can messages to our devices reach us
        self._wake.set()

    def _connected(self) -> None:
        """Subscribed: the uplink is up. Says so, with how long it was down and where it was before."""
        now = time.monotonic()
        here = self._failover.current
        msg = f"{self.name}: connected to the broker at {where(here)}"
        if self._failures or self._last is not None:
            attempts = self._failures + 1
            msg += f" after {now - self._down_since:.1f} s down, {attempts} attempt{'s' * (attempts > 1)}"
        if self._last is not None:
            self.stats["reconnects"] += 1
            if self._last != here:
                self.stats["failovers"] += 1
                msg += f" (failover from {where(self._last)})"
        self._last, self._up_since, self._failures = here, now, 0
        self._logged.clear()  # a new failure is news again
        if self._say(logging.INFO, msg, always=not self._flapping):
            self._told_up = True
        else:
            self._untold = (msg, now)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure or self._closing:  # our own disconnect()
            self._up.clear()
            return
        at = self._failover.current
        wait_s = self._failover.closed()
        refusal, self._refusal = self._refusal, None
        if not self._up.is_set():
            why = refusal or f"the connection closed before the bridge was connected ({_how(reason_code)})"
            self._retry(why, wait_s, at)
            return
        self._up.clear()
        now = time.monotonic()
        self._down_since, self._untold = now, None
        self._flapping = now - self._up_since < STABLE_S
        self._why = f"lost the connection ({_how(reason_code)})"
        self.stats["uplink_down"] += 1
        retry_at(client, self._failover.current, wait_s)
        up = now - self._up_since
        news = self._told_up or not self._flapping  # the log says it is up, or it had been up for long
        if self._say(logging.WARNING, f"{self.name}: lost the broker at {where(at)} after {up:.1f} s up "
                     f"({_how(reason_code)}); {self._next(wait_s, at)}", always=news):
            self._told_up = False

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if msg.topic == self._who:
            if msg.payload in (b"", self._bridge):
                self._heartbeat.asked()  # answered by check(), from the bridge's loop
        else:
            self.incoming.put(msg)
        self._wake.set()


def _how(reason_code: object) -> str:
    """Why paho says a connection closed, in words: on MQTT 3.1.1 a broker sends no reason, and paho's
    "Unspecified error" means the broker (or the network) closed it."""
    return "closed by the broker or the network" if str(reason_code) == "Unspecified error" \
        else f"paho: {reason_code}"
