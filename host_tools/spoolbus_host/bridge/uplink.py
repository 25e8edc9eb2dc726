"""The bridge's MQTT client: connects and reconnects by itself, and says so when it cannot and why.

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
from collections.abc import Iterable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus.transport.mqtt import OFFLINE, ONLINE, status_topic, topic_filter

from spoolbus_host.mqtt.paho import nodelay

log = logging.getLogger("spoolbus.bridge")

RECONNECT_S = (0.1, 2)  # paho's reconnect delay: doubles from 0.1 s up to 2 s between attempts
SILENT_S = 10.0  # not connected for this long: say so (a broker that accepts TCP but never answers)
REPEAT_S = 60.0  # a failure that goes on is logged again at most once a minute


class Uplink:
    """Bridge `name`'s connection to the broker at host:port, started at once in paho's thread."""

    def __init__(self, name: str, node: str, host: str, port: int, prefix: str, wake: threading.Event,
                 user: str | None = None, password: str | None = None, tls: dict | None = None):
        self.name = name
        self.prefix = prefix
        self.where = f"{host}:{port}"
        self.incoming: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self._wake = wake
        self._up = threading.Event()
        self._announced = False  # the bridge's status "online" is published for this connection
        self._why = "no answer to CONNECT yet"  # the last reason the broker is not reachable
        self._down_since = time.monotonic()
        self._logged: dict[str, float] = {}
        self.status = status_topic(prefix, name, node)
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}/{node}", clean_session=False,
                        protocol=paho.MQTTv311, manual_ack=True)
        if user is not None:
            c.username_pw_set(user, password)
        if tls is not None:
            c.tls_set(**tls)
        c.will_set(self.status, OFFLINE, qos=1, retain=True)
        c.reconnect_delay_set(*RECONNECT_S)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = lambda *a: wake.set()  # an acknowledgement may free the outbox's window
        nodelay(c)
        self.client = c
        c.connect_async(host, port, 30)
        c.loop_start()

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
        """From the bridge's loop: announce the bridge and its `online` devices once connected; while
        not connected for long, say so (at most once a minute)."""
        if self._up.is_set():
            if not self._announced:
                self._announced = True
                self.publish(self.status, ONLINE, retain=True)
                for device in online:
                    self.publish(status_topic(self.prefix, self.name, device), ONLINE, retain=True)
            return
        down = time.monotonic() - self._down_since
        if down >= SILENT_S:
            self._rarely("silent", "%s: not connected to the broker at %s for %.0f s (%s); retrying every "
                         "%g s at most", self.name, self.where, down, self._why, RECONNECT_S[1])

    def close(self) -> None:
        """Publish the bridge's "offline" (if it said "online") and disconnect: no will, no trace."""
        if self._up.is_set() and self._announced:
            self.publish(self.status, OFFLINE, retain=True).wait_for_publish(5)
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

    def _failed(self, why: str) -> None:
        self._why = why
        self._rarely(why, "%s: cannot connect to the broker at %s: %s; retrying every %g s at most "
                     "(logged once a minute)", self.name, self.where, why, RECONNECT_S[1])

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        # paho calls this inside its `except OSError` around the connect: the error is the current one.
        e = sys.exc_info()[1]
        self._failed(f"{type(e).__name__}: {e}" if e is not None else "connection failed")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._failed(f"the broker refused the bridge: {reason_code}")
            return
        client.subscribe(topic_filter(self.prefix, "inbox", self.name), 1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        log.info("%s: connected to the broker at %s", self.name, self.where)
        self._logged.clear()  # a new failure is news again
        self._announced = False
        self._up.set()  # only now can messages to our devices reach us
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self._up.is_set():
            self._up.clear()
            self._down_since = time.monotonic()
            self._why = f"lost the connection: {reason_code}"
            if reason_code.is_failure:  # not our own disconnect()
                log.warning("%s: lost the broker at %s (%s); reconnecting", self.name, self.where,
                            reason_code)
        elif reason_code.is_failure:
            self._failed(f"the connection closed before the bridge was connected: {reason_code}")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self.incoming.put(msg)
        self._wake.set()
