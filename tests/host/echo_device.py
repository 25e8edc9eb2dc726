"""Run by MicroPython: a device serving echo.echo(x) on a serial link over its stdin and stdout.

Usage: micropython echo_device.py NAME (e.g. A/echo). Used by tests/host/test_bridge_stall.py and
bench/bench_bridge.py.
"""

import sys

from spoolbus import contract
from spoolbus.node import Node
from spoolbus.transport.serial import SerialTransport, StreamPort

NAME = sys.argv[1]
ECHO = contract.Service("echo", "1.0")
ECHO.method("echo", ("x", None))


class Echo:
    def echo(self, x):
        return x


link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name=NAME)
node = Node(NAME, link)
node.serve(ECHO, Echo())
link.open()
while True:
    node.poll(1000)  # a link event or a frame too large for the heap costs that frame only
