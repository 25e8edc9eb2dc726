"""Heap of the 32-bit QEMU boards: what each module costs to import, and the free heap a node needs to
serve 1,000 calls from the host over its serial link, with the runtime frozen in and imported from .mpy.

"frozen": the board's deployable firmware (the runtime frozen in, `_boot.py`'s littlefs at /flash, the
REPL free). ".mpy": the stock firmware (nothing of spoolbus frozen in), the runtime compiled by the
project's mpy-cross and written to /flash/lib/spoolbus first, as `mip install` leaves it. Every trial is
pasted into the raw REPL after a soft reset (a fresh heap):

- imports: the modules one after another, `gc.mem_alloc()` after `gc.collect()` after each;
- a node: the application's imports (contract, node, transport.serial: what they import comes with
  them), a contract, a node on the console UART serving it (Node's defaults), then 1,000 calls of
  `echo.echo` made by a CPython node on the host, "signed" with HMAC keys on both ends. "Set up" and
  "peak live" are measured in the whole heap, above what it held before the imports (every 25 calls
  for the peak). The smallest free heap fills the heap with ballast down to a target first: a trial
  fails on MemoryError or on a call that does not come back. Near the boundary the outcome depends on
  how the ballast splits the free heap, so the result is the free heap from which every trial passed
  (walked in 256-byte steps), with the largest failing and the smallest passing trial beside it.

Run: .venv/bin/python bench/bench_board_heap.py [--board NAME ...] [--runtime frozen|mpy ...] [--calls N]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

import serial
from spoolbus import errors
from spoolbus.node import Node
from spoolbus.transport.serial import UP, SerialTransport
from spoolbus_host.boards import firmware, profiles, qemu
from spoolbus_host.deploy import build, rawrepl
from spoolbus_host.serialport import PySerialPort

BOARDS = ("qemu-mps2-an385", "qemu-virt-rv32")
RUNTIMES = {"frozen": "deployable", "mpy": "stock"}  # -> firmware variant
MODULES = ("errors", "cbor", "frame", "wire", "auth", "contract", "node", "transport.serial")
KEYS = {"board": b"board key 32 bytes of secret ....", "host": b"host key 32 bytes of secret ....."}
STEP = 256  # resolution of the walk over the boundary, bytes
RUN = 8  # passes in a row that end the walk (2 KB)
ENDINGS: collections.Counter = collections.Counter()  # how failed trials ended, for the report

AFTER_BOOT = b"import gc\ngc.collect()\nprint('heap', gc.mem_free(), gc.mem_alloc())\n"

IMPORTS = b"""import gc, sys
%(path)s
gc.collect()
_base = gc.mem_alloc()
for _m in %(modules)r:
    __import__("spoolbus." + _m)
    gc.collect()
    print("import", _m, gc.mem_alloc() - _base)
"""

# The node: the heap is filled down to %(target)d bytes free (0: not); %(sample)d samples the heap
# every 25 calls. The host ends the trial with `echo.done`, whose reply is the measurement. The trial's
# own globals are made, and the application's class defined, before the heap is measured: what is
# counted is the node's.
NODE = b"""import gc, micropython, sys
%(path)s
e = _svc = _keys = _link = _nd = _idle = _n = _tail = _p = select = contract = node = None
SerialTransport = StreamPort = _free = None
_use = [0, 0, 0]
class _Echo:
    def echo(self, x):
        _use[2] += 1
        if %(sample)d and _use[2] %% 25 == 0:
            gc.collect()
            _use[1] = max(_use[1], gc.mem_alloc() - _base)
        return x
    def done(self):
        _use[2] = -1
        return [_free, _use[0], _use[1]]
gc.collect()
_base = gc.mem_alloc()
_ballast = []
if %(target)d:
    while gc.mem_free() > %(target)d + 1100:
        _ballast.append(bytearray(1024))
    gc.collect()
    _n = gc.mem_free() - %(target)d - 16
    if _n > 0:
        _ballast.append(bytearray(_n))
    gc.collect()
_free = gc.mem_free()
try:
    from spoolbus import contract, node
    from spoolbus.transport.serial import SerialTransport, StreamPort
    _svc = contract.Service("echo", "1.0")
    _svc.method("echo", ("x", None))
    _svc.method("done")
    _keys = %(keys)r if %(signed)d else None
    _link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name="board")
    _nd = node.Node("board", _link, keys=_keys, require=bool(_keys))
    _nd.serve(_svc, _Echo())
    gc.collect()
    _use[0] = _use[1] = gc.mem_alloc() - _base
    micropython.kbd_intr(-1)
    _link.open()
    _idle = 0
    while _use[2] >= 0 and _idle < 50:
        _n = _use[2]
        _nd.poll(100)
        _idle = 0 if _use[2] != _n else _idle + 1
