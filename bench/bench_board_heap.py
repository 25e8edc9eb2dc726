"""Heap of the 32-bit QEMU boards: free heap after boot, a node's heap (after set-up, peak live over
1,000 calls), and the smallest free heap in which it serves them, runtime frozen in, unsigned and signed.

Each board runs its deployable firmware (the production runtime frozen in, `_boot.py`'s littlefs at
/flash, the REPL free). Every trial is pasted into the raw REPL after a soft reset (a fresh heap):
it fills the heap with ballast down to a target free size, then imports the full node (errors, cbor,
frame, wire, auth, contract, node, the serial, spool and loopback transports, lock), sets up a server
and a client node on a loopback hub in that heap (Node's default table sizes) and makes the calls. A
trial fails on MemoryError, or on a call that times out (a server short of memory absorbs the error in
`poll` and counts it as an internal error). Near the boundary the outcome depends on how the ballast
splits the free heap, so the result is the free heap from which every trial passed (walked in 256-byte
steps), with the largest failing and the smallest passing trial beside it. The node's own heap is
measured once more in the whole heap, without ballast (`gc.mem_alloc()` after a `gc.collect()`, above
what the heap held before the imports; every 25 calls for the peak).

Run: .venv/bin/python bench/bench_board_heap.py [--board NAME ...] [--calls 1000]
"""

from __future__ import annotations

import argparse
import sys
import time

import serial
from spoolbus_host.boards import firmware, profiles, qemu
from spoolbus_host.deploy import rawrepl

BOARDS = ("qemu-mps2-an385", "qemu-virt-rv32")
STEP = 256  # resolution of the walk over the boundary, bytes
RUN = 8  # passes in a row that end the walk (2 KB)

AFTER_BOOT = b"import gc\ngc.collect()\nprint('heap', gc.mem_free(), gc.mem_alloc())\n"

# The node under test: the full runtime imported, a server and a client node on a loopback hub (Node's
# default table sizes), %(signed)d: HMAC keys on both; then %(calls)d calls. Indented into a try block.
NODE = b"""from spoolbus import auth, cbor, contract, errors, frame, lock, node, wire
from spoolbus.transport import loopback, serial, spool
_keys = {"srv": b"server key", "cli": b"client key"} if %(signed)d else None
_hub = loopback.Hub()
_srv = node.Node("srv", loopback.Loopback(_hub, "srv"), keys=_keys, require=bool(_keys), timeout=3)
_cli = node.Node("cli", loopback.Loopback(_hub, "cli"), keys=_keys, require=bool(_keys), timeout=3)
_srv.serve(contract.Service("echo", "1.0").method("echo", ("x", None)), {"echo": lambda x: x})
_hub.attach(_srv)
_set_up()
for _i in range(%(calls)d):
    if _cli.call("srv", "echo.echo", {"x": [_i, "cli"]}) != [_i, "cli"]:
        raise AssertionError("wrong reply")
    _each(_i)
if _srv.stats["internal_errors"] + _cli.stats["internal_errors"]:
    _result = "internal_errors"
"""

# In a heap of ample size: the node's heap after set-up and its peak live heap (gc.mem_alloc() after a
# gc.collect() every 25 calls), both above what the heap held before the imports.
USE = b"""import gc
gc.collect()
_base = gc.mem_alloc()
_use = [0, 0]
def _set_up():
    gc.collect()
    _use[0] = _use[1] = gc.mem_alloc() - _base
def _each(i):
    if i %% 25 == 0:
        gc.collect()
        _use[1] = max(_use[1], gc.mem_alloc() - _base)
_result = "ok"
try:
%(node)s
except Exception as e:
    _result = type(e).__name__
print("use", _result, _use[0], _use[1])
"""

# Ballast first, down to %(target)d bytes free, so the trial's own bytecode (compiled from this paste)
# is not counted in the free heap it reports.
TRIAL = b"""import gc
e = None  # the except clause's name, in the globals before the heap is short (a new key grows them)
gc.collect()
_ballast = []
while gc.mem_free() > %(target)d + 1100:
    _ballast.append(bytearray(1024))
gc.collect()
_n = gc.mem_free() - %(target)d - 16
if _n > 0:
    _ballast.append(bytearray(_n))
gc.collect()
_free = gc.mem_free()
def _set_up():
    pass
def _each(i):
    pass
_result = "ok"
try:
%(node)s
except Exception as e:
    _result = type(e).__name__
_ballast = None  # room to print in
gc.collect()
print("trial", _result, _free)
"""


def _script(template: bytes, calls: int, signed: bool, target: int = 0) -> bytes:
    node = NODE % {b"calls": calls, b"signed": int(signed)}
    body = b"".join(b"    " + line + b"\n" for line in node.splitlines())
    return template % {b"node": body.rstrip(b"\n"), b"target": target}


