"""Deploy an application and the spoolbus runtime to a MicroPython board: compile, copy what changed, switch.

Guarantees: the board runs either the old tree or the complete, hash-verified new one. Files go to a
new tree `app/<id>`; one rename of `app/current` (the name the boot loader reads) is the switch, so a
link cut or a power cut at any moment before it leaves the old code running, and a later deploy
resumes from the files that arrived intact. The tree it replaces stays as `app/previous`, for
`rollback` (and the update service's, docs/deploy.md: both keep the same files).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from spoolbus_host.deploy.agent import AGENT_FILE, Agent
from spoolbus_host.deploy.build import (
    MANIFEST_NAME,
    Build,
    DeployError,
    build,
    find_mpy_cross,
    loader,
    mpy_cross_version,
    parse_manifest,
)
from spoolbus_host.paths import RUNTIME
from spoolbus_host.progress import Progress


@dataclass
class Report:
    """What a deploy did, for people (summary line) and scripts (--json)."""

    port: str
    tree_id: str
    previous_id: str | None
    files: int
    sent: int = 0
    local_copies: int = 0
    reused: int = 0
    removed: int = 0
    bytes_sent: int = 0
    verified: int = 0
    seconds: float = 0.0
    up_to_date: bool = False
    rolled_back: bool = False

    def summary(self) -> str:
        if self.rolled_back:
            return (f"{self.port}: rolled back to tree {self.tree_id} (tree {self.previous_id} is now the "
                    f"previous one) in {self.seconds:.2f} s")
        if self.up_to_date:
            return f"{self.port}: tree {self.tree_id} already running ({self.files} files); nothing copied"
        return (
            f"{self.port}: switched to tree {self.tree_id} ({self.files} files: {self.sent} sent, "
            f"{self.local_copies} copied on the board, {self.reused} kept; {self.bytes_sent} bytes; "
            f"{self.verified} hashes verified) in {self.seconds:.2f} s"
        )


def deploy(
    port: str,
    app: Path,
    *,
    mpy_cross: str | None = None,
    root: str = "",
    runtime: Path = RUNTIME,
    reset: bool = True,
    progress: Progress | None = None,
    baudrate: int = 115200,
) -> Report:
    """Deploy `app` (and the runtime) to the board on `port`; see the module docstring for the guarantees."""
    started = time.monotonic()
    tool = find_mpy_cross(mpy_cross)
    b = build(Path(app), tool, runtime)
    r = root.rstrip("/") + "/" if root else ""
    agent = Agent(port, baudrate=baudrate, root=r)
    try:
        expected = mpy_cross_version(tool)
        if agent.mpy_version and agent.mpy_version != expected:
            raise DeployError(
                f"the board on {port} loads .mpy version {agent.mpy_version} but {tool} emits version "
                f"{expected}: use the mpy-cross of the board's MicroPython release (--mpy-cross)"
            )
        agent.keep_copy()  # before the switch: if it fails, the old tree still runs (as DeployError says)
        report = _sync(agent, b, r, progress)
        report.bytes_sent = agent.bytes_sent
        report.seconds = time.monotonic() - started
        agent.close(reset=reset)
    except BaseException:
        agent.serial.close()
        raise
    return report


def _sync(agent: Agent, b: Build, r: str, progress: Progress | None) -> Report:
    """Bring the board's tree in line with `b`; every device path starts with the deploy root `r`.

    `app/current` holds the running tree's directory name: the tree id, or the id with ".1" when a
    tree is rebuilt over a damaged copy of itself (the running directory is never written to).
    """
    cur = agent.get(f"{r}app/current")
    cur_dir = cur.decode().strip() if cur else None
    cur_id = cur_dir.split(".")[0] if cur_dir else None
    report = Report(agent.port, b.tree_id, cur_id, len(b.files))
    loader_ok = agent.get(f"{r}main.py") == loader(r)
    if cur_id == b.tree_id and agent.tree_digest(f"{r}app/{cur_dir}") == b.digest:
        # The running tree is this build, every file re-hashed on the board (one line comes back).
        report.verified = len(b.files)
        if not loader_ok:
            _write_loader(agent, r)
        report.up_to_date = True
        return report
    # What the running tree holds, by its manifest; a damaged file copied from it is caught by the
    # check of the new tree below and sent again.
    cur_hashes = parse_manifest(agent.get(f"{r}app/{cur_dir}/{MANIFEST_NAME}") or b"") if cur_dir else {}
    stage_dir = b.tree_id + ".1" if cur_dir == b.tree_id else b.tree_id
    stage = f"{r}app/{stage_dir}"
    # An earlier deploy of the same tree that was cut short: keep the files that arrived intact.
    present = agent.hashes(stage)
    todo = [p for p in sorted(b.files) if present.get(p) != b.hashes[p]]
    report.reused = len(b.files) - len(todo)
    sends = [p for p in todo if cur_hashes.get(p) != b.hashes[p]]
    # Copies on the board first, then the sends, smallest first: a cut link loses the least work.
    todo.sort(key=lambda p: (p in sends, len(b.files[p]) if p in sends else 0, p))
    if progress:
        progress.start(len(todo), sum(len(b.files[p]) for p in sends))
    _remove_extra(agent, b, stage, present, report)
    for p in todo:
        if p in sends:
            agent.put(f"{stage}/{p}", b.files[p], progress.advance_bytes if progress else None)
            report.sent += 1
        else:
            agent.request(f"C {r}app/{cur_dir}/{p} {stage}/{p}")
            report.local_copies += 1
        if progress:
            progress.advance_file(p)
    _verify(agent, b, stage, report)
    if not loader_ok:
        _write_loader(agent, r)
    keep = {stage_dir, "current", "failed", AGENT_FILE}
    if cur_dir:  # the running tree becomes the previous one: written before the switch
        _point(agent, f"{r}app/previous", cur_dir)
        keep |= {cur_dir, "previous"}
    # The switch: one rename replaces the name the loader reads.
    _point(agent, f"{r}app/current", stage_dir)
    for name in agent.request(f"L {r}app").split():
        if name not in keep:  # older trees, a stale app/trial, pointers left half-written
            agent.request(f"X {r}app/{name}")
            report.removed += 1
    if progress:
        progress.finish()
    return report


def _verify(agent: Agent, b: Build, stage: str, report: Report) -> None:
    """The board writes the manifest of the files the stage holds; it must be the build's, byte for byte
    (so no file differs, none is missing, and no extra one could shadow a module). Files whose hash
    differs are sent once more, extra ones removed; the per-file hashes are fetched only then."""
    if agent.tree_digest(stage, write=True) != b.digest:
        got = agent.hashes(stage)
        _remove_extra(agent, b, stage, got, report)
        for p in [p for p in sorted(b.files) if got.get(p) != b.hashes[p]]:
            agent.put(f"{stage}/{p}", b.files[p])
            report.sent += 1
        if agent.tree_digest(stage, write=True) != b.digest:
            got = agent.hashes(stage)
            bad = [p for p in sorted(b.files) if got.get(p) != b.hashes[p]] or sorted(set(got) - set(b.files))
            raise DeployError(
                f"hash check failed on {agent.port} for {', '.join(bad[:5])}; "
                "the old code still runs: deploy again"
            )
    report.verified = len(b.files) + 1  # and the manifest


def _remove_extra(agent: Agent, b: Build, stage: str, held: dict[str, str], report: Report) -> None:
    """Delete the files of the stage (`held`: path -> hash) that the build does not have."""
    for p in sorted(set(held) - set(b.files) - {MANIFEST_NAME}):
        agent.request(f"X {stage}/{p}")
        report.removed += 1


def rollback(
    port: str, root: str = "", *, reset: bool = True, baudrate: int = 115200
) -> Report:
    """Boot the previous tree again: `app/current` names the previous tree, `app/previous` the one that
    ran; then (with reset) a soft reset. DeployError "no previous tree on PORT" when there is none."""
    started = time.monotonic()
    r = root.rstrip("/") + "/" if root else ""
    agent = Agent(port, baudrate=baudrate, root=r)
    try:
        cur = (agent.get(f"{r}app/current") or b"").decode().strip()
        prev = (agent.get(f"{r}app/previous") or b"").decode().strip()
        if not prev or not cur or prev == cur or prev not in agent.request(f"L {r}app").split():
            agent.close(reset=reset)  # the board goes back to what it ran
            raise DeployError(f"no previous tree on {port}")
        agent.put(f"{r}app/previous.new", cur.encode())  # both pointers ready before the switch
        _point(agent, f"{r}app/current", prev)
        agent.request(f"N {r}app/previous.new {r}app/previous")
        agent.close(reset=reset)
    except BaseException:
        agent.serial.close()
        raise
    return Report(port, prev.split(".")[0], cur.split(".")[0], 0, rolled_back=True,
                  seconds=time.monotonic() - started)


def _point(agent: Agent, path: str, value: str) -> None:
    """Write a pointer file (app/current, app/previous) as PATH.new and rename it onto PATH."""
    agent.put(f"{path}.new", value.encode())
    agent.request(f"N {path}.new {path}")


def _write_loader(agent: Agent, r: str) -> None:
    agent.put(f"{r}main.py.new", loader(r))
    agent.request(f"N {r}main.py.new {r}main.py")
