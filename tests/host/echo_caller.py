"""Run by MicroPython: A/caller, on a serial link over its stdin and stdout, times echo.echo calls to A/echo.

Usage: micropython echo_caller.py MS [GO_FILE]. Writes READY to stderr once A/echo answers; then, when
GO_FILE exists (at once without one), calls for MS milliseconds and writes "LATS" and each call's
latency in microseconds; then serves its link until killed. Used by tests/host/test_bridge_stall.py and
bench/bench_bridge.py.
"""

import os
import sys
import time

from spoolbus.node import Node
from spoolbus.transport.serial import UP, SerialTransport, StreamPort

link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name="A/caller")
node = Node("A/caller", link, retry_s=0.5)
link.open()
while link.state != UP:
    node.poll(20)
node.call("A/echo", "echo.echo", {"x": 0}, timeout=5, retries=8)  # the echo device is there
sys.stderr.write("READY\n")
while len(sys.argv) > 2:  # until the host says go
    try:
        os.stat(sys.argv[2])
        break
    except OSError:
        node.poll(20)
lats = []
end = time.ticks_add(time.ticks_ms(), int(sys.argv[1]))
while time.ticks_diff(end, time.ticks_ms()) > 0:
    start = time.ticks_us()
    node.call("A/echo", "echo.echo", {"x": len(lats)}, timeout=10)
    lats.append(time.ticks_diff(time.ticks_us(), start))
    node.poll(5)
sys.stderr.write("LATS " + " ".join(str(v) for v in lats) + "\n")
while True:
    node.poll(1000)
