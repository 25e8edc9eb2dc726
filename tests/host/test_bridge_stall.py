"""A slow uplink does not stall local traffic: the broker's PUBACKs come 3 s late (a proxy holds them)
while the bridge flushes a full outbox, and two MicroPython devices of the bridge keep calling each other.
The latencies themselves are measured in bench/bench_bridge.py (--stall); here only a generous bound."""

from __future__ import annotations

import os
import select
import subprocess
import threading
import time

from mpproc import MICROPYTHON, ROOT, PipePort
from spoolbus.transport.serial import SerialTransport
from spoolbus_host.bridge.gateway import Bridge
from spoolbus_host.testing.ackdelay import AckDelayProxy
from test_bridge import _Fake, cast, sink_subscriber, wait_for


def start_device(script: str, *args: str) -> tuple[subprocess.Popen, SerialTransport]:
    """A MicroPython device running tests/host/`script`, with the host end of its serial line."""
    env = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen")
    proc = subprocess.Popen([MICROPYTHON, str(ROOT / "tests" / "host" / script), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
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
        echo, echo_link = start_device("echo_device.py", "A/echo")
        procs.append(echo)
        a.attach("echo", echo_link)
        thread.start()
        proxy.start()
        assert wait_for(lambda: a.uplink and got, 10)
        caller, caller_link = start_device("echo_caller.py", "4000")
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
