"""`spoolbus package` builds mip packages that `mpremote mip install` puts onto stock MicroPython boards.

The packages' import closure is checked on the sources and by importing every module on stock
MicroPython from a package's files alone. Then for real: the stock unix binary (nothing frozen) on a pty
installs from the index over loopback HTTP and serves a call on the spool; the stock QEMU firmware
(nothing of spoolbus frozen, a littlefs RAM disk at /flash) installs from one package file and serves a
call on its serial console; an index of another .mpy version is refused by name.
"""

from __future__ import annotations

import ast
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import serial
from spoolbus import contract, errors
from spoolbus.node import Node
from spoolbus.transport.serial import UP, SerialTransport
from spoolbus.transport.spool import SpoolTransport
from spoolbus_host.boards.unix_board import MICROPYTHON, UnixBoard
from spoolbus_host.deploy import packages
from spoolbus_host.serialport import PySerialPort

MPREMOTE = Path(sys.executable).with_name("mpremote")
pytestmark = pytest.mark.skipif(
    not (os.access(MICROPYTHON, os.X_OK) and MPREMOTE.is_file()),
    reason="the stock MicroPython build or mpremote (the test extra) is missing",
)

ECHO = contract.Service("echo", "1.0")
ECHO.method("echo", ("x", None))
BOARD_MAIN = """import sys
from spoolbus import contract
from spoolbus.node import Node
%s
ECHO = contract.Service("echo", "1.0")
ECHO.method("echo", ("x", None))


class Echo:
    def echo(self, x):
        return [x, sys.modules["spoolbus.node"].__file__]


node = Node(NAME, link)
node.serve(ECHO, Echo())
%s
while True:
    node.poll(100)
"""
SPOOL_LINK = """from spoolbus.transport.spool import SpoolTransport
NAME = "gw/board"
link = SpoolTransport(%r, NAME)
"""
SERIAL_LINK = """import micropython
from spoolbus.transport.serial import SerialTransport, StreamPort
NAME = "board"
micropython.kbd_intr(-1)
link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name=NAME)
"""


@pytest.fixture(scope="module")
def index(runtime, tmp_path_factory):
    """The index of the runtime's snapshot, built once by the project's mpy-cross."""
    out = tmp_path_factory.mktemp("index")
    return packages.write_index(out, runtime=runtime)