except Exception as e:
    pass
_ballast = None
gc.collect()
_tail = b""
while not _tail.endswith(b"END!"):  # the host says when it stopped reading the link
    _tail = (_tail + sys.stdin.buffer.read(1))[-4:]
print("heard")
import select
_p = select.poll()
_p.register(sys.stdin, select.POLLIN)
while _p.poll(300):  # what the host sent before it saw "heard" is not the next paste
    sys.stdin.buffer.read(1)
micropython.kbd_intr(3)
"""


def _path_line(runtime: str) -> bytes:
    return b'sys.path.insert(0, "/flash/lib")' if runtime == "mpy" else b""


class BoardRepl:
    """A booted QEMU board's raw REPL: paste code, read what it printed, soft-reset between pastes."""

    def __init__(self, name: str, runtime: str) -> None:
        self.profile = profiles.load(name)
        self.runtime = runtime
        self._boot()

    def _boot(self) -> None:
        elf, _ = firmware.ensure_built(self.profile, variant=RUNTIMES[self.runtime])
        self.board = qemu.boot(self.profile, elf)
        self.port = serial.Serial(self.board.port, self.profile.baudrate, timeout=300)
        rawrepl.enter(self.port, 30)
        if self.runtime == "mpy":
            self._write_runtime()

    def reboot(self) -> None:
        """A board that stopped answering: QEMU started again (the RAM disk is lost with it)."""
        self.close()
        self._boot()

    def _write_runtime(self) -> None:
        """The runtime's .mpy files into /flash/lib/spoolbus (the RAM disk outlives soft resets)."""
        with tempfile.TemporaryDirectory() as app:
            (Path(app) / "main.py").write_text("")
            tree = build.build(Path(app))
        self.run(
            b"import os\nfor d in ('/flash/lib', '/flash/lib/spoolbus', '/flash/lib/spoolbus/transport'):\n"
            b"    try:\n        os.mkdir(d)\n    except OSError:\n        pass\n"
        )
        for rel, data in sorted(tree.files.items()):
            if not (rel.startswith("spoolbus/") and rel.endswith(".mpy")):
                continue
            for i in range(0, len(data), 2048):
                mode = "ab" if i else "wb"
                self.run(
                    b"with open(%r, %r) as f:\n    f.write(%r)\n"
                    % ("/flash/lib/" + rel, mode, data[i : i + 2048])
                )

    def start(self, src: bytes) -> None:
        rawrepl.paste(self.port, src)

    def finish(self) -> str:
        """The output of the pasted code; then a soft reset, so the next paste starts on a fresh heap."""
        out = self.port.read_until(b"\x04")
        err = self.port.read_until(b"\x04")
        if not (out.endswith(b"\x04") and err.endswith(b"\x04")):
            raise RuntimeError(f"{self.profile.name}: the paste did not end: {out[-200:]!r} {err[-200:]!r}")
        if err.strip(b"\x04"):
            raise RuntimeError(f"{self.profile.name}: {err.decode(errors='replace')}")
        self.reset()
        return out.rstrip(b"\x04").decode(errors="replace")

    def reset(self, prompt_read: bool = False) -> None:
        """After the end of a paste: Ctrl-D, a soft reset; _boot.py runs, then the raw REPL again."""
        if not prompt_read:
            self.port.read_until(b">")
        self.port.write(b"\x04")
        if not self.port.read_until(rawrepl.BANNER).endswith(rawrepl.BANNER):
            raise RuntimeError(f"{self.profile.name}: no raw REPL after the soft reset")

    def run(self, src: bytes) -> str:
        self.start(src)
        return self.finish()

    def close(self) -> None:
        self.port.close()
        self.board.stop()


def import_costs(repl: BoardRepl) -> dict[str, int]:
    """Heap held after each module's import, cumulative in MODULES order."""
    out = repl.run(IMPORTS % {b"path": _path_line(repl.runtime), b"modules": MODULES})
    return {
        m: int(n) for _, m, n in (line.split() for line in out.splitlines() if line.startswith("import "))
    }


