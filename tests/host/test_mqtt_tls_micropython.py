"""The portable MQTT client over TLS (MicroPython's tls on Mbed TLS, CPython's ssl) against mosquitto,
and its broker list: a dead address skipped, a stopped broker left for the next one."""

from __future__ import annotations

import pathlib
import ssl
import subprocess
import threading
import time

import pytest
from mosquitto import Broker, free_port, make_certs
from mpproc import MicroPython
from spoolbus import contract, node
from spoolbus.transport import mqtt_client
from spoolbus.transport.mqtt_client import MQTTClient
from spoolbus_host.mqtt.paho import PahoTransport

PRELUDE = """
import sys, time, tls
from spoolbus import errors, node as nd
from spoolbus.transport import mqtt_client
from spoolbus.transport.mqtt_client import MQTTClient
from spoolbus.transport.mqtt import MQTTTransport
PORT = int(sys.argv[1])
CERTS = sys.argv[2]

def context(ca, cert=None):
    # MicroPython's tls takes DER bytes (its Mbed TLS is built without PEM, as on the boards).
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    ctx.load_verify_locations(open(CERTS + "/" + ca, "rb").read())
    if cert:
        ctx.load_cert_chain(open(CERTS + "/" + cert + ".der", "rb").read(),
                            open(CERTS + "/" + cert + ".key.der", "rb").read())
    return ctx
"""

ECHO = contract.Service("echo", "1.0")
ECHO.method("echo", ("x", int))


class Echo:
    def echo(self, x):
        return x * 2


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def certs(tmp_path: pathlib.Path) -> pathlib.Path:
    """The test CA with a server certificate (127.0.0.1, localhost) and a client certificate "board",
    a second CA that signed neither, and DER copies of what MicroPython loads."""
    d = tmp_path / "certs"
    make_certs(d)
    make_certs(tmp_path / "other")
    (d / "other-ca.crt").write_bytes((tmp_path / "other" / "ca.crt").read_bytes())
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", "/CN=board", "-keyout", str(d / "board.key"), "-out", str(d / "board.csr"))
    _openssl("x509", "-req", "-in", str(d / "board.csr"), "-CA", str(d / "ca.crt"),
             "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2", "-out", str(d / "board.crt"))
    for name in ("ca", "other-ca", "board"):
        _openssl("x509", "-in", str(d / f"{name}.crt"), "-outform", "der", "-out", str(d / f"{name}.der"))
    _openssl("pkey", "-in", str(d / "board.key"), "-outform", "der", "-out", str(d / "board.key.der"))
    return d


def _tls_broker(tmp_path: pathlib.Path, certs: pathlib.Path, extra: str = "") -> Broker:
    return Broker(tmp_path / "tls", tls=(certs / "ca.crt", certs / "server.crt", certs / "server.key"),
                  extra=extra).start()


class Server:
    """A CPython node serving echo.echo over TLS (PahoTransport), polled in a thread."""

    def __init__(self, port: int, certs: pathlib.Path, **tls: str):
        self.node = node.Node("gw/echo", PahoTransport("127.0.0.1", port, "gw", "echo",
                                                       tls={"ca_certs": str(certs / "ca.crt"), **tls}))
        self.node.serve(ECHO, Echo())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.node.poll(50)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.node.transport.close()


CALLER = PRELUDE + """
host = sys.argv[3]
ctx = context("ca.der", sys.argv[4] if len(sys.argv) > 4 else None)
t = MQTTTransport(MQTTClient("gw/board", host, PORT, ssl=ctx, keepalive=10), "gw", "board", retry_ms=100)
print("cipher", t.client._sock.cipher()[1])
n = nd.Node("gw/board", t)
print("echo", [n.call("gw/echo", "echo.echo", {"x": i}, timeout=5) for i in range(5)])
big = bytes(range(256)) * 12
for i in range(30):  # a burst: more than one read's room of decrypted bytes waits in the TLS socket
    t.send("board", big)
got = 0
start = time.ticks_ms()
while got < 30 and time.ticks_diff(time.ticks_ms(), start) < 10000:
    data = t.recv(100)
    if data is not None:
        assert data == big
        got += 1
print("burst", got)
t.close()
"""


