"""A slow uplink does not stall local traffic: the broker's PUBACKs come 3 s late (a proxy holds them)
while the bridge flushes a full outbox, and two MicroPython devices of the bridge keep calling each other.
The latencies themselves are measured in bench/bench_bridge.py (--stall); here only a generous bound."""

from __future__ import annotations

import os
import select
import subprocess
import textwrap
import threading
import time

from mpproc import MICROPYTHON, ROOT, PipePort
from spoolbus.transport.serial import SerialTransport
from spoolbus_host.bridge.gateway import Bridge
from spoolbus_host.testing.ackdelay import AckDelayProxy
from test_bridge import _Fake, cast, sink_subscriber, wait_for

SERVER = """
import sys
from spoolbus import contract, errors
from spoolbus.node import Node
from spoolbus.transport.serial import SerialTransport, StreamPort
ECHO = contract.Service("echo", "1.0")
ECHO.method("echo", ("x", int))

class Echo:
    def echo(self, x):
        return x

link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name="A/echo")
node = Node("A/echo", link)
node.serve(ECHO, Echo())
link.open()
while True:
    try:
        node.poll(1000)
    except errors.LinkError:
        pass
"""

CALLER = """
import sys, time
from spoolbus import errors
from spoolbus.node import Node
from spoolbus.transport.serial import UP, SerialTransport, StreamPort
link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name="A/caller")
node = Node("A/caller", link, retry_s=0.5)
link.open()
while link.state != UP:
    node.poll(20)
node.call("A/echo", "echo.echo", {"x": 0}, timeout=5, retries=8)  # the echo device is there
sys.stderr.write("READY\\n")
lats = []
end = time.ticks_add(time.ticks_ms(), int(sys.argv[1]))
while time.ticks_diff(end, time.ticks_ms()) > 0:
    start = time.ticks_us()
    node.call("A/echo", "echo.echo", {"x": len(lats)}, timeout=10)
    lats.append(time.ticks_diff(time.ticks_us(), start))
    node.poll(10)
sys.stderr.write("LATS %s\\n" % " ".join(str(v) for v in lats))
while True:
    node.poll(1000)
"""


def start_device(tmp_path, name: str, script: str, *args: str) -> tuple[subprocess.Popen, SerialTransport]:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(script))
    env = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen")
    proc = subprocess.Popen([MICROPYTHON, str(path), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    link = SerialTransport(PipePort(proc), name="A")
    link.open()
    return proc, link


def line(proc: subprocess.Popen, starts: str, timeout: float) -> str:
    """The device's next stderr line that starts with `starts`."""
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        if select.select([proc.stderr], [], [], 0.1)[0]:
            chunk = os.read(proc.stderr.fileno(), 1 << 16)
            assert chunk, "the device exited"
            buf += chunk
            for got in buf.split(b"\n")[:-1]:
                assert not got.startswith(b"Traceback"), buf.decode()
                if got.startswith(starts.encode()):
                    return got.decode()
    raise AssertionError(f"no {starts} line from the device in {timeout} s: {buf.decode()[-500:]}")


def test_local_calls_keep_their_latency_while_the_broker_acknowledges_3_s_late(tmp_path, mosquitto):
    proxy = AckDelayProxy("127.0.0.1", mosquitto.port, delay=3.0)  # not listening yet: the broker is "down"
    a = Bridge("A", "127.0.0.1", proxy.port, str(tmp_path / "outbox"))
    src = _Fake()
    a.attach("src", src)
    src.inbox += [cast("A/src", "B/sink", i) for i in range(120)]
    while src.inbox:
        a.step(0)
    assert a.backlog == 120  # the outage's backlog, flushed when the uplink comes back
    sub, got = sink_subscriber(mosquitto.port)
    stop = threading.Event()
    thread = threading.Thread(target=a.run, args=(stop,), daemon=True)
    procs = []
    try:
        echo, echo_link = start_device(tmp_path, "echo", SERVER)
        procs.append(echo)
        a.attach("echo", echo_link)
        thread.start()
        proxy.start()
        assert wait_for(lambda: a.uplink and got, 10)
        caller, caller_link = start_device(tmp_path, "caller", CALLER, "4000")
        procs.append(caller)
        a.attach("caller", caller_link)
        line(caller, "READY", 15)
        lats = sorted(int(v) / 1e6 for v in line(caller, "LATS", 30).split()[1:])
        p99 = lats[int(len(lats) * 0.99)]
        assert a.backlog > 0, "the outbox drained: the uplink was not stalled during the calls"
        assert len(lats) > 20 and p99 < 1.0, (len(lats), lats[len(lats) // 2], p99)
        assert wait_for(lambda: len(got) == 120, 60)  # and the outbox is sent, once each, in order
        assert got == list(range(120))
    finally:
        stop.set()
        thread.join(5)
        sub.loop_stop()
        for p in procs:
            p.kill()
            p.wait()
        a.close()
        proxy.close()
