"""The QEMU OTA test's application: a node on the console with the update service, and its heap figures.

The runtime is frozen into the firmware (only this app travels). The heap is measured as the house
measures it, gc.collect() then gc.mem_alloc(), between polls: the peak while the application serves its
own calls and no update has begun (its own use, the node's dedup ring filled), and the peak once an
update source has called (the update service while receiving). /flash/heap-<V>.txt holds
"own served peak_before peak_during", rewritten at each new peak, so the host reads it after the reboot.
"""

import micropython

micropython.kbd_intr(-1)  # first: 0x03 bytes inside frames are data, not Ctrl-C
import gc  # noqa: E402
import sys  # noqa: E402

import version  # noqa: E402
from spoolbus import contract, errors  # noqa: E402
from spoolbus.node import Node  # noqa: E402
from spoolbus.transport.serial import SerialTransport, StreamPort  # noqa: E402

APP = contract.Service("app", "1.0")
APP.method("version")

link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name=version.NAME)
node = Node(version.NAME, link, clock=False, dedup_size=8)
node.serve(APP, {"version": lambda: version.V})
link.open()
gc.collect()
own = gc.mem_alloc()
from spoolbus import update  # noqa: E402 - measured: what importing and serving the service adds

updater = update.serve(node, root="/flash/", deadline_s=version.DEADLINE_S)
gc.collect()
served = gc.mem_alloc()
peaks = [served, 0]


def _record():
    with open(f"/flash/heap-{version.V}.txt", "w") as f:
        f.write(f"{own} {served} {peaks[0]} {peaks[1]}")


_record()
while True:
    try:
        node.poll(200)
    except errors.LinkError:
        pass
    gc.collect()
    now = gc.mem_alloc()
    k = 0 if updater._owner is None else 1  # has an update source called yet?
    if now > peaks[k]:
        peaks[k] = now
        _record()
