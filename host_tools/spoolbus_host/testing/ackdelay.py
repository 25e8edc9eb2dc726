"""A slow broker for tests and benchmarks: a loopback TCP proxy that holds every PUBACK back.

Between an MQTT client and a real broker it passes every byte unchanged and in order, except that each
PUBACK from the broker reaches the client `delay` seconds late (still in order among the PUBACKs); what
else the broker sends (CONNACK, SUBACK, PUBLISH, PINGRESP) is not held. Nothing listens before start().
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque

PUBACK = 0x40


def _packets(buf: bytearray) -> list[bytes]:
    """Cut the complete MQTT packets off the front of `buf`."""
    out = []
    while len(buf) >= 2:
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(buf):
                return out
            length |= (buf[i] & 0x7F) << shift
            shift += 7
            i += 1
            if not buf[i - 1] & 0x80:
                break
        if len(buf) < i + length:
            return out
        out.append(bytes(buf[: i + length]))
        del buf[: i + length]
    return out


class AckDelayProxy:
    """Listens on 127.0.0.1:`port` (a free one if 0), forwards to the broker at host:broker_port."""

    def __init__(self, host: str, broker_port: int, delay: float, port: int = 0):
        self.upstream = (host, broker_port)
        self.delay = delay  # may change while it runs: it applies to the PUBACKs read from then on
        self._listen = socket.socket()
        self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listen.bind(("127.0.0.1", port))
        self.port = self._listen.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._closed = threading.Event()

    def start(self) -> AckDelayProxy:
        self._listen.listen()
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def close(self) -> None:
        self._closed.set()
        for s in [self._listen, *self._socks]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listen.accept()
                broker = socket.create_connection(self.upstream)
            except OSError:
                return
            for s in (client, broker):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socks += [client, broker]
            lock = threading.Lock()  # the two writers to the client: passed-through and held packets
            held: deque[tuple[float, bytes]] = deque()
            wake = threading.Condition()
            threading.Thread(target=self._pipe, args=(client, broker), daemon=True).start()
            threading.Thread(target=self._from_broker, args=(broker, client, lock, held, wake),
                             daemon=True).start()
            threading.Thread(target=self._release, args=(client, lock, held, wake), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        self._shut(src, dst)

    def _from_broker(self, broker: socket.socket, client: socket.socket, lock: threading.Lock,
                     held: deque, wake: threading.Condition) -> None:
        buf = bytearray()
        try:
            while data := broker.recv(65536):
                buf += data
                for pkt in _packets(buf):
                    if pkt[0] & 0xF0 == PUBACK and self.delay > 0:
                        with wake:
                            held.append((time.monotonic() + self.delay, pkt))
                            wake.notify()
                    else:
                        with lock:
                            client.sendall(pkt)
        except OSError:
            pass
        self._shut(broker, client)
        with wake:
            wake.notify()

    def _release(self, client: socket.socket, lock: threading.Lock, held: deque,
                 wake: threading.Condition) -> None:
        while not self._closed.is_set():
            with wake:
                while not held and not self._closed.is_set():
                    wake.wait(0.5)
                if not held:
                    return
                due, pkt = held[0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with wake:
                held.popleft()
            try:
                with lock:
                    client.sendall(pkt)
            except OSError:
                return

    @staticmethod
    def _shut(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
