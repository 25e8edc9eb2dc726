"""The runtime as mip packages: an index in micropython-lib's layout for `mpremote mip install` and a
board's `mip.install`, each package the import closure of its modules, compiled to .mpy.

No module list is written down: a package names its top modules and the packages it depends on, and
holds what its tops import (read from runtime/spoolbus/ with ast), less what its dependencies hold. So a
runtime module that moves an import moves between packages at the next build. Docs: docs/deploy.md.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from spoolbus_host.deploy.build import DeployError, compile_module, find_mpy_cross, mpy_cross_version
from spoolbus_host.paths import RUNTIME

HASH_LEN = 8  # micropython-lib's short hash: file/<first 2>/<first 8 hex digits of the sha256>
# A handler of these makes the imports in its `try:` optional: the module runs without them.
_GUARDS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


@dataclass(frozen=True)
class Package:
    """A mip package: `tops` (dotted module names) and everything they import, less what `deps` hold."""

    name: str
    description: str
    tops: tuple[str, ...]
    deps: tuple[str, ...] = ()


CORE = "spoolbus-core"
PACKAGES = (
    Package(
        CORE,
        "codec, envelope, auth, contracts and the node; the loopback transport",
        ("spoolbus.node", "spoolbus.transport.loopback"),
    ),
    Package(
        "spoolbus-serial",
        "the serial transport: frames with CRC over a UART or a pty",
        ("spoolbus.transport.serial",),
        (CORE,),
    ),
    Package(
        "spoolbus-spool",
        "the spool transport, the spool and its locks (processes on one board)",
        ("spoolbus.transport.spool", "spoolbus.lock"),
        (CORE,),
    ),
    Package(
        "spoolbus-mqtt",
        "the MQTT transport and the MicroPython MQTT client",
        ("spoolbus.transport.mqtt", "spoolbus.transport.mqtt_client"),
        (CORE,),
    ),
    Package(
        "spoolbus-update",
        "the update service that `spoolbus deploy --to` talks to, and its app dir",
        ("spoolbus.update", "spoolbus.appdir"),
        (CORE,),
    ),
    Package(
        "spoolbus",
        "all of the above",
        (),
        (CORE, "spoolbus-serial", "spoolbus-spool", "spoolbus-mqtt", "spoolbus-update"),
    ),
)


class PackageError(DeployError):
    """A package build that could not be done; the message says what to fix."""


def modules(runtime: Path = RUNTIME) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py of the runtime (a package is its __init__.py)."""
    out = {}
    for path in sorted(Path(runtime).rglob("*.py")):
        parts = ("spoolbus",) + path.relative_to(runtime).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _guarded(handlers: list[ast.ExceptHandler]) -> bool:
    for h in handlers:
        if h.type is None:
            return True
        names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        if any(isinstance(n, ast.Name) and n.id in _GUARDS for n in names):
            return True
    return False


def _import_nodes(node: ast.AST, optional: bool = False):
    """(import node, optional) for every import in `node`, in functions too (a lazy import is still
    needed); optional when inside the body of a `try:` whose handler catches ImportError."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node, optional
    elif isinstance(node, ast.Try):
        guarded = optional or _guarded(node.handlers)
        for stmt in node.body:
            yield from _import_nodes(stmt, guarded)
        for stmt in [*node.handlers, *node.orelse, *node.finalbody]:
            yield from _import_nodes(stmt, optional)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _import_nodes(child, optional)


def _with_parents(name: str) -> list[str]:
    """A module and the packages above it: importing spoolbus.transport.serial runs all three."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imports(module: str, known: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(required, optional) runtime modules that `module` imports; a required import of a spoolbus
    module the runtime has no source of is a PackageError."""
    path = known[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    required: set[str] = set()
    optional: set[str] = set()
    for node, guarded in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from P import n`: the submodule P.n when there is one, else a name defined in P
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for name in names:
            if name.split(".")[0] != "spoolbus":
                continue
            if name not in known and not guarded:
                raise PackageError(
                    f"{path} imports {name}, which has no source in {RUNTIME}: add it or "
                    "guard the import with try/except ImportError"
                )
            (optional if guarded else required).update(m for m in _with_parents(name) if m in known)
    return required - {module}, optional - required - {module}


def closure(tops: tuple[str, ...], known: dict[str, Path]) -> set[str]:
    """`tops` and every runtime module they need, transitively (optional imports left out)."""
    need: set[str] = set()
    todo = [m for top in tops for m in _with_parents(top)]
    while todo:
        name = todo.pop()
        if name in need:
            continue
        if name not in known:
            raise PackageError(f"package module {name} has no source in {RUNTIME}")
        need.add(name)
        todo.extend(imports(name, known)[0])
    return need


@dataclass
class Layout:
    """Which modules each package ships (`own`) and what an install of it puts on a board (`provides`)."""

    own: dict[str, list[str]] = field(default_factory=dict)
    provides: dict[str, set[str]] = field(default_factory=dict)


def layout(runtime: Path = RUNTIME, packages: tuple[Package, ...] = PACKAGES) -> Layout:
    """Each package's modules: its tops' closure less what its dependencies (and theirs) provide."""
    known = modules(runtime)
    out = Layout()
    for pkg in packages:  # dependencies come first in PACKAGES
        below: set[str] = set()
        for dep in pkg.deps:
            below |= out.provides[dep]
        own = closure(pkg.tops, known) - below
        out.own[pkg.name] = sorted(own)
        out.provides[pkg.name] = below | own
    return out


def runtime_version(runtime: Path = RUNTIME) -> str:
    """`__version__` of the runtime's __init__.py (the packages' version)."""
    for stmt in ast.parse((Path(runtime) / "__init__.py").read_text()).body:
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "__version__" for t in stmt.targets):
            return ast.literal_eval(stmt.value)
    raise PackageError(f"{runtime}/__init__.py has no __version__")


@dataclass
class Written:
    """What `write_index` wrote: per package (name, own files, bytes of them, deps, modules); the .mpy
    files of the index (a module two sibling packages need is one file) and their bytes."""

    out: Path
    mpy_version: int
    version: str
    mpy_cross: str
    packages: list[dict]
    files: int
    bytes: int


def _target(module: str, known: dict[str, Path], runtime: Path) -> str:
    """Where a module goes under the board's lib dir, as a .py source path: spoolbus/transport/serial.py."""
    return "spoolbus/" + known[module].relative_to(runtime).as_posix()


