"""The spoolbus MQTT transport on CPython, over paho-mqtt 2.x: same topics and behaviour as MQTTTransport.

Guarantees: inbox messages are acknowledged (PUBACK) only when recv() hands them out, so the broker's
in-flight window bounds what waits in memory; status is retained online/offline with a last will, or
(presence=False, for short-lived clients) there is none: such a node leaves nothing on the broker.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Sequence

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus.errors import ticks_ms
from spoolbus.transport.mqtt import (
    ANSWER_MS,
    HEARTBEAT_MS,
    OFFLINE,
    ONLINE,
    Heartbeat,
    Presence,
    inbox_topic,
    split_topic,
    status_topic,
    topic_filter,
    who_topic,
)
from spoolbus.transport.mqtt_client import MQTTConnectionError, MQTTRefused

from spoolbus_host.mqtt.failover import Address, Failover, where


def nodelay(client: paho.Client) -> None:
    """TCP_NODELAY on the client's socket at every (re)connect: paho leaves Nagle on, and a publish
    written right after a PUBACK then waits for the broker's delayed ACK, ~40 ms a hop."""

    def on_open(client: paho.Client, userdata: object, sock: object) -> None:
        if isinstance(sock, socket.socket):  # TLS sockets too; not a websocket wrapper
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_socket_open = on_open


def retry_at(client: paho.Client, address: Address, wait_s: float) -> None:
    """From a paho callback after a failed or lost connection: paho's next attempt goes to `address`,
    `wait_s` from now. connect_async is paho's public way to change the address once connected (the
    host and port setters refuse while it reconnects); the session's queued messages stay queued."""
    client.connect_async(address[0], address[1], client.keepalive)
    client.reconnect_delay_set(wait_s, wait_s)


