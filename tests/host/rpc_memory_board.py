"""MicroPython side of the memory test: a node serving and making CALLS calls over the spool, with the
heap sampled in the loop; the runtime is .mpy, frozen into the firmware or in a ROMFS image.

Usage: micropython -X heapsize=48k rpc_memory_board.py IMAGE|- ROOT CALLS. An image is mmap'd (through
ffi, as a board maps its ROMFS partition) so its bytecode runs in place; "-" uses the frozen runtime.
"""

import gc
import os
import sys

import ffi
import uctypes
import vfs


def mount_rom(path):
    size = os.stat(path)[6]
    libc = ffi.open("libc.so.6")
    fd = libc.func("i", "open", "si")(path, 0)
    ptr = libc.func("p", "mmap", "pLiiil")(0, size, 1, 2, fd, 0)  # PROT_READ, MAP_PRIVATE
    vfs.mount(vfs.VfsRom(uctypes.bytearray_at(ptr, size)), "/rom")
    sys.path.insert(0, "/rom")
    import spoolbus

    assert spoolbus.__file__.startswith("/rom/"), spoolbus.__file__


if sys.argv[1] != "-":
    mount_rom(sys.argv[1])
root, calls = sys.argv[2], int(sys.argv[3])

from spoolbus import contract, node  # noqa: E402
from spoolbus.transport.spool import SpoolTransport  # noqa: E402

ECHO = contract.Service("echo", "1.0").method("echo", ("x", None))
KEYS = {"board": b"board key", "host": b"host key"}
served = [0]


def echo(x):
    served[0] += 1
    return x


nd = node.Node("board", SpoolTransport(root, "board", max_messages=32), keys=KEYS, require=True,
               timeout=10, max_message=1024, dedup_size=8, max_peers=4, max_pending=2)
nd.serve(ECHO, {"echo": echo})
gc.collect()
base = gc.mem_alloc()
print("ready", base, gc.mem_free())
peak_live = base
peak_raw = 0
min_free = gc.mem_free()
for i in range(calls):
    assert nd.call("host", "echo.echo", {"x": [i, "board"]}) == [i, "board"]
    a = gc.mem_alloc()
    if a > peak_raw:
        peak_raw = a
    f = gc.mem_free()
    if f < min_free:
        min_free = f
    if i % 25 == 0:
        gc.collect()
        a = gc.mem_alloc()
        if a > peak_live:
            peak_live = a
while served[0] < calls:
    nd.poll(20)
    gc.collect()
    a = gc.mem_alloc()
    if a > peak_live:
        peak_live = a
import spoolbus  # noqa: E402

print("done from=%s heap=%d base=%d peak_live=%d peak_sampled=%d min_free=%d served=%d stats=%s"  # noqa: UP031
      % (spoolbus.__file__, gc.mem_alloc() + gc.mem_free(), base, peak_live, peak_raw, min_free, served[0],
         [(k, v) for k, v in nd.stats.items() if v]))