def _store(out: Path, data: bytes) -> str:
    """`data` as out/file/<hh>/<short hash> (never rewritten: an index only grows); its short hash."""
    short = hashlib.sha256(data).hexdigest()[:HASH_LEN]
    path = out / "file" / short[:2] / short
    if path.is_file():
        if path.read_bytes() != data:
            raise PackageError(f"{path} holds other bytes with the same short hash: build into a new --out")
        return short
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return short


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n")


def write_index(
    out: Path, mpy_cross: str | None = None, runtime: Path = RUNTIME, packages: tuple[Package, ...] = PACKAGES
) -> Written:
    """Build every package into the directory `out`, in micropython-lib's layout:

    - `package/<mpy>/<name>/latest.json` and `<version>.json`: `hashes` [[path, short hash]], `deps`
      [[name, version]] (what `mip install --index OUT NAME` reads, at the board's .mpy version);
    - `file/<hh>/<short hash>`: each .mpy;
    - `<name>.json`: the package with its dependencies' files, as `urls` relative to `out` and no deps, for
      an install by path or URL without an index (`mpremote mip install OUT/spoolbus-serial.json`);
    - `index.json`: the packages, their descriptions and versions.
    """
    out = Path(out)
    runtime = Path(runtime)
    tool = find_mpy_cross(mpy_cross)
    mpy = mpy_cross_version(tool)
    version = runtime_version(runtime)
    known = modules(runtime)
    plan = layout(runtime, packages)
    files: dict[str, tuple[str, int]] = {}  # module -> (short hash, size)
    for name in sorted({m for own in plan.own.values() for m in own}):
        rel = _target(name, known, runtime)
        data = compile_module(tool, known[name], rel)
        if data[:1] != b"M" or data[1] != mpy:
            raise PackageError(
                f"{tool} said it emits .mpy v{mpy} but wrote {rel} as another format "
                f"(header {data[:2]!r}); give the mpy-cross of the board's firmware"
            )
        files[name] = (_store(out, data), len(data))

    def entry(module: str) -> tuple[str, str]:
        return _target(module, known, runtime)[:-3] + ".mpy", files[module][0]

    report = []
    for pkg in packages:
        own = [entry(m) for m in plan.own[pkg.name]]
        meta = {
            "v": 1,
            "hashes": [list(e) for e in own],
            "deps": [[d, version] for d in pkg.deps],
            "version": version,
        }
        for stem in ("latest", version):
            _write_json(out / "package" / str(mpy) / pkg.name / f"{stem}.json", meta)
        whole = sorted(entry(m) for m in plan.provides[pkg.name])
        _write_json(
            out / f"{pkg.name}.json",
            {"v": 1, "urls": [[p, f"file/{h[:2]}/{h}"] for p, h in whole], "version": version},
        )
        report.append(
            {
                "name": pkg.name,
                "files": len(own),
                "bytes": sum(files[m][1] for m in plan.own[pkg.name]),
                "deps": list(pkg.deps),
                "modules": plan.own[pkg.name],
            }
        )
    index = {
        "v": 2,
        "packages": [
            {
                "name": p.name,
                "version": version,
                "description": p.description,
                "license": "MIT",
                "versions": {str(mpy): [version]},
            }
            for p in packages
        ],
    }
    _write_json(out / "index.json", index)
    return Written(out, mpy, version, tool, report, len(files), sum(size for _, size in files.values()))
