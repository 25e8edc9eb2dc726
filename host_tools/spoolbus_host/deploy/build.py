"""What a deploy sends to a MicroPython board: the application and the runtime compiled to .mpy, its manifest.

A build is a pure value (path -> bytes, each file's sha256, the manifest and its digest): the same
sources and compiler always give the same tree id, so a deploy can tell what a board already holds.
Compiled modules are cached by content; the board-side code (deploy/board/) is read here as text.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from spoolbus_host.paths import MICROPYTHON_BUILD, RUNTIME

PROJECT_MPY_CROSS = MICROPYTHON_BUILD / "mpy-cross"
MANIFEST_NAME = ".manifest"
BOARD_CODE = Path(__file__).with_name("board")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


class DeployError(Exception):
    """A deploy that could not be done; the message says what to do. The board still runs its old tree."""


@dataclass
class Build:
    """The compiled tree: relative path -> bytes, its manifest, the manifest's sha256 (hex) and the tree
    id (its first 16 digits)."""

    files: dict[str, bytes]
    manifest: bytes = b""
    digest: str = ""
    tree_id: str = ""
    hashes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hashes = {p: hashlib.sha256(d).hexdigest() for p, d in self.files.items()}
        lines = ["spoolbus-manifest 1"]
        lines += [f"{self.hashes[p]} {len(self.files[p])} {p}" for p in sorted(self.files)]
        self.manifest = ("\n".join(lines) + "\n").encode()
        self.digest = hashlib.sha256(self.manifest).hexdigest()
        self.tree_id = self.digest[:16]

    def write(self, tree: Path) -> None:
        """Every file and the manifest into directory `tree` (a local root's app/<id>)."""
        for rel, data in self.files.items():
            path = tree / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (tree / MANIFEST_NAME).write_bytes(self.manifest)


def board_source(name: str, folder: Path = BOARD_CODE) -> str:
    """NAME.py of `folder` as it travels: without its docstring and comment lines (bytes over a UART)."""
    text = (folder / f"{name}.py").read_text()
    if text.startswith('"""'):
        text = text[text.index('"""', 3) + 3 :].lstrip("\n")
    return "".join(line for line in text.splitlines(True) if not line.lstrip().startswith("#"))


def _inline_appdir(text: str) -> str:
    """The loader runs before any tree's spoolbus is importable: it carries appdir.py's text instead."""
    line = re.search(r"^from spoolbus\.appdir import .*\n", text, re.M)
    assert line, "deploy/board/loader.py imports spoolbus.appdir"
    return text[: line.start()] + board_source("appdir", RUNTIME) + text[line.end() :]


_LOADER = _inline_appdir(board_source("loader"))


def loader(root: str = "") -> bytes:
    """The boot loader for a board whose deploy root is `root` ("" = the working directory)."""
    r = root.rstrip("/") + "/" if root else ""
    return _LOADER.replace('ROOT = ""', f"ROOT = {r!r}", 1).encode()


def find_mpy_cross(explicit: str | None = None) -> str:
    """The given one, then $SPOOLBUS_MPY_CROSS, the project's own (built from the firmware's source), PATH."""
    env = os.environ.get("SPOOLBUS_MPY_CROSS")
    for cand in (explicit, env, str(PROJECT_MPY_CROSS), shutil.which("mpy-cross")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise DeployError("no mpy-cross found: run `make micropython` (builds it) or pass --mpy-cross PATH")


def mpy_cross_version(mpy_cross: str) -> int:
    """The .mpy major version a mpy-cross emits (MicroPython 1.25 emits 6)."""
    out = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"mpy v(\d+)", out)
    if not m:
        said = out.strip().splitlines()[0][:80] if out.strip() else "nothing"
        raise DeployError(f"{mpy_cross} --version did not say which .mpy version it emits (it said "
                          f"{said!r}): is it MicroPython's mpy-cross? Pass --mpy-cross PATH")
    return int(m.group(1))


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "spoolbus" / "mpy"


def compile_module(mpy_cross: str, src: Path, name: str) -> bytes:
    """`src` as .mpy, `name` (its path on the board) in its tracebacks; cached by the hash of the source
    bytes, the name and the compiler (path and mtime), so a deploy and a package build share results."""
    tag = f"{mpy_cross}:{os.stat(mpy_cross).st_mtime_ns}"
    data = src.read_bytes()
    key = hashlib.sha256(tag.encode() + b"\0" + name.encode() + b"\0" + data).hexdigest()
    cached = _cache_dir() / (key + ".mpy")
    if cached.exists():
        return cached.read_bytes()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")  # deploys may run in threads
    res = subprocess.run([mpy_cross, "-o", str(tmp), "-s", name, str(src)], capture_output=True, text=True)
    if res.returncode != 0:
        raise DeployError(f"mpy-cross could not compile {src}: {res.stderr.strip() or res.stdout.strip()}")
    os.replace(tmp, cached)
    return cached.read_bytes()


def _collect(root: Path, prefix: str) -> list[tuple[Path, str]]:
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        # .so: spoolbus.cbor's C decoder, built next to the runtime's sources by an editable install
        if path.is_dir() or "__pycache__" in rel.split("/") or rel.endswith((".pyc", ".mpy", ".so")):
            continue
        out.append((path, prefix + rel))
    return out


def build(
    app: Path, mpy_cross: str | None = None, runtime: Path = RUNTIME, compile_mpy: bool = True
) -> Build:
    """Compile the application directory and the runtime (as `spoolbus/`) into one tree of .mpy files.

    The application needs a `main.py` (the loader imports `main`). Non-Python files are copied as they are.
    """
    app = Path(app)
    if not (app / "main.py").is_file():
        raise DeployError(f"{app} has no main.py: the board's loader imports `main` from the application")
    sources = _collect(app, "") + _collect(Path(runtime), "spoolbus/")
    tool = find_mpy_cross(mpy_cross) if compile_mpy else ""
    files: dict[str, bytes] = {}
    for src, rel in sources:
        if not _SAFE_PATH.match(rel) or rel == MANIFEST_NAME:
            raise DeployError(f"cannot deploy {src}: use letters, digits, '_', '-', '.' in file names")
        if compile_mpy and rel.endswith(".py"):
            files[rel[:-3] + ".mpy"] = compile_module(tool, src, rel)
        else:
            files[rel] = src.read_bytes()
    return Build(files)


def parse_manifest(data: bytes) -> dict[str, str]:
    """path -> sha256 hex of a manifest written by `Build`; an unreadable manifest is an empty one."""
    lines = data.decode("utf-8", "replace").splitlines()
    if not lines or lines[0] != "spoolbus-manifest 1":
        return {}
    out = {}
    for line in lines[1:]:
        parts = line.split(" ", 2)
        if len(parts) == 3:
            out[parts[2]] = parts[0]
    return out
