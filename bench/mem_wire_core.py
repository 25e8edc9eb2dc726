"""MicroPython heap used by the wire core (cbor + frame + wire) compiled to .mpy, under a 32 KB heap.

Run: .venv/bin/python bench/mem_wire_core.py [--json]
Compiles runtime/spoolbus/{__init__,errors,crc,cbor,frame,wire}.py with mpy-cross into a temporary
directory, then runs `micropython -X heapsize=32k` there and reports gc.mem_alloc() deltas: after each
import (cumulative), and for one encode + decode of a ~100-byte envelope, framed and unframed
(allocated bytes, garbage included, with no collection in between; and what stays allocated after).
If the 32 KB heap runs out, it says where and measures again with 64 KB. The import budget is 16 KB
(BUDGET) for cbor+frame+wire themselves; tests/host/test_mem_wire_core.py checks it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / ".cache" / "micropython-1.25.0" / "bin"
MICROPYTHON = os.environ.get("SPOOLBUS_MICROPYTHON", str(BIN / "micropython"))
MPY_CROSS = os.environ.get("SPOOLBUS_MPY_CROSS", str(BIN / "mpy-cross"))
MODULES = ("__init__", "errors", "crc", "cbor", "frame", "wire")
BUDGET = 16 * 1024
HEAP = "32k"

_SCRIPT = """
import gc, sys
sys.path.insert(0, %(path)r)
res = {}
stage = 'start'


def measure(label, fn):
    fn()
    gc.collect()
    a = gc.mem_alloc()
    gc.disable()
    r = fn()
    b = gc.mem_alloc()
    gc.enable()
    res[label + ' allocated'] = b - a
    return r


def run():
    global stage
    gc.collect()
    base = gc.mem_alloc()
    res['heap free at start'] = gc.mem_free()
    for name in ('spoolbus', 'spoolbus.errors', 'spoolbus.crc', 'spoolbus.cbor', 'spoolbus.frame',
                 'spoolbus.wire'):
        stage = 'import ' + name
        __import__(name)
        gc.collect()
        res[stage] = gc.mem_alloc() - base
    from spoolbus import frame, wire
    stage = 'encode and decode'
    env = wire.Envelope(kind=wire.CALL, id=12345, src='sensor-1', dst='controller', method='thermo.read',
                        version='1.2', body={'unit': 'C', 'samples': [21.5, 21.7]}, deadline=1764000000000,
                        seq=[305419896, 42])
    gc.collect()
    a = gc.mem_alloc()
    dec = frame.Decoder()
    gc.collect()
    res['frame.Decoder() kept'] = gc.mem_alloc() - a
    data = measure('wire.encode', lambda: wire.encode(env))
    res['envelope bytes'] = len(data)
    measure('wire.decode', lambda: wire.decode(data))
    f = measure('frame.encode', lambda: frame.encode(data))
    measure('frame.decode', lambda: dec.feed(f))
    measure('encode+frame+deframe+decode', lambda: wire.decode(dec.feed(frame.encode(wire.encode(env)))[0]))
    gc.collect()
    res['heap free at end'] = gc.mem_free()


try:
    run()
except MemoryError:
    res['MemoryError during ' + stage] = 1
    for name in [m for m in sys.modules if m.startswith('spoolbus')]:
        del sys.modules[name]  # room to print the figures in
    gc.collect()
print(repr(res))
"""


def measure(heap: str = HEAP) -> dict[str, int]:
    with tempfile.TemporaryDirectory(prefix="spoolbus-mem-") as tmp:
        pkg = pathlib.Path(tmp) / "spoolbus"
        pkg.mkdir()
        for name in MODULES:
            src = ROOT / "runtime" / "spoolbus" / f"{name}.py"
            subprocess.run([MPY_CROSS, "-o", str(pkg / f"{name}.mpy"), "-s", f"spoolbus/{name}.py", str(src)],
                           check=True)
        # The measuring script is compiled too, so that its own code takes little of the 32 KB.
        script = pathlib.Path(tmp) / "measure_heap.py"
        script.write_text(_SCRIPT % {"path": ""})  # relative: module __file__ qstrs do not depend on $TMPDIR
        subprocess.run([MPY_CROSS, "-s", script.name, str(script)], check=True)
        script.unlink()
        out = subprocess.run(
            [MICROPYTHON, "-X", f"heapsize={heap}", "-c", "import measure_heap"],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        if out.returncode:
            raise SystemExit(f"micropython failed:\n{out.stdout}{out.stderr}")
        out = out.stdout
    return {k: int(v) for k, v in _parse(out.strip()).items()}


def _parse(text: str) -> dict:
    import ast

    return ast.literal_eval(text)


def own_import(res: dict[str, int]) -> int:
    """Heap of cbor + frame + wire themselves: on top of the package, errors and crc they share."""
    return res["import spoolbus.wire"] - res["import spoolbus.crc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    runs = {HEAP: measure(HEAP)}
    if any(k.startswith("MemoryError") for k in runs[HEAP]):
        runs["64k"] = measure("64k")  # the figures the 32 KB heap could not complete
    if args.json:
        print(json.dumps(runs))
        return
    print("MicroPython 1.25 unix port (64-bit), modules compiled with mpy-cross; gc.mem_alloc() deltas\n")
    heaps = list(runs)
    print("| measure | " + " | ".join(f"-X heapsize={h}" for h in heaps) + " |")
    print("| --- |" + " --- |" * len(heaps))
    # MicroPython's dict does not keep insertion order: list the figures in the order they were taken.
    order = ["heap free at start"] + [
        f"import spoolbus{m}" for m in ("", ".errors", ".crc", ".cbor", ".frame", ".wire")
    ]
    order += ["frame.Decoder() kept", "envelope bytes"]
    keys = list(dict.fromkeys(order + sorted(k for r in runs.values() for k in r)))
    for k in keys:
        if any(k in r for r in runs.values()):
            print(f"| {k} | " + " | ".join(str(runs[h].get(k, "")) for h in heaps) + " |")
    res = runs[heaps[-1]]
    own, total = own_import(res), res["import spoolbus.wire"]
    print(f"\nimport of cbor+frame+wire themselves: {own} B = {own / BUDGET:.2f}x the {BUDGET} B budget")
    print(f"with the package, errors and crc they import: {total} B = {total / BUDGET:.2f}x the budget")


if __name__ == "__main__":
    main()