class BoardRepl:
    """A booted QEMU board's raw REPL: paste code, read what it printed, soft-reset between pastes."""

    def __init__(self, name: str) -> None:
        self.profile = profiles.load(name)
        elf, _ = firmware.ensure_built(self.profile, variant="deployable")
        self.board = qemu.boot(self.profile, elf)
        self.port = serial.Serial(self.board.port, self.profile.baudrate, timeout=300)
        rawrepl.enter(self.port, 30)

    def run(self, src: bytes) -> str:
        """Paste `src`, return its output; then a soft reset, so the next paste starts on a fresh heap."""
        rawrepl.paste(self.port, src)
        out = self.port.read_until(b"\x04")
        err = self.port.read_until(b"\x04")
        if not (out.endswith(b"\x04") and err.endswith(b"\x04")):
            raise RuntimeError(f"{self.profile.name}: the paste did not end: {out[-200:]!r} {err[-200:]!r}")
        if err.strip(b"\x04"):
            raise RuntimeError(f"{self.profile.name}: {err.decode(errors='replace')}")
        self.port.read_until(b">")
        self.port.write(b"\x04")  # raw REPL Ctrl-D: soft reset; _boot.py runs, then the raw REPL again
        if not self.port.read_until(rawrepl.BANNER).endswith(rawrepl.BANNER):
            raise RuntimeError(f"{self.profile.name}: no raw REPL after the soft reset")
        return out.rstrip(b"\x04").decode()

    def close(self) -> None:
        self.port.close()
        self.board.stop()


def _trial(repl: BoardRepl, target: int, calls: int, signed: bool) -> tuple[bool, int, float]:
    """(served every call, free heap the trial started in, seconds)."""
    started = time.monotonic()
    out = repl.run(_script(TRIAL, calls, signed, target))
    _, result, free = next(line for line in out.splitlines() if line.startswith("trial ")).split()
    return result == "ok", int(free), time.monotonic() - started


def node_use(repl: BoardRepl, calls: int, signed: bool) -> tuple[int, int]:
    """(heap after imports and set-up, peak live heap over the calls), in bytes, in an ample heap."""
    out = repl.run(_script(USE, calls, signed))
    _, result, set_up, peak = next(line for line in out.splitlines() if line.startswith("use ")).split()
    if result != "ok":
        raise RuntimeError(f"{repl.profile.name}: {calls} calls failed in the whole heap: {result}")
    return int(set_up), int(peak)


def smallest_heap(repl: BoardRepl, calls: int, signed: bool, lo: int, hi: int) -> dict:
    """The free heap from which every trial passes, the largest one that failed, the smallest that passed.

    Near the boundary the outcome depends on where the ballast splits the free heap (a block the node
    needs may not fit although enough bytes are free), so a bisection to 1 KB between a failing `lo` and
    a passing `hi` is followed by a walk upwards from 2 KB below it in steps of STEP bytes that ends
    after RUN passes in a row.
    """
    ok, _, seconds = _trial(repl, hi, calls, signed)
    if not ok:
        raise RuntimeError(f"{repl.profile.name}: {calls} calls fail even with {hi} B free")
    while hi - lo > 1024:
        mid = (lo + hi) // 2
        if _trial(repl, mid, calls, signed)[0]:
            hi = mid
        else:
            lo = mid
    passes, fails, run = [], [], []
    target = hi - 2048
    while len(run) < RUN:
        ok, free, _ = _trial(repl, target, calls, signed)
        (passes if ok else fails).append(free)
        run = run + [free] if ok else []
        target += STEP
    return {"from": run[0], "largest_failing": max(fails, default=None), "smallest_passing": min(passes),
            "trials": len(passes) + len(fails), "seconds_a_trial": round(seconds, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", action="append", choices=BOARDS, help=f"default: {', '.join(BOARDS)}")
    ap.add_argument("--calls", type=int, default=1000)
    args = ap.parse_args()
    rows = {}
    for name in args.board or BOARDS:
        repl = BoardRepl(name)
        try:
            free, alloc = (int(x) for x in repl.run(AFTER_BOOT).split()[1:3])
            row = {"heap": free + alloc, "free_after_boot": free}
            for signed in (False, True):
                row[signed] = smallest_heap(repl, args.calls, signed, 8 * 1024, 48 * 1024)
                row[signed]["set_up"], row[signed]["peak_live"] = node_use(repl, args.calls, signed)
            rows[name] = row
        finally:
            repl.close()
        print(f"{name}: {row}", file=sys.stderr)
    print(f"| board | GC heap | free after boot | signed | node set up | peak live, {args.calls:,} calls "
          "| smallest free heap: every trial passes from | largest failing | smallest passing |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        for signed in (False, True):
            r = row[signed]
            print(f"| {name} | {row['heap']:,} B | {row['free_after_boot']:,} B "
                  f"| {'yes' if signed else 'no'} | {r['set_up']:,} B | {r['peak_live']:,} B "
                  f"| **{r['from']:,} B** | {r['largest_failing'] or 0:,} B | {r['smallest_passing']:,} B |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