def serve(repl: BoardRepl, calls: int, signed: bool, target: int = 0, sample: bool = False) -> list | None:
    """Run the node on the board and call it `calls` times from the host: [free, set up, peak], or None
    when a call failed (the board short of memory)."""
    repl.start(
        NODE
        % {
            b"path": _path_line(repl.runtime),
            b"target": target,
            b"sample": int(sample),
            b"signed": int(signed),
            b"keys": KEYS,
        }
    )
    repl.port.close()  # the link's own port on the same pty, until the node's loop ends
    port = PySerialPort(repl.board.port, repl.profile.baudrate)
    link = SerialTransport(port, name="host")
    host = Node("host", link, keys=KEYS if signed else None, require=signed, timeout=3.0)
    result = None
    try:
        link.open()
        deadline = time.monotonic() + 5
        while (link.state != UP or link.peer is None) and time.monotonic() < deadline:
            link.recv(50)
        for i in range(calls):
            if host.call("board", "echo.echo", {"x": [i, "host"]}) != [i, "host"]:
                raise AssertionError("wrong reply")
        result = host.call("board", "echo.done")
    except errors.RemoteError as e:
        ENDINGS[e.type] += 1
    except (errors.SpoolbusError, AssertionError) as e:
        ENDINGS["no link" if link.state != UP else type(e).__name__] += 1
    finally:
        port.close()
        repl.port.open()
    # The node's frames are the paste's output: after them its error output, 0x04 and the prompt.
    # Said again until heard: the node's last poll may still read the first one as line noise.
    repl.port.timeout = 0.5
    for _ in range(60):
        repl.port.write(b"END!")
        if repl.port.read_until(b"heard").endswith(b"heard"):
            break
    else:  # seen once in some hundred trials near the boundary: the board answers nothing any more
        ENDINGS["board stopped answering (rebooted)"] += 1
        repl.reboot()
        return result
    repl.port.timeout = 300
    if not repl.port.read_until(b"\x04>").endswith(b"\x04>"):
        raise RuntimeError(f"{repl.profile.name}: the node's paste did not end")
    repl.reset(prompt_read=True)
    return result


def smallest_heap(repl: BoardRepl, calls: int, signed: bool, lo: int, hi: int) -> dict:
    """The free heap from which every trial passes, the largest one that failed, the smallest that passed:
    a bisection to 1 KB between a failing `lo` and a passing `hi`, then a walk upwards from 2 KB below it
    in STEP bytes that ends after RUN passes in a row."""
    if serve(repl, calls, signed, hi) is None:
        raise RuntimeError(f"{repl.profile.name}: {calls} calls fail even with {hi} B free")
    while hi - lo > 1024:
        mid = (lo + hi) // 2
        if serve(repl, calls, signed, mid) is not None:
            hi = mid
        else:
            lo = mid
    passes, fails, run = [], [], []
    target = hi - 2048
    while len(run) < RUN:
        got = serve(repl, calls, signed, target)
        (passes if got else fails).append(target)
        run = run + [target] if got else []
        target += STEP
    return {
        "from": run[0],
        "largest_failing": max(fails, default=None),
        "smallest_passing": min(passes),
        "trials": len(passes) + len(fails),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", action="append", choices=BOARDS, help=f"default: {', '.join(BOARDS)}")
    ap.add_argument("--runtime", action="append", choices=tuple(RUNTIMES), help="default: both")
    ap.add_argument("--calls", type=int, default=1000)
    args = ap.parse_args()
    rows, imports = [], {}
    for name in args.board or BOARDS:
        for runtime in args.runtime or tuple(RUNTIMES):
            started = time.monotonic()
            repl = BoardRepl(name, runtime)
            try:
                free, alloc = (int(x) for x in repl.run(AFTER_BOOT).split()[1:3])
                imports[name, runtime] = import_costs(repl)
                for signed in (False, True):
                    use = serve(repl, args.calls, signed, sample=True)
                    if use is None:
                        raise RuntimeError(f"{name} {runtime}: {args.calls} calls failed in the whole heap")
                    row = smallest_heap(repl, args.calls, signed, 8 * 1024, 64 * 1024)
                    row.update(
                        board=name,
                        runtime=runtime,
                        signed=signed,
                        heap=free + alloc,
                        free_after_boot=free,
                        set_up=use[1],
                        peak_live=use[2],
                    )
                    rows.append(row)
                    print(row, file=sys.stderr)
            finally:
                repl.close()
            print(f"{name} {runtime}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    print("| module (cumulative) | " + " | ".join(f"{b} {r}" for b, r in imports) + " |")
    print("|---|" + "---:|" * len(imports))
    for m in MODULES:
        print(f"| + {m} | " + " | ".join(f"{v[m]:,} B" for v in imports.values()) + " |")
    print()
    print(
        f"| board | runtime | signed | free after boot | node set up | peak live, {args.calls:,} calls "
        "| smallest free heap: every trial passes from | largest failing | smallest passing |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|"
    )
    for r in rows:
        print(
            f"| {r['board']} | {r['runtime']} | {'yes' if r['signed'] else 'no'} "
            f"| {r['free_after_boot']:,} B | {r['set_up']:,} B | {r['peak_live']:,} B | **{r['from']:,} B** "
            f"| {r['largest_failing'] or 0:,} B | {r['smallest_passing']:,} B |"
        )
    print()
    print(
        "How the failed trials ended, on the host:", ", ".join(f"{k} {v}" for k, v in ENDINGS.most_common())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
