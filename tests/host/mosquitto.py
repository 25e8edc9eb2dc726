"""Brokers for tests: a real mosquitto on a free port (spoolbus_host.mqtt.broker), a test CA and
certificate for TLS, and a scripted broker that sends what no real broker would."""

from __future__ import annotations

import pathlib
import socket
import subprocess

from spoolbus_host.mqtt.broker import MOSQUITTO, Broker, free_port

__all__ = ["MOSQUITTO", "Broker", "ScriptedBroker", "free_port", "make_certs"]


def make_certs(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """A test CA and a server certificate for 127.0.0.1/localhost signed by it: (ca, cert, key)."""
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    names = ("ca.crt", "ca.key", "server.crt", "server.key", "server.csr")
    ca, ca_key, cert, key, csr = (d / n for n in names)
    ext = d / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")  # fast to generate
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=spoolbus test CA",
            "-keyout", str(ca_key), "-out", str(ca))
    openssl("req", *ec, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


class ScriptedBroker:
    """A TCP listener the test drives packet by packet, to send what no real broker would."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.conn, _ = self.sock.accept()
        self.conn.settimeout(10)

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def packet(self) -> tuple[int, bytes]:
        first = self._exact(1)[0]
        rl = shift = 0
        while True:
            b = self._exact(1)[0]
            rl |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return first, self._exact(rl)

    def handshake(self) -> bytes:
        """Accept a client, read its CONNECT, answer CONNACK accepted; returns the CONNECT body."""
        self.accept()
        first, body = self.packet()
        assert first == 0x10  # CONNECT
        self.conn.sendall(b"\x20\x02\x00\x00")
        return body

    def answer_subscribe(self) -> str:
        """Read a SUBSCRIBE, grant QoS 1 in a SUBACK; returns the topic filter."""
        first, body = self.packet()
        assert first == 0x82, hex(first)
        self.conn.sendall(b"\x90\x03" + body[:2] + b"\x01")
        return body[4:4 + int.from_bytes(body[2:4], "big")].decode()

    def close(self) -> None:
        if self.conn:
            self.conn.close()
        self.sock.close()
