"""The portable package imports downward only: each layer only the ones below it, never the host package."""

import ast
import pathlib

RUNTIME = pathlib.Path(__file__).resolve().parents[2] / "runtime" / "spoolbus"

# Bottom to top, as in docs/architecture.md; a module may import only modules listed before it.
LAYERS = [
    "errors",
    "names",
    "crc",
    "proc",
    "appdir",
    "_cbor_c",  # built from csrc/cbor_c.c on CPython hosts; it imports errors
    "cbor",
    "frame",
    "wire",
    "auth",
    "contract",
    "client",
    "lock",
    "spool",
    "node",
    "update",
    "transport",
]


def _layer_of(module: str) -> str:
    return module.split(".")[0]


def _spoolbus_imports(path: pathlib.Path) -> set[str]:
    """Module names under spoolbus that `path` imports (absolute or relative)."""
    rel = path.relative_to(RUNTIME).with_suffix("")
    package = list(rel.parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] if node.module else [".".join(base + [a.name]) for a in node.names]
                names = ["spoolbus." + n if n else "spoolbus" for n in names]
            else:
                names = [node.module or ""]
                if node.module == "spoolbus":
                    names = ["spoolbus." + a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("spoolbus_host"):
                found.add(name)
            elif name.startswith("spoolbus."):
                found.add(name[len("spoolbus.") :])
    return found


def _modules():
    for path in sorted(RUNTIME.rglob("*.py")):
        rel = path.relative_to(RUNTIME).with_suffix("")
        if rel.name == "__init__" and len(rel.parts) == 1:
            continue
        yield ".".join(rel.parts), path


def test_every_runtime_module_has_a_layer():
    unknown = [m for m, _ in _modules() if _layer_of(m) not in LAYERS]
    assert not unknown, f"add these modules to LAYERS in {__file__}: {unknown}"


def test_runtime_never_imports_the_host_package():
    bad = {m: i for m, p in _modules() for i in _spoolbus_imports(p) if i.startswith("spoolbus_host")}
    assert not bad, bad


def test_each_layer_imports_only_layers_below_it():
    violations = []
    for module, path in _modules():
        own = LAYERS.index(_layer_of(module))
        for imported in _spoolbus_imports(path):
            if imported.startswith("spoolbus_host"):
                continue
            layer = _layer_of(imported)
            same_package = layer == "transport" and _layer_of(module) == "transport"
            if layer not in LAYERS or (LAYERS.index(layer) >= own and not same_package):
                violations.append(f"{module} imports {imported}")
    assert not violations, violations


def test_transport_modules_do_not_import_each_other_in_a_cycle():
    graph = {
        m: {i for i in _spoolbus_imports(p) if i.startswith("transport.")}
        for m, p in _modules()
        if m.startswith("transport.")
    }

    def reaches(start, target, seen):
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    cycles = [m for m in graph if reaches(m, m, {m})]
    assert not cycles, cycles
