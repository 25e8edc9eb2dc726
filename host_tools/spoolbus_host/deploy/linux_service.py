"""Install a spoolbus application on a Linux board (a Raspberry Pi) as a systemd service on CPython.

The same guarantee as a MicroPython deploy: the new code goes to PREFIX/trees/<id>, then one rename of
the `PREFIX/current` symlink switches; the unit runs PREFIX/current/main.py with its spool in SPOOL.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spoolbus_host.deploy.build import Build, DeployError, build

UNIT = """# Written by `spoolbus deploy --board {board}`; reinstalled on every deploy.
[Unit]
Description=spoolbus application ({service})
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
SupplementaryGroups=dialout
ExecStart={python} {prefix}/current/main.py
WorkingDirectory={spool}
Environment=SPOOLBUS_SPOOL={spool}
Environment=PYTHONUNBUFFERED=1
StateDirectory={state}
Restart=on-failure
RestartSec=2
MemoryMax={memory_max}
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


@dataclass
class Installed:
    """What an install did; `next_steps` are the commands a --root install leaves to the target."""

    target: str
    tree_id: str
    previous_id: str | None
    files: int
    unit: str
    seconds: float
    next_steps: list[str]

    def summary(self) -> str:
        text = f"{self.target}: switched to tree {self.tree_id} ({self.files} files), unit {self.unit}"
        if self.next_steps:
            text += "\nthen, on the board: " + "; ".join(self.next_steps)
        return text


def unit_text(profile: dict[str, Any]) -> str:
    d = profile["deploy"]
    if not d["spool"].startswith("/var/lib/") or d["spool"].rstrip("/") == "/var/lib":
        raise DeployError(f"deploy.spool must be a directory under /var/lib/, not {d['spool']}")
    return UNIT.format(
        board=profile.get("name", "?"), service=d["service"], user=d["user"], python=d["python"],
        prefix=d["prefix"].rstrip("/"), spool=d["spool"].rstrip("/"),
        state=d["spool"].rstrip("/")[len("/var/lib/"):],
        memory_max=profile.get("memory", {}).get("heap", "infinity"),
    )


def _under(root: Path, absolute: str) -> Path:
    return root / absolute.lstrip("/")


def install(
    app: Path, profile: dict[str, Any], root: Path | None = None, ssh: str | None = None
) -> Installed:
    """Install into `root` (a directory standing for the board's /) or on `ssh` (user@host)."""
    started = time.monotonic()
    b = build(Path(app), compile_mpy=False)
    if root is not None:
        return _install_root(Path(root), b, profile, started)
    assert ssh is not None
    return _install_ssh(ssh, b, profile, started)


def _install_root(root: Path, b: Build, profile: dict[str, Any], started: float) -> Installed:
    d = profile["deploy"]
    prefix = _under(root, d["prefix"])
    current = prefix / "current"
    previous = os.readlink(current).rsplit("/", 1)[-1] if current.is_symlink() else None
    tree = prefix / "trees" / b.tree_id
    if previous != b.tree_id:
        _write_tree(tree, b)
        link = prefix / "current.new"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(f"trees/{b.tree_id}")
        os.replace(link, current)  # the switch: rename(2) replaces the symlink atomically
        for old in (prefix / "trees").iterdir():
            if old.name != b.tree_id:
                _rmtree(old)
    unit_path = _under(root, f"/etc/systemd/system/{d['service']}.service")
    unit_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unit_path.with_suffix(".new")
    tmp.write_text(unit_text(profile))
    os.replace(tmp, unit_path)
    _under(root, d["spool"]).mkdir(parents=True, exist_ok=True, mode=0o750)
    steps = [
        f"id -u {d['user']} || useradd --system --no-create-home --groups dialout {d['user']}",
        "systemctl daemon-reload",
        f"systemctl enable {d['service']}",
        f"systemctl restart {d['service']}",
    ]
    unit = f"/etc/systemd/system/{d['service']}.service"
    return Installed(str(root), b.tree_id, previous, len(b.files), unit, time.monotonic() - started, steps)


def _write_tree(tree: Path, b: Build) -> None:
    """Write and check every file of the tree; a half-written tree from a cut deploy is rewritten."""
    if tree.exists():
        _rmtree(tree)
    b.write(tree)
    for rel, data in b.files.items():
        if (tree / rel).read_bytes() != data:
            raise DeployError(f"{tree / rel} did not read back as written; the old tree still runs")


def _rmtree(path: Path) -> None:
    shutil.rmtree(path)


def _install_ssh(host: str, b: Build, profile: dict[str, Any], started: float) -> Installed:
    """Stream the tree and unit with tar over ssh, then switch and restart the service there."""
    d = profile["deploy"]
    prefix = d["prefix"].rstrip("/")
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=buf, mode="w:gz") as tar:
        staging = Path(tmp) / "tree"
        _write_tree(staging, b)
        tar.add(staging, arcname=".")
    tree = f"{prefix}/trees/{b.tree_id}"
    q = shlex.quote
    script = " && ".join([
        f"mkdir -p {q(tree)}", f"tar -xzf - -C {q(tree)}",
        f"printf %s {q(unit_text(profile))} > {q('/etc/systemd/system/' + d['service'] + '.service')}",
        f"(id -u {q(d['user'])} >/dev/null 2>&1 || "
        f"useradd --system --no-create-home --groups dialout {q(d['user'])})",
        f"ln -sfn trees/{b.tree_id} {q(prefix + '/current.new')}",
        f"mv -T {q(prefix + '/current.new')} {q(prefix + '/current')}",
        f"find {q(prefix + '/trees')} -mindepth 1 -maxdepth 1 ! -name {b.tree_id} -exec rm -rf {{}} +",
        "systemctl daemon-reload",
        f"systemctl enable {q(d['service'])}",
        f"systemctl restart {q(d['service'])}",
    ])
    res = subprocess.run(
        ["ssh", host, "sudo sh -c " + q(script)], input=buf.getvalue(), capture_output=True, timeout=300
    )
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace")[-400:]
        raise DeployError(f"ssh {host} failed (exit {res.returncode}): {err}")
    unit = f"/etc/systemd/system/{d['service']}.service"
    return Installed(host, b.tree_id, None, len(b.files), unit, time.monotonic() - started, [])
