"""The host package imports downward only: each room only the rooms below it, no cycles between modules,
and the rooms at the top (`cli`, `demo`, `testing`) imported by nobody but their own entry points."""

import ast
import pathlib

HOST = pathlib.Path(__file__).resolve().parents[2] / "host_tools" / "spoolbus_host"

# Bottom to top, as in docs/architecture.md; a room may import only itself and the rooms listed before it.
ROOMS = [
    "paths",
    "toml_checks",
    "progress",
    "serialport",
    "mqtt",
    "bridge",
    "deploy",
    "rollout",
    "boards",
    "testing",
    "demo",
    "cli",
]
# Who may import a top room: the room itself, and for `demo` the one subcommand that runs it.
ENTRY_POINTS = {"cli": {"cli"}, "testing": {"testing"}, "demo": {"demo", "cli.demo"}}


def _module_of(path: pathlib.Path) -> str:
    rel = path.relative_to(HOST).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    """The spoolbus_host modules that `path` imports, as dotted names below spoolbus_host."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: use absolute imports (from spoolbus_host...)"
            rel = node.module[len("spoolbus_host"):].lstrip(".").replace(".", "/")
            package = node.module.startswith("spoolbus_host") and (HOST / rel).is_dir()
            names = [f"{node.module}.{a.name}" if package else node.module for a in node.names]
        else:
            continue
        found.update(n[len("spoolbus_host."):] for n in names if n.startswith("spoolbus_host."))
    return found


def _modules() -> dict[str, set[str]]:
    return {_module_of(p): _imports(p) for p in sorted(HOST.rglob("*.py"))}


def _room(module: str) -> str:
    return module.split(".")[0]


def test_every_host_module_is_in_a_room():
    unknown = sorted(m for m in _modules() if m and _room(m) not in ROOMS)
    assert not unknown, f"add these to ROOMS in {__file__} and to docs/architecture.md: {unknown}"


def test_each_room_imports_only_itself_and_the_rooms_below_it():
    bad = [f"{m} imports {i}" for m, imports in _modules().items() if m for i in imports
           if ROOMS.index(_room(i)) > ROOMS.index(_room(m))]
    assert not bad, bad


def test_the_top_rooms_are_imported_only_by_their_entry_points():
    bad = [f"{m} imports {i}" for m, imports in _modules().items() for i in imports
           if _room(i) in ENTRY_POINTS and _room(m) != _room(i) and m not in ENTRY_POINTS[_room(i)]]
    assert not bad, bad


def test_no_module_imports_itself_through_a_cycle():
    graph = {m: {i for i in imports if i != m} for m, imports in _modules().items()}

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [c for m in graph if (c := cycle_from(m))]
    assert not cycles, cycles[0]


def test_the_rooms_are_the_folders_docs_architecture_names():
    doc = (HOST.parents[1] / "docs" / "architecture.md").read_text()
    missing = [r for r in ROOMS if f"`{r}" not in doc]
    assert not missing, f"docs/architecture.md does not name: {missing}"
