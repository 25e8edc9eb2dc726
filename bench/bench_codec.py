"""Codec benchmark: spoolbus.cbor against cbor2 and json (CPython) and built-in json (MicroPython).

Usage: .venv/bin/python bench/bench_codec.py [--quick]
Encodes and decodes a ~90-byte envelope-like map, prints us/op per codec and the ratios against the
targets (MicroPython: portable cbor within 3x of built-in json; CPython: within 1.5x of cbor2; there
loads runs the C decoder, and the Python one is timed too), then
the MicroPython heap used by importing the codec modules (compiled with mpy-cross) and by one
encode+decode, under `micropython -X heapsize=32k`. MicroPython is timed two ways: wall time with both
codecs in one process (same heap state), and CPU time of a fresh process per operation (clean heap,
steady on a busy machine). MicroPython's json.loads is much slower in a fuller heap: compare like rows.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "runtime"))

import cbor2  # noqa: E402
from mp_timing import ENVELOPE  # noqa: E402
from spoolbus import cbor  # noqa: E402

MP_DIR = os.path.join(ROOT, ".cache", "micropython-1.25.0", "bin")
MICROPYTHON = os.environ.get("SPOOLBUS_MICROPYTHON", os.path.join(MP_DIR, "micropython"))
MPY_CROSS = os.environ.get("SPOOLBUS_MPY_CROSS", os.path.join(MP_DIR, "mpy-cross"))

ENVELOPE_SRC = repr(ENVELOPE)

# Ahead of the speed scripts: the runtime sources and mp_timing on MicroPython's path; the envelope as
# `env` and its CBOR as `data`, with string keys as `jenv` and its JSON as `js`.
_MP_PRELUDE = f"""
import sys, json
sys.path.insert(0, {os.path.join(ROOT, "runtime")!r})
sys.path.insert(0, {HERE!r})
from spoolbus import cbor
from mp_timing import ENVELOPE as env, best, str_keys
jenv = str_keys(env)
data = cbor.dumps(env)
js = json.dumps(jenv)
"""

# Run by MicroPython: best of 5 rounds of N encode/decode pairs for cbor and for json; prints one line
# of four numbers, us per operation.
_MP_SPEED = _MP_PRELUDE + """
N = %(n)d
assert cbor.loads(data) == env and json.loads(js) == jenv
print(best(cbor.dumps, env, N), best(cbor.loads, data, N), best(json.dumps, jenv, N), best(json.loads, js, N))
"""

# Run by MicroPython -X heapsize=32k from a directory of .mpy files: heap after importing each module
# (cumulative), and what one encode+decode of the envelope allocates (no collection in between).
_MP_MEMORY = """
import gc, sys
sys.path.insert(0, %(path)r)
gc.collect()
base = gc.mem_alloc()
out = []
def imp(name):
    __import__(name)
    gc.collect()
    out.append('import_%%s=%%d' %% (name, gc.mem_alloc() - base))
for name in ('spoolbus', 'spoolbus.errors', 'spoolbus.cbor'):
    imp(name)
from spoolbus import cbor
env = %(env)s
gc.collect()
a = gc.mem_alloc()
d = cbor.dumps(env)
b = gc.mem_alloc()
v = cbor.loads(d)
c = gc.mem_alloc()
out.append('encode_allocates=%%d' %% (b - a))
out.append('decode_allocates=%%d' %% (c - b))
del d, v
for name in %(more)r:
    try:
        imp(name)
    except MemoryError:
        out.append('import_%%s=MemoryError' %% name)
        break
gc.collect()
out.append('heap_free_at_end=%%d' %% gc.mem_free())
print(' '.join(out))
"""


# Run by MicroPython once per (codec, operation): N operations, timed by the parent as CPU time.
_MP_LOOP = _MP_PRELUDE + """
N = %(n)d
ops = {'cbor.dumps': (cbor.dumps, env), 'cbor.loads': (cbor.loads, data), 'json.dumps': (json.dumps, jenv),
       'json.loads': (json.loads, js)}
if %(op)r in ops:  # 'none': the process alone, subtracted from the others
    f, x = ops[%(op)r]
    for _ in range(N):
        f(x)