@pytest.fixture(scope="module")
def served(index):
    """The index on a loopback HTTP server (a free port), as `python -m http.server -d DIR` serves it."""
    handler = functools.partial(_QuietHandler, directory=str(index.out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requested: list[str] = []

    def log_message(self, fmt: str, *args: object) -> None:
        _QuietHandler.requested.append(self.path)


def _mpremote(port: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(MPREMOTE), "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# ------------------------------------------------------------------------------- the packages' closure


def _spoolbus_imports(path: Path, known: set[str]) -> set[str]:
    """The runtime modules a source imports, outside `try:` bodies that catch ImportError."""
    tree = ast.parse(path.read_text())
    guarded = {
        id(n)
        for t in ast.walk(tree)
        if isinstance(t, ast.Try)
        and any(h.type is None or "ImportError" in ast.unparse(h.type) for h in t.handlers)
        for stmt in t.body
        for n in ast.walk(stmt)
    }
    out = set()
    for n in ast.walk(tree):
        if id(n) in guarded:
            continue
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names if a.name.startswith("spoolbus")}
        elif isinstance(n, ast.ImportFrom) and (n.module or "").startswith("spoolbus"):
            out |= {f"{n.module}.{a.name}" if f"{n.module}.{a.name}" in known else n.module for a in n.names}
    return out


def test_every_import_of_a_shipped_module_resolves_within_its_package_or_its_deps(runtime):
    known = packages.modules(runtime)
    plan = packages.layout(runtime)
    for pkg in packages.PACKAGES:
        have = plan.provides[pkg.name]
        assert have == set(plan.own[pkg.name]).union(*(plan.provides[d] for d in pkg.deps))
        for module in plan.own[pkg.name]:
            for name in _spoolbus_imports(known[module], set(known)):
                parts = name.split(".")
                for parent in (".".join(parts[: i + 1]) for i in range(len(parts))):
                    assert parent in have, f"{pkg.name}: {module} imports {parent}, which it does not ship"
        for top in pkg.tops:
            assert top in have


def test_every_runtime_module_is_in_a_package_and_none_in_a_package_and_its_deps(runtime):
    plan = packages.layout(runtime)
    assert set().union(*plan.own.values()) == set(packages.modules(runtime))
    for pkg in packages.PACKAGES:
        for dep in pkg.deps:
            assert not set(plan.own[pkg.name]) & plan.provides[dep], (pkg.name, dep)
    assert plan.own["spoolbus"] == [] and plan.provides["spoolbus"] == set(packages.modules(runtime))
    assert "spoolbus.node" in plan.own["spoolbus-core"] and "spoolbus.frame" in plan.own["spoolbus-serial"]


def test_a_guarded_import_is_optional_and_a_lazy_one_is_required(tmp_path):
    rt = tmp_path / "spoolbus"
    (rt / "transport").mkdir(parents=True)
    (rt / "__init__.py").write_text("")
    (rt / "transport" / "__init__.py").write_text("")
    (rt / "a.py").write_text(
        "try:\n    from spoolbus import b\nexcept ImportError:\n    b = None\n"
        "def f():\n    from spoolbus.transport import c\n"
    )
    (rt / "b.py").write_text("")
    (rt / "transport" / "c.py").write_text("from . import d\n")
    (rt / "transport" / "d.py").write_text("")
    known = packages.modules(rt)
    assert packages.imports("spoolbus.a", known) == (
        {"spoolbus", "spoolbus.transport", "spoolbus.transport.c"},
        {"spoolbus.b"},
    )
    assert packages.closure(("spoolbus.a",), known) == {
        "spoolbus",
        "spoolbus.a",
        "spoolbus.transport",
        "spoolbus.transport.c",
        "spoolbus.transport.d",
    }
    (rt / "b.py").write_text("import spoolbus.gone\n")
    with pytest.raises(packages.PackageError, match=r"b.py imports spoolbus.gone, which has no source"):
        packages.imports("spoolbus.b", known)


def _install_like_mip(out: Path, mpy: int, name: str, lib: Path) -> None:
    """What mip does with an index directory: the package's hashes into lib, then its deps."""
    meta = json.loads((out / "package" / str(mpy) / name / "latest.json").read_text())
    for target, short in meta["hashes"]:
        (lib / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "file" / short[:2] / short, lib / target)
    for dep, version in meta["deps"]:
        assert version == meta["version"]
        _install_like_mip(out, mpy, dep, lib)


def test_each_package_imports_on_stock_micropython_from_its_files_and_its_deps_alone(index, tmp_path):
    for pkg in index.packages:
        lib = tmp_path / pkg["name"]
        _install_like_mip(index.out, index.mpy_version, pkg["name"], lib)
        plain = json.loads((index.out / f"{pkg['name']}.json").read_text())
        assert sorted(p.relative_to(lib).as_posix() for p in lib.rglob("*.mpy")) == [
            t for t, _ in plain["urls"]
        ]
        script = f"import sys\nsys.path[:] = [{str(lib)!r}]\n"
        script += "".join(f"import {m}\nassert {m}.__file__.endswith('.mpy')\n" for m in pkg["modules"])
        res = subprocess.run([str(MICROPYTHON), "-c", script], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, (pkg["name"], res.stdout + res.stderr)


# ------------------------------------------------------------------------------------------ the CLI


def test_package_command_writes_the_index_and_says_what_it_wrote(tmp_path):
    out = tmp_path / "idx"
    res = subprocess.run(
        [sys.executable, "-m", "spoolbus_host.cli", "package", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"{out}: spoolbus ") and "whose .mpy version is 6" in lines[0]
    assert [line.split()[0] for line in lines[1:7]] == [p.name for p in packages.PACKAGES]
    assert "spoolbus-serial" in lines[2] and "deps: spoolbus-core" in lines[2]
    assert lines[7] == f"install: mpremote mip install --index {out} spoolbus-core spoolbus-serial"
    got = json.loads(
        subprocess.run(
            [sys.executable, "-m", "spoolbus_host.cli", "package", "--out", str(out), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )
    assert got["mpy_version"] == 6 and {p["name"] for p in got["packages"]} == {
        p.name for p in packages.PACKAGES
    }
    for p in got["packages"]:
        meta = json.loads((out / "package" / "6" / p["name"] / "latest.json").read_text())
        assert meta == json.loads((out / "package" / "6" / p["name"] / f"{got['version']}.json").read_text())
        assert len(meta["hashes"]) == p["files"] and [d for d, _ in meta["deps"]] == p["deps"]
        sizes = [(out / "file" / h[:2] / h).stat().st_size for _, h in meta["hashes"]]
        assert sum(sizes) == p["bytes"]
    assert json.loads((out / "index.json").read_text())["packages"][0]["versions"] == {"6": [got["version"]]}


# ------------------------------------------------------------------------------------ stock boards


def _host_call(node: Node, dst: str, deadline_s: float = 15.0):
    """echo.echo on `dst`, retried while the board is still starting."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return node.call(dst, "echo.echo", {"x": "hi"}, timeout=1.0)
        except (errors.Timeout, errors.LinkError):
            if time.monotonic() > deadline:
                raise


@pytest.fixture
def stock_unix(tmp_path, monkeypatch):
    """The stock unix binary (nothing frozen) behind a pty, its flash a fresh directory with lib/ on
    sys.path, as a port with a filesystem has /lib."""
    flash = tmp_path / "flash"
    monkeypatch.setenv("MICROPYPATH", f"{flash}/lib")
    board = UnixBoard(flash, micropython=str(MICROPYTHON))
    board.start()
    yield board
    board.stop()


def test_mip_installs_core_and_spool_from_an_http_index_onto_stock_unix_and_a_call_works(
    stock_unix, served, index, tmp_path
):
    port = stock_unix.port
    before = _mpremote(port, "exec", "import spoolbus")
    assert before.returncode != 0 and "no module named 'spoolbus'" in before.stdout + before.stderr
    res = _mpremote(port, "mip", "install", "--index", served, "spoolbus-core", "spoolbus-spool")
    assert res.returncode == 0, res.stdout + res.stderr
    lib = stock_unix.flash / "lib"
    assert f"Installing spoolbus-core (latest) from {served} to {lib}" in res.stdout
    assert "/package/6/spoolbus-spool/latest.json" in _QuietHandler.requested
    spool_pkg = next(p for p in index.packages if p["name"] == "spoolbus-spool")
    assert (lib / "spoolbus" / "transport" / "spool.mpy").is_file() and not (
        lib / "spoolbus" / "frame.mpy"
    ).exists()
    assert len(list(lib.rglob("*.mpy"))) == spool_pkg["files"] + index.packages[0]["files"]
    assert not list(lib.rglob("*.py"))
    spool = tmp_path / "spool"
    (stock_unix.flash / "main.py").write_text(BOARD_MAIN % (SPOOL_LINK % str(spool), ""))
    stock_unix.kill()
    stock_unix.start()  # power on: the ROM runs main.py
    host = Node("gw/host", SpoolTransport(str(spool), "gw/host"))
    try:
        assert _host_call(host, "gw/board") == ["hi", f"{lib}/spoolbus/node.mpy"]
    finally:
        host.close()


def test_an_index_of_another_mpy_version_is_refused_by_name(stock_unix, index, tmp_path):
    other = tmp_path / "index-v7"
    shutil.copytree(index.out, other)
    (other / "package" / "6").rename(other / "package" / "7")  # as an index built for MicroPython 2.x
    res = _mpremote(stock_unix.port, "mip", "install", "--index", str(other), "spoolbus-core")
    assert res.returncode != 0
    assert f"Error opening {other}/package/6/spoolbus-core/latest.json" in res.stdout + res.stderr
    assert not (stock_unix.flash / "lib").exists()


@pytest.fixture
def stock_qemu():
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("qemu-system-arm or the ARM toolchain is not installed")
    from spoolbus_host.boards import firmware, profiles, qemu

    profile = profiles.load("qemu-mps2-an385")
    if not (firmware.source_dir(profile) / "py" / "mpconfig.h").is_file():
        pytest.skip("MicroPython source not fetched")
    elf, _ = firmware.ensure_built(profile, variant="stock")
    board = qemu.boot(profile, elf)
    yield profile, board
    board.stop()


def test_mip_installs_serial_from_a_package_file_onto_the_stock_qemu_board_and_a_call_works(
    stock_qemu, index, tmp_path
):
    profile, board = stock_qemu
    before = _mpremote(board.port, "exec", "import sys; print(sys.path)\nimport spoolbus")
    assert "'/flash/lib'" in before.stdout and "no module named 'spoolbus'" in before.stdout + before.stderr
    res = _mpremote(board.port, "mip", "install", f"{index.out}/spoolbus-serial.json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Installing: /flash/lib/spoolbus/transport/serial.mpy" in res.stdout
    app = tmp_path / "main.py"
    app.write_text(BOARD_MAIN % (SERIAL_LINK, "link.open()"))
    res = _mpremote(board.port, "cp", str(app), ":/flash/main.py")
    assert res.returncode == 0, res.stdout + res.stderr
    with serial.serial_for_url(board.port, timeout=1) as console:
        console.write(b"\x04")  # a soft reset at the friendly REPL: _boot.py, then main.py
    link = SerialTransport(
        PySerialPort(board.port, profile.baudrate),
        name="host",
        max_frame=profile.max_frame,
        keepalive_ms=profile.keepalive_ms,
        dead_ms=profile.dead_ms,
    )
    link.open()
    host = Node("host", link)
    try:
        deadline = time.monotonic() + 15
        while link.state != UP and time.monotonic() < deadline:
            try:
                link.recv(50)
            except errors.LinkError:
                pass
        assert _host_call(host, "board") == ["hi", "/flash/lib/spoolbus/node.mpy"]
    finally:
        host.close()
