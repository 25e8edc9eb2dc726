"""The spoolbus MQTT transport on CPython, over paho-mqtt 2.x: same topics and behaviour as MQTTTransport.

Guarantees: inbox messages are acknowledged (PUBACK) only when recv() hands them out, so the broker's
in-flight window bounds what waits in memory; status is retained online/offline with a last will, or
(presence=False, for short-lived clients) there is none: such a node leaves nothing on the broker.
"""

from __future__ import annotations

import queue
import socket
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus import errors
from spoolbus.transport.mqtt import OFFLINE, ONLINE, inbox_topic, split_topic, status_topic, topic_filter


def nodelay(client: paho.Client) -> None:
    """TCP_NODELAY on the client's socket at every (re)connect: paho leaves Nagle on, and a publish
    written right after a PUBACK then waits for the broker's delayed ACK, ~40 ms a hop."""

    def on_open(client: paho.Client, userdata: object, sock: object) -> None:
        if isinstance(sock, socket.socket):  # TLS sockets too; not a websocket wrapper
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_socket_open = on_open


class PahoTransport:
    """A node named bridge/device on the broker at host:port; connects in the constructor.

    `tls` turns TLS on with the keywords of paho's Client.tls_set (ca_certs, certfile, keyfile, ...);
    the broker's certificate must verify against ca_certs and name `host`.

    paho's network thread reconnects by itself; send() raises MQTTConnectionError while the link is
    down (so a caller can spool), and QoS 1 messages already handed to paho are re-sent after a reconnect.

    `presence=False`: no retained status and no last will (a command that calls once and exits); the
    node still sees its peers' status. `watch="+"`: the statuses of every bridge's nodes, not only of
    its own bridge's (a rollout's view of the fleet).
    """

    def __init__(self, host: str, port: int, bridge: str, device: str, prefix: str = "spoolbus",
                 qos: int = 1, user: str | None = None, password: str | None = None,
                 client_id: str | None = None, clean_session: bool = False, keepalive: int = 60,
                 timeout: float = 5.0, tls: dict | None = None, presence: bool = True,
                 watch: str | None = None):
        self.prefix = prefix
        self.bridge = bridge
        self.name = f"{bridge}/{device}"
        self._status_of: dict[str, bool] = {}
        self._peer_filter = topic_filter(prefix, "status", watch or bridge)
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
        c.reconnect_delay_set(0.1, 2)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        nodelay(c)
        self.client = c
        try:
            c.connect(host, port, keepalive)
        except OSError as e:
            raise errors.MQTTConnectionError(f"cannot connect to MQTT broker {host}:{port}: {e}") from None
        c.loop_start()
        if not self._answered.wait(timeout) or not self._connected.is_set():
            c.loop_stop()
            if self._refused is not None:
                raise errors.MQTTRefused(f"MQTT broker {host}:{port} refused the connection",
                                         self._refused)
            why = "closed before CONNACK" if self._answered.is_set() else f"no CONNACK in {timeout} s"
            raise errors.MQTTConnectionError(f"MQTT broker {host}:{port}: {why} (TLS or protocol mismatch?)")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def send(self, dst: str, data: bytes) -> None:
        if not self._connected.is_set():
            raise errors.MQTTConnectionError("not connected to the MQTT broker (paho is reconnecting)")
        self.client.publish(inbox_topic(self.prefix, self.bridge, dst), bytes(data), self.qos)

    def peers(self) -> list[str]:
        """The other nodes of this bridge that are online ("bridge/device"), from their status topics."""
        return sorted(n for n, up in self._status_of.items() if up and n != self.name)

    def statuses(self) -> dict[str, bool]:
        """Every node whose status this transport has seen: whether it says online."""
        return dict(self._status_of)

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
        if self._status and self._connected.is_set():
            self.client.publish(self._status, OFFLINE, qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._refused = reason_code.value
            client.disconnect()
            self._answered.set()
            return
        client.subscribe([(self._inbox, 1), (self._peer_filter, 0)])
        if self._status:
            client.publish(self._status, ONLINE, qos=1, retain=True)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._connected.set()  # only now can a message to the inbox reach this node
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        self._answered.set()  # a first connection that dies before CONNACK fails fast

    def _on_message(self, client, userdata, msg):
        if msg.topic == self._inbox:
            self._queue.put(msg)
            return
        got = split_topic(self.prefix, msg.topic)
        if got is not None and got[1] == "status":
            self._status_of[got[0]] = msg.payload == ONLINE
