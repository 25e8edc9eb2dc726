"""`spoolbus package --out DIR`: the runtime as mip packages, an index that `mpremote mip install` and a
board's `mip.install` read (see deploy/packages.py, docs/deploy.md "Installing with mip")."""

from __future__ import annotations

import argparse
import functools
import json
import os
from pathlib import Path

from spoolbus_host.cli import options

_fail = functools.partial(options.fail, "package")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "package",
        help="build the runtime as mip packages (.mpy) into an index directory",
        description="Compile the runtime to .mpy and write a mip index into DIR (micropython-lib's layout): "
        "serve DIR over HTTP and run `mpremote mip install --index URL spoolbus-core`, or give mpremote "
        "the directory itself (--index DIR) or one package file (DIR/spoolbus-serial.json).",
    )
    p.add_argument("--out", type=Path, required=True, help="index directory (created if its parent exists)")
    p.add_argument(
        "--mpy-cross",
        help="mpy-cross to compile with: its .mpy version must be the board "
        "firmware's (default: the project's own build)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def _bad_out(out: Path) -> str | None:
    """Why `out` cannot hold an index, or None."""
    if out.exists() and not out.is_dir():
        return f"--out {out} is not a directory; give the directory for the index"
    parent = out.parent if not out.exists() else out
    if not parent.is_dir():
        return f"--out {out}: directory {parent} does not exist; create it (mkdir -p {parent})"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {out}: {parent} is not writable by this user; give a directory you can write"
    return None


def run(args: argparse.Namespace) -> int:
    from spoolbus_host.deploy.packages import DeployError, write_index

    wrong = _bad_out(args.out)
    if wrong:
        return _fail(wrong)
    tool = args.mpy_cross
    if tool is not None and not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
        return _fail(
            f"--mpy-cross {tool} is not an executable file; give the path of mpy-cross "
            "(or leave it out for the project's own build)"
        )
    try:
        written = write_index(args.out, tool)
    except DeployError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"cannot write the index into {args.out}: {e.strerror or e}")
    if args.json:
        print(
            json.dumps(
                {
                    "out": str(written.out),
                    "mpy_version": written.mpy_version,
                    "version": written.version,
                    "mpy_cross": written.mpy_cross,
                    "packages": written.packages,
                    "files": written.files,
                    "bytes": written.bytes,
                }
            )
        )
        return 0
    print(
        f"{written.out}: spoolbus {written.version} for boards whose .mpy version is {written.mpy_version} "
        f"({written.files} files, {written.bytes:,} bytes; {written.mpy_cross})"
    )
    for p in written.packages:
        deps = ", ".join(p["deps"]) or "-"
        print(f"  {p['name']:<16} {p['files']:>2} files {p['bytes']:>7,} B  deps: {deps}")
    out = written.out
    print(f"install: mpremote mip install --index {out} spoolbus-core spoolbus-serial")
    print(f"     or: mpremote mip install {out}/spoolbus-serial.json   (one file: the package and its deps)")
    print(f"     or: serve it (python -m http.server -d {out}) and give --index http://HOST:8000")
    return 0
