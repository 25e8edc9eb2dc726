"""`spoolbus spool inspect DIR`: what a spool holds, per state, without changing anything.

Reads only: no recovery runs, so an inspection never races the producers and consumers at work.
A file in new/ or cur/ whose name is not a spool record's is foreign: not counted as a message, but
as what the next claim quarantines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from spoolbus import spool


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spool", help="look at a file spool")
    verbs = p.add_subparsers(dest="spool_command", metavar="VERB", required=True)
    i = verbs.add_parser("inspect", help="counts per state, bytes, oldest message, quarantined files")
    i.add_argument("dir", help="the spool directory (holds tmp/, new/, cur/, quarantine/)")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    i.set_defaults(run=run)


def _entries(path: str) -> list[os.DirEntry]:
    try:
        return list(os.scandir(path))
    except FileNotFoundError:
        return []


def _size(e: os.DirEntry) -> int:
    return e.stat().st_size if e.is_file() else 0


def _stamp_seconds(name: str) -> float:
    return int(spool._parse(name)[0], 16) / 1e6


def inspect(path: str) -> dict:
    """The report as a dict (what --json prints); ValueError for a missing or non-spool directory."""
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such directory; give a spool directory")
    if not os.path.isdir(path):
        raise ValueError(f"{path} is not a directory; give a spool directory")
    if not os.path.isdir(os.path.join(path, "new")):
        raise ValueError(f"{path}: not a spool (no new/ directory; a spool has tmp/ new/ cur/ quarantine/)")
    foreign: list[os.DirEntry] = []

    def records(entries: list[os.DirEntry]) -> list[str]:
        """The names of the spool records among `entries`; the rest goes to `foreign`."""
        out = []
        for e in entries:
            if spool._parse(e.name) and e.is_file():
                out.append(e.name)
            else:
                foreign.append(e)
        return out

    new = sorted(records(_entries(os.path.join(path, "new"))))
    consumers = []
    claimed: list[str] = []
    for e in _entries(os.path.join(path, "cur")):
        if not e.is_dir():
            continue
        names = records(_entries(e.path))
        claimed += names
        consumers.append({"owner": e.name, "claimed": len(names), "alive": spool._alive(e.name)})
    tmp = _entries(os.path.join(path, "tmp"))
    quarantine = sorted(_entries(os.path.join(path, "quarantine")), key=lambda e: e.name)
    candidates = new[:1] + sorted(claimed)[:1]
    oldest = min(candidates) if candidates else None

    def size(names: list[str]) -> int:
        return sum(spool._parse(n)[2] for n in names)

    return {
        "path": os.path.abspath(path),
        "new": {"count": len(new), "bytes": size(new)},
        "claimed": {"count": len(claimed), "bytes": size(claimed), "consumers": consumers},
        "tmp": {"count": len(tmp), "bytes": sum(e.stat().st_size for e in tmp)},
        "foreign": {
            "count": len(foreign),
            "bytes": sum(_size(e) for e in foreign),
            "files": sorted(os.path.relpath(e.path, path) for e in foreign),
        },
        "quarantine": {
            "count": len(quarantine),
            "bytes": sum(e.stat().st_size for e in quarantine),
            "files": [
                {"name": e.name, "bytes": e.stat().st_size, "mtime": e.stat().st_mtime} for e in quarantine
            ],
        },
        "oldest_message": oldest,
        "oldest_age_s": None if oldest is None else round(time.time() - _stamp_seconds(oldest), 3),
    }


def _human(r: dict) -> str:
    lines = [f"spool {r['path']}"]
    for state in ("new", "claimed", "tmp", "quarantine"):
        lines.append(f"  {state:<11}{r[state]['count']:>9} messages {r[state]['bytes']:>12} bytes")
    f = r["foreign"]
    lines.append(f"  {'foreign':<11}{f['count']:>9} files    {f['bytes']:>12} bytes"
                 f"{' (not spool records: the next claim quarantines them)' if f['count'] else ''}")
    lines += [f"    foreign: {name}" for name in f["files"]]
    for c in r["claimed"]["consumers"]:
        alive = "alive" if c["alive"] else "dead (returned to new/ at the next open)"
        lines.append(f"    consumer {c['owner']}: {c['claimed']} claimed, {alive}")
    if r["oldest_age_s"] is None:
        lines.append("  oldest message: none")
    else:
        lines.append(f"  oldest message: {r['oldest_message']} ({r['oldest_age_s']:.1f} s old)")
    for f in r["quarantine"]["files"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f["mtime"]))
        lines.append(f"  quarantined: {f['name']} ({f['bytes']} bytes, {when})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        report = inspect(args.dir)
    except ValueError as e:
        print(f"spoolbus spool inspect: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else _human(report))
    return 0