class PahoTransport:
    """A node named bridge/device on the broker at host:port; connects in the constructor.

    `brokers`: more (host, port) addresses of the same broker service (cluster nodes, standbys). The
    constructor tries each in turn and raises only when none accepts; a connection lost later moves
    to the next one, with the waits of mqtt/failover.py (backoff for a broker that refuses or drops it).

    `tls` turns TLS on with the keywords of paho's Client.tls_set (ca_certs, certfile, keyfile, ...);
    the broker's certificate must verify against ca_certs and name `host`.

    paho's network thread reconnects by itself; send() raises MQTTConnectionError while the link is
    down (so a caller can spool), and QoS 1 messages already handed to paho are re-sent after a reconnect.

    `presence=False`: no status, heartbeat or last will (a command that calls once and exits); the
    node still sees its peers' status. `watch="+"`: the statuses of every bridge's nodes, not only of
    its own bridge's (a rollout's view of the fleet). `tap`: one more topic filter, each of whose
    messages goes to the queue `tapped` as (topic, payload) (`spoolbus monitor`; QoS 0).

    At each connect it asks who is online among the nodes it watches; with presence it answers such
    questions and publishes its status again every `heartbeat_s` (docs/protocol.md §7, "Presence").
    """

    def __init__(self, host: str, port: int, bridge: str, device: str, prefix: str = "spoolbus",
                 qos: int = 1, user: str | None = None, password: str | None = None,
                 client_id: str | None = None, clean_session: bool = False, keepalive: int = 60,
                 timeout: float = 5.0, tls: dict | None = None, presence: bool = True,
                 watch: str | None = None, heartbeat_s: float = HEARTBEAT_MS / 1000,
                 brokers: Sequence[Address] = (), tap: str | None = None):
        self.prefix = prefix
        self._tap = tap
        self.tapped: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.bridge = bridge
        self.name = f"{bridge}/{device}"
        heartbeat_ms = int(heartbeat_s * 1000)
        self._presence = Presence(heartbeat_ms, max_nodes=1 << 20)  # a host can hold the whole fleet
        self._heartbeat = Heartbeat(heartbeat_ms)
        self._peer_filter = topic_filter(prefix, "status", watch or bridge)
        self._who = who_topic(prefix)
        self._asking = b"" if watch == "+" else (watch or bridge).encode()
        self._bridge = bridge.encode()
        self._lock = threading.Lock()  # paho's thread takes statuses in, the caller's reads them
        self._closed = threading.Event()
        self.qos = qos
        self._status = status_topic(prefix, bridge, device) if presence else None
        self._inbox = inbox_topic(prefix, bridge, device)
        self._queue: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self._connected = threading.Event()
        self._answered = threading.Event()
        self._refused: int | None = None
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"{bridge}/{device}",
                        clean_session=clean_session, protocol=paho.MQTTv311, manual_ack=True)
        if user is not None:
            c.username_pw_set(user, password)
        if tls is not None:  # keywords of paho's tls_set: ca_certs, certfile, keyfile, ...
            c.tls_set(**tls)
        if self._status:
            c.will_set(self._status, OFFLINE, qos=1, retain=True)
        c.reconnect_delay_set(0.1, 0.1)  # paho's own retries while the constructor waits; then failover's
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        nodelay(c)
        self.client = c
        self._failover = Failover([(host, port), *brokers])
        self._started = False  # until then the constructor tries the addresses, not paho's thread
        failures = []
        for _ in self._failover.brokers:
            failed = self._first_connect(keepalive, timeout)
            if failed is None:
                break
            failures.append(failed)
            self._failover.unreachable()  # to the next address; its wait is for paho's thread
        else:
            if len(failures) == 1:
                raise failures[0]
            raise MQTTConnectionError("no MQTT broker accepted the connection: "
                                             + "; ".join(map(str, failures)))
        self._started = True
        if self._status:
            threading.Thread(target=self._beating, name=f"heartbeat {self.name}", daemon=True).start()

    def _first_connect(self, keepalive: int, timeout: float) -> MQTTConnectionError | None:
        """Connect to the failover's current address and wait until subscribed: None, or why not."""
        host, port = self._failover.current
        self._answered.clear()
        self._refused = None
        try:
            self.client.connect(host, port, keepalive)
        except OSError as e:
            return MQTTConnectionError(f"cannot connect to MQTT broker {host}:{port}: {e}")
        self.client.loop_start()
        if self._answered.wait(timeout) and self._connected.is_set():
            return None
        self.client.loop_stop()
        if self._refused is not None:
            return MQTTRefused(f"MQTT broker {host}:{port} refused the connection", self._refused)
        why = "closed before CONNACK" if self._answered.is_set() else f"no CONNACK in {timeout} s"
        return MQTTConnectionError(f"MQTT broker {host}:{port}: {why} (TLS or protocol mismatch?)")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def broker(self) -> str:
        """HOST:PORT of the broker this node uses now (or tries next, while reconnecting)."""
        return where(self._failover.current)

    def send(self, dst: str, data: bytes) -> None:
        if not self._connected.is_set():
            raise MQTTConnectionError("not connected to the MQTT broker (paho is reconnecting)")
        self.client.publish(inbox_topic(self.prefix, self.bridge, dst), bytes(data), self.qos)

    def peers(self) -> list[str]:
        """The other nodes of this bridge (of every bridge with watch="+") that are online, as
        "bridge/device": their statuses, heard within the last STALE_FACTOR heartbeats."""
        with self._lock:
            return [n for n in self._presence.online(ticks_ms()) if n != self.name]

    def statuses(self) -> dict[str, bool]:
        """Every node whose status this transport has heard: whether it is online (not stale) now."""
        with self._lock:
            return self._presence.statuses(ticks_ms())

    def recv(self, timeout_ms: int = 0) -> bytes | None:
        try:
            msg = self._queue.get(timeout=timeout_ms / 1000) if timeout_ms else self._queue.get_nowait()
        except queue.Empty:
            return None
        if msg.qos:
            self.client.ack(msg.mid, msg.qos)
        return msg.payload

    def close(self) -> None:
        """Publish the retained "offline" status (if it has one) and disconnect (the will is not used)."""
        self._closed.set()
        if self._status and self._connected.is_set():
            self.client.publish(self._status, OFFLINE, qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._refused = reason_code.value
            if not self._started:  # the constructor tries the next address, or raises
                client.disconnect()
            self._answered.set()
            return  # paho's thread calls _on_disconnect next: it moves on to the next broker
        self._failover.connected()
        topics = [(self._inbox, 1), (self._peer_filter, 0)]
        topics += [(self._who, 0)] if self._status else []
        client.subscribe(topics + [(self._tap, 0)] if self._tap else topics)
        if self._status:
            client.publish(self._status, ONLINE, qos=1, retain=True)
            self._heartbeat.sent(ticks_ms())

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        client.publish(self._who, self._asking, qos=0)  # subscribed: the answers can reach us
        self._connected.set()  # only now can a message to the inbox reach this node
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        self._answered.set()  # a first connection that dies before CONNACK fails fast
        if self._started and reason_code.is_failure and not self._closed.is_set():
            wait_s = self._failover.closed()
            retry_at(client, self._failover.current, wait_s)

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        if self._started and not self._closed.is_set():  # paho's thread could not open a TCP connection
            wait_s = self._failover.unreachable()
            retry_at(client, self._failover.current, wait_s)

    def _on_message(self, client, userdata, msg):
        if self._tap and paho.topic_matches_sub(self._tap, msg.topic):
            self.tapped.put((msg.topic, msg.payload))
        if msg.topic == self._inbox:
            self._queue.put(msg)
            return
        if msg.topic == self._who:
            if msg.payload in (b"", self._bridge):
                self._heartbeat.asked()
                self._beat()
            return
        got = split_topic(self.prefix, msg.topic)
        if got is not None and got[1] == "status":
            with self._lock:
                self._presence.heard(got[0], msg.payload, ticks_ms())

    def _beat(self) -> None:
        """Publish the status again if the heartbeat, or a who-query, says it is time."""
        now = ticks_ms()
        if self._status and self._connected.is_set() and self._heartbeat.due(now):
            self._heartbeat.sent(now)
            self.client.publish(self._status, ONLINE, qos=1, retain=True)

    def _beating(self) -> None:
        """The heartbeat's thread: paho's has no timers, and a node need not be polled to be present."""
        while not self._closed.wait(ANSWER_MS / 1000):
            self._beat()