def test_a_micropython_node_calls_a_cpython_node_over_tls_with_the_broker_certificate_verified(
        tmp_path, certs):
    broker = _tls_broker(tmp_path, certs)
    server = Server(broker.port, certs)
    try:
        # by address: the server certificate's IP subjectAltName is what Mbed TLS 3.6 checks
        mp = MicroPython(tmp_path, CALLER, broker.port, certs, "127.0.0.1")
        try:
            assert mp.expect("cipher", 15) == "TLSv1.2"
            assert mp.expect("echo") == "[0, 2, 4, 6, 8]"
            assert mp.expect("burst") == "30"
            assert mp.wait() == 0
        finally:
            mp.kill()
    finally:
        server.close()
        broker.stop()


def test_a_broker_that_requires_client_certificates_takes_the_board_with_one_and_refuses_it_without(
        tmp_path, certs):
    broker = _tls_broker(tmp_path, certs, "require_certificate true")
    server = Server(broker.port, certs, certfile=str(certs / "board.crt"), keyfile=str(certs / "board.key"))
    try:
        mp = MicroPython(tmp_path, CALLER, broker.port, certs, "localhost", "board")
        try:
            assert mp.expect("echo", 15) == "[0, 2, 4, 6, 8]"
            assert mp.expect("burst") == "30"
            assert mp.wait() == 0
        finally:
            mp.kill()
        without = MicroPython(tmp_path, PRELUDE + """
try:
    MQTTClient("gw/anon", "127.0.0.1", PORT, ssl=context("ca.der")).connect()
    print("error none")
except mqtt_client.MQTTConnectionError as e:
    print("error", e)
""", broker.port, certs)
        line = without.expect("error", 15)
        assert line.startswith(f"TLS with MQTT broker 127.0.0.1:{broker.port} failed: ") and "\n" not in line
        assert "client certificate" in line, line
        assert without.wait() == 0
    finally:
        server.close()
        broker.stop()


def test_a_broker_certificate_from_another_ca_is_refused_with_one_line_on_micropython_and_cpython(
        tmp_path, certs):
    broker = _tls_broker(tmp_path, certs)
    try:
        mp = MicroPython(tmp_path, PRELUDE + """
c = MQTTClient("gw/board", "127.0.0.1", PORT, ssl=context("other-ca.der"))
try:
    c.connect()
except mqtt_client.MQTTConnectionError as e:
    print("error", e)
print("backoff", c.backoff_ms)
""", broker.port, certs)
        failed = f"TLS with MQTT broker 127.0.0.1:{broker.port} failed: certificate verify failed: "
        assert mp.expect("error", 15) == failed + "The certificate is not correctly signed by the trusted CA"
        assert 250 <= int(mp.expect("backoff")) <= 500  # TCP, then a failure: pause first
        assert mp.wait() == 0

        ctx = ssl.create_default_context(cafile=str(certs / "other-ca.crt"))
        with pytest.raises(mqtt_client.MQTTConnectionError) as e:
            MQTTClient("gw/cpython", "127.0.0.1", broker.port, ssl=ctx).connect()
        assert str(e.value).startswith(failed) and "\n" not in str(e.value)  # OpenSSL's reason follows
    finally:
        broker.stop()


def test_the_portable_client_on_cpython_round_trips_a_burst_over_tls(tmp_path, certs):
    broker = _tls_broker(tmp_path, certs)
    try:
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        c = MQTTClient("cpython-tls", "127.0.0.1", broker.port, ssl=ctx, max_packet=4096)
        c.connect()
        c.subscribe("burst/t", 1)
        big = bytes(range(256)) * 12
        for _ in range(30):
            c.publish("burst/t", big, 1)
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 30 and time.monotonic() < deadline:
            c.poll(100)
            while (msg := c.message()) is not None:
                got.append(msg[1])
        assert got == [big] * 30 and c.pending == 0
        c.disconnect()
    finally:
        broker.stop()


