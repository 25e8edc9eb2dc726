"""A board's flash as a directory, for boards that are unix-port processes in tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

from spoolbus_host.deploy import build as dbuild


def install(flash: Path, b: dbuild.Build) -> None:
    """Put build `b` on `flash` as a serial deploy leaves it: app/<tree id> with its manifest, app/current
    naming it, the boot loader as main.py (deploy root "": the board runs with `flash` as its directory)."""
    b.write(flash / "app" / b.tree_id)
    (flash / "app" / "current").write_text(b.tree_id)
    (flash / "main.py").write_bytes(dbuild.loader())
