"""A MicroPython node with the runtime as .mpy serves 1,000 calls and makes 1,000 calls over the spool
(signed) under a 48 KB heap without MemoryError; the heap high-water mark is printed.

Two ways to load .mpy: frozen into the firmware (bytecode in the binary, as on a board; 48 KB heap),
and a ROMFS image of mpy-cross output mmap'd on the stock unix binary (bytecode in place, but the
64-bit port's function and class objects still cost ~42 KB: 64 KB heap).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import pathlib
import re
import subprocess
import time

from spoolbus import contract, errors, node
from spoolbus.transport.spool import SpoolTransport
from spoolbus_host.boards import firmware, profiles

ROOT = pathlib.Path(__file__).resolve().parents[2]
MICROPYTHON = os.environ.get("SPOOLBUS_MICROPYTHON", str(ROOT / ".cache/micropython-1.25.0/bin/micropython"))
MPY_CROSS = os.environ.get("SPOOLBUS_MPY_CROSS", str(ROOT / ".cache/micropython-1.25.0/bin/mpy-cross"))
ROMFS_PY = ROOT / ".cache/micropython-1.25.0/src/tools/mpremote/mpremote/romfs.py"
BOARD = pathlib.Path(__file__).with_name("rpc_memory_board.py")
ECHO = contract.Service("echo", "1.0").method("echo", ("x", None))
KEYS = {"board": b"board key", "host": b"host key"}
CALLS = 1000


def _romfs_image(tmp: pathlib.Path) -> pathlib.Path:
    """The runtime compiled by mpy-cross into a ROMFS image (MicroPython's own builder, from its source)."""
    lib = tmp / "lib"
    for src in (ROOT / "runtime").rglob("*.py"):
        out = lib / src.relative_to(ROOT / "runtime").with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        name = src.relative_to(ROOT / "runtime").as_posix()
        subprocess.run([MPY_CROSS, "-o", str(out), "-s", name, str(src)], check=True)
    spec = importlib.util.spec_from_file_location("mp_romfs", ROMFS_PY)
    romfs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(romfs)
    image = tmp / "runtime.romfs"
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the tree it packs
        image.write_bytes(romfs.make_romfs(str(lib) + "/", mpy_cross=False))
    return image


def _run(tmp: pathlib.Path, micropython: str, heap: str, image: str) -> dict[str, int]:
    root = tmp / "spool"
    host = node.Node("host", SpoolTransport(str(root), "host"), keys=KEYS, require=True, timeout=5)
    host.serve(ECHO, {"echo": lambda x: x})
    out = tmp / f"board-{heap}.out"
    with open(out, "w") as f:
        cmd = [micropython, "-X", f"heapsize={heap}", str(BOARD), image, str(root), str(CALLS)]
        env = dict(os.environ, MICROPYPATH=".frozen")
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    try:
        for i in range(CALLS):
            assert host.call("board", "echo.echo", {"x": i}) == i
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            host.poll(20)
    except errors.Timeout as e:
        raise AssertionError(f"{e}; the board said: {out.read_text()[-2000:]}") from None
    finally:
        proc.kill()
        proc.wait()
    text = out.read_text()
    assert "MemoryError" not in text and "Traceback" not in text, text
    done = re.search(r"done from=(\S+) (.*) stats", text)
    assert done, text
    print(f"\nMicroPython node, heapsize={heap}, runtime from {done.group(1)}: {done.group(2)}")
    numbers = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", done.group(2)))
    assert numbers["served"] == CALLS
    return numbers


def test_frozen_mpy_node_serves_and_makes_1000_signed_calls_in_a_48k_heap(tmp_path):
    fw, _ = firmware.ensure_built(profiles.load("unix"))
    n = _run(tmp_path, str(fw), "48k", "-")
    assert n["peak_live"] < 40 * 1024


def test_romfs_mpy_node_serves_and_makes_1000_signed_calls_in_a_64k_heap(tmp_path):
    n = _run(tmp_path, MICROPYTHON, "64k", str(_romfs_image(tmp_path)))
    assert n["peak_live"] < 56 * 1024