def test_a_transport_skips_a_dead_broker_and_moves_on_when_its_broker_stops(tmp_path):
    first = Broker(tmp_path / "first").start()
    second = Broker(tmp_path / "second").start()
    dead = free_port()
    mp = MicroPython(tmp_path, """
import sys, time
from spoolbus.transport.mqtt_client import MQTTClient
from spoolbus.transport.mqtt import MQTTTransport
dead, first, second = (int(p) for p in sys.argv[1:4])
c = MQTTClient("gw/roamer", "127.0.0.1", dead, keepalive=2, timeout_ms=1000,
               brokers=[("127.0.0.1", first), ("127.0.0.1", second)])
t = MQTTTransport(c, "gw", "roamer", retry_ms=100)
print("on", c.broker[1])
sys.stdin.readline()
start = time.ticks_ms()
while not c.connected or c.broker[1] == first:
    t.recv(50)
print("on", c.broker[1], "after", time.ticks_diff(time.ticks_ms(), start), "ms:", t.last_error)
t.send("roamer", b"still here")
while True:
    data = t.recv(100)
    if data is not None:
        break
print("got", data.decode())
t.close()
""", dead, first.port, second.port)
    try:
        assert mp.expect("on", 15) == str(first.port)
        first.stop()
        mp.send("go")
        on = mp.expect("on", 15).split()
        assert on[0] == str(second.port) and int(on[2]) < 3000, on
        assert mp.expect("got") == "still here"
        assert mp.wait() == 0
    finally:
        mp.kill()
        first.stop()
        second.stop()


def test_a_transport_backs_off_from_a_broker_that_refuses_it_and_not_from_one_that_is_down(
        tmp_path, mosquitto_auth):
    plain = Broker(tmp_path / "plain").start()
    mp = MicroPython(tmp_path, """
import sys, time
from spoolbus.transport.mqtt_client import MQTTClient
from spoolbus.transport.mqtt import MQTTTransport
plain, auth = int(sys.argv[1]), int(sys.argv[2])
c = MQTTClient("gw/picky", "127.0.0.1", plain, brokers=[("127.0.0.1", auth)], timeout_ms=1000)
t = MQTTTransport(c, "gw", "picky", retry_ms=100)
real = c.connect
tries = []  # (broker port, ms since the first try, backoff_ms after it)

def counted():
    tries.append([c.broker[1], time.ticks_ms()])
    try:
        return real()
    finally:
        tries[-1] += [c.backoff_ms, c._backoff]

c.connect = counted
print("connected")
sys.stdin.readline()
start = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), start) < 4000:
    t.recv(50)
print("tries", [(p, time.ticks_diff(at, tries[0][1]), b, full) for p, at, b, full in tries])
""", plain.port, mosquitto_auth.port)
    try:
        mp.expect("connected", 15)
        plain.stop()
        mp.send("go")
        tries = eval(mp.expect("tries", 15))  # noqa: S307 - a list of tuples printed by the test script
        refusals = [(at, pause, full) for port, at, pause, full in tries if port == mosquitto_auth.port]
        downs = [port for port, *_ in tries if port == plain.port]
        # Rounds of (refused login, TCP refused), paced by the refusals' doubling pause, not by retry_ms;
        # the first pause is already 1 s: the lost connection to `plain` had been up for less than 30 s.
        assert 3 <= len(refusals) <= 4 and len(downs) >= len(refusals) - 1, tries
        for i, (at, pause, full) in enumerate(refusals):
            assert full == 1000 << i and full // 2 <= pause <= full, tries
            if i:
                assert at - refusals[i - 1][0] >= refusals[i - 1][1], tries
        assert mp.wait() == 0
    finally:
        mp.kill()
        plain.stop()
