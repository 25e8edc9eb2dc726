"""A device that logs each call it runs and casts numbered ticks upward, on a bridge's spool: what the
kill tests (a bridge killed, a broker node killed) count to prove nothing was lost or run twice."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from mpproc import MICROPYTHON, ROOT
from spoolbus import contract


def bridge_process(spool, outbox, port: int, log, more: tuple[int, ...] = ()) -> subprocess.Popen:
    """`spoolbus bridge K` serving the devices of `spool`, its output to the file `log`; `more`: the
    ports of further brokers (--broker again)."""
    brokers = [arg for p in (port, *more) for arg in ("--broker", f"127.0.0.1:{p}")]
    return subprocess.Popen([sys.executable, "-m", "spoolbus_host.cli", "bridge", "K", "--spool", str(spool),
                             "--outbox", str(outbox), *brokers],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)


DEVICE = """
import os, sys, time
from spoolbus import contract, errors
from spoolbus.node import Node
from spoolbus.transport.spool import SpoolTransport
ROOT, NAME, EXECUTED, STOP = sys.argv[1:5]
LOG = contract.Service("log", "1.0")
LOG.method("add", ("seq", int))

class Log:
    def add(self, seq):
        with open(EXECUTED, "a") as f:
            f.write("%d\\n" % seq)
        return seq

node = Node(NAME, SpoolTransport(ROOT, NAME, gateway=NAME.split("/")[0] + "/_bridge", poll_ms=2),
            dedup_size=64)
node.serve(LOG, Log())
ticks = 0
next_tick = time.ticks_ms()
while True:
    node.poll(5)
    if time.ticks_diff(time.ticks_ms(), next_tick) >= 0:
        try:
            os.stat(STOP)
            break
        except OSError:
            pass
        try:
            node.cast("host/caller", "ticks.tick", {"n": ticks})  # to the bridge's inbox on the spool
            ticks += 1
        except errors.SpoolbusError:
            pass  # the bridge's inbox is full: the same tick again next time
        next_tick = time.ticks_add(time.ticks_ms(), 20)
sys.stderr.write("SENT %d\\n" % ticks)
"""

TICKS = contract.Service("ticks", "1.0")
TICKS.method("tick", ("n", int))


class Ticks:
    def __init__(self):
        self.got: list[int] = []

    def tick(self, n: int) -> None:
        self.got.append(n)


def device_process(tmp_path, spool, executed, stop) -> subprocess.Popen:
    """The MicroPython device K/dev on `spool`: appends each log.add to `executed`, ticks until `stop`
    exists, then prints "SENT <ticks>" on stderr."""
    script = tmp_path / "device.py"
    script.write_text(textwrap.dedent(DEVICE))
    return subprocess.Popen([MICROPYTHON, str(script), str(spool), "K/dev", str(executed), str(stop)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen"))