"""


def _cpu_seconds(cmd):
    """Best of 3 CPU times (user + system) of a child process: steadier than wall time on a busy host."""
    best = float("inf")
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        if status:
            raise RuntimeError(f"{cmd[0]} failed with status {status}")
        best = min(best, usage.ru_utime + usage.ru_stime)
    return best


def micropython_cpu(n, heap):
    """us/op for cbor.dumps, cbor.loads, json.dumps, json.loads, each in a fresh process (clean heap)."""

    def run(op):
        script = _MP_LOOP % {"op": op, "n": n}
        return _cpu_seconds([MICROPYTHON, "-X", "heapsize=" + heap, "-c", script])

    base = run("none")
    return [(run(op) - base) / n * 1e6 for op in ("cbor.dumps", "cbor.loads", "json.dumps", "json.loads")]


def _us(stmt, env, number):
    times = timeit.repeat(stmt, globals=env, number=number, repeat=7, timer=time.process_time)
    return min(times) / number * 1e6


def cpython_rows(number):
    data = cbor.dumps(ENVELOPE)
    assert data == cbor2.dumps(ENVELOPE, canonical=True)
    jenv = {str(k): v for k, v in ENVELOPE.items()}
    js = json.dumps(jenv)
    g = {"cbor": cbor, "cbor2": cbor2, "json": json, "env": ENVELOPE, "jenv": jenv, "data": data, "js": js}
    g["py_loads"] = lambda d: cbor._decode(d, 16, 4095)  # what loads runs without the C decoder
    decoder = "C decoder" if cbor._decode_c else "no C decoder built"
    rows = [
        (f"spoolbus.cbor ({decoder})", _us("cbor.dumps(env)", g, number), _us("cbor.loads(data)", g, number)),
        ("spoolbus.cbor, Python decoder", _us("cbor.dumps(env)", g, number),
         _us("py_loads(data)", g, number)),
        ("cbor2 canonical=True", _us("cbor2.dumps(env, canonical=True)", g, number),
         _us("cbor2.loads(data)", g, number)),
        ("cbor2 default", _us("cbor2.dumps(env)", g, number), _us("cbor2.loads(data)", g, number)),
        ("json (str keys)", _us("json.dumps(jenv)", g, number), _us("json.loads(js)", g, number)),
    ]
    return rows, len(data)


def micropython_speed(n, heap):
    script = _MP_SPEED % {"n": n}
    cmd = [MICROPYTHON] + (["-X", "heapsize=" + heap] if heap else []) + ["-c", script]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout.split()
    return [float(x) for x in out[:4]]


def micropython_memory():
    tmp = tempfile.mkdtemp(prefix="spoolbus-mpy-")
    try:
        pkg = os.path.join(tmp, "spoolbus")
        os.mkdir(pkg)
        more = [m for m in ("crc", "frame", "wire")
                if os.path.exists(os.path.join(ROOT, "runtime", "spoolbus", m + ".py"))]
        for name in ["__init__", "errors", "cbor"] + more:
            src = os.path.join(ROOT, "runtime", "spoolbus", name + ".py")
            out = os.path.join(pkg, name + ".mpy")
            subprocess.run([MPY_CROSS, "-o", out, "-s", f"spoolbus/{name}.py", src], check=True)
        more = ["spoolbus." + m for m in more]
        script = _MP_MEMORY % {"path": tmp, "more": more, "env": ENVELOPE_SRC}
        run = subprocess.run([MICROPYTHON, "-X", "heapsize=32k", "-c", script], capture_output=True,
                             text=True, timeout=60)
        if run.returncode:
            return {"error": (run.stdout + run.stderr).strip().splitlines()[-1]}
        return dict(kv.split("=") for kv in run.stdout.split())
    finally:
        shutil.rmtree(tmp)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (noisier)")
    args = ap.parse_args(argv)
    number = 2000 if args.quick else 20000

    rows, size = cpython_rows(number)
    print(f"CPython {sys.version.split()[0]}: envelope of {size} bytes, us/op, CPU time (best of 7)")
    print(f"  {'codec':28} {'encode':>8} {'decode':>8} {'enc+dec':>8}")
    for name, e, d in rows:
        print(f"  {name:28} {e:8.2f} {d:8.2f} {e + d:8.2f}")
    ours, python = (rows[k][1] + rows[k][2] for k in (0, 1))
    canon = rows[2][1] + rows[2][2]
    plain = rows[3][1] + rows[3][2]
    print(f"  ratio spoolbus.cbor / cbor2 canonical: {ours / canon:.2f}x (target <= 1.5x)")
    print(f"  ratio spoolbus.cbor / cbor2 default:   {ours / plain:.2f}x")
    print(f"  ratio Python decoder / cbor2 canonical: {python / canon:.2f}x (a host without a C compiler)")

    if not os.path.exists(MICROPYTHON):
        print(f"MicroPython not found at {MICROPYTHON}: run scripts/setup.sh")
        return 1
    for heap, label in ((None, "default heap (2 MB)"), ("64k", "-X heapsize=64k")):
        e, d, je, jd = micropython_speed(number // 4, heap)
        print(f"MicroPython 1.25 unix, {label}: us/op (best of 5)")
        print(f"  {'spoolbus.cbor (portable)':28} {e:8.2f} {d:8.2f} {e + d:8.2f}")
        print(f"  {'json built-in (str keys)':28} {je:8.2f} {jd:8.2f} {je + jd:8.2f}")
        print(f"  ratio portable / json: {(e + d) / (je + jd):.2f}x (target <= 3x)")

    e, d, je, jd = micropython_cpu(number, "64k")
    print("MicroPython 1.25 unix, -X heapsize=64k, CPU time, each operation in a fresh process: us/op")
    print(f"  {'spoolbus.cbor (portable)':28} {e:8.2f} {d:8.2f} {e + d:8.2f}")
    print(f"  {'json built-in (str keys)':28} {je:8.2f} {jd:8.2f} {je + jd:8.2f}")
    print(f"  ratio portable / json: {(e + d) / (je + jd):.2f}x (target <= 3x)")

    mem = micropython_memory()
    print("MicroPython heap (-X heapsize=32k, modules from .mpy), bytes; imports cumulative:")
    for k, v in mem.items():
        print(f"  {k:24} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
