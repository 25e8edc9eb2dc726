"""Deploy speed: `spoolbus deploy` against `mpremote cp -r` of the same compiled tree, same board, same run.

The board is a MicroPython unix board (the unix ROM: raw REPL on a pty). Each full deploy starts from an
empty flash; both tools are run as the commands a user types (process start included). A second table
takes the process start and connection out: mpremote's file API (SerialTransport.fs_writefile) against
spoolbus's deploy agent, in process, over the same pty.

    .venv/bin/pip install -e '.[bench]'   # mpremote, the peer
    .venv/bin/python bench/bench_deploy.py [--trials 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spoolbus_host.boards.unix_board import UnixBoard
from spoolbus_host.deploy import agent as dagent
from spoolbus_host.deploy import build as dbuild

APP_MAIN = "import spoolbus, sensor\nprint('bench app', sensor.VERSION)\n"
SENSOR = "VERSION = %d\n\ndef read():\n    return [i * i for i in range(10)]\n"


def _timed(cmd: list[str]) -> float:
    started = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-800:]}\n{res.stderr[-800:]}")
    return time.monotonic() - started


def _spoolbus(app: Path, port: str) -> list[str]:
    return [sys.executable, "-m", "spoolbus_host.cli", "deploy", str(app), "--port", port, "--json"]


def _mpremote(tree: Path, port: str) -> list[str]:
    return [sys.executable, "-m", "mpremote", "connect", port, "cp", "-r", str(tree), ":"]


def _materialize(build: dbuild.Build, tree: Path) -> None:
    shutil.rmtree(tree, ignore_errors=True)
    for rel, data in build.files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)


def _cli_rows(work: Path, trials: int, baud: int | None) -> list[tuple[str, list[float], list[float]]]:
    app = work / "app"
    app.mkdir(exist_ok=True)
    (app / "main.py").write_text(APP_MAIN)
    (app / "sensor.py").write_text(SENSOR % 1)
    tree = work / "tree"
    _materialize(dbuild.build(app), tree)  # also warms the mpy-cross cache, as mpremote gets a compiled tree
    rows: dict[str, tuple[list[float], list[float]]] = {
        "full deploy (empty board)": ([], []),
        "no-change redeploy": ([], []),
        "one module changed": ([], []),
    }
    for trial in range(trials):
        for tool in ("spoolbus", "mpremote"):
            (app / "sensor.py").write_text(SENSOR % 1)
            _materialize(dbuild.build(app), tree)
            with UnixBoard(work / f"flash-{tool}-{trial}-{baud}", baud=baud) as board:
                col = 0 if tool == "spoolbus" else 1
                cmd = _spoolbus(app, board.port) if tool == "spoolbus" else _mpremote(tree, board.port)
                rows["full deploy (empty board)"][col].append(_timed(cmd))
                rows["no-change redeploy"][col].append(_timed(cmd))
                (app / "sensor.py").write_text(SENSOR % 2)
                _materialize(dbuild.build(app), tree)
                rows["one module changed"][col].append(_timed(cmd))
    return [(name, s, m) for name, (s, m) in rows.items()]


def _api_row(work: Path, trials: int) -> tuple[list[float], list[float], int, int]:
    """Same files, in process: mpremote's fs_writefile per file vs the spoolbus agent's puts."""
    from mpremote.transport_serial import SerialTransport

    app = work / "app"
    build = dbuild.build(app)
    nbytes = sum(len(d) for d in build.files.values())
    ours, theirs = [], []
    for trial in range(trials):
        with UnixBoard(work / f"api-flash-{trial}") as board:
            agent = dagent.Agent(board.port)
            started = time.monotonic()
            for rel, data in sorted(build.files.items()):
                agent.put(f"api/{rel}", data)
            ours.append(time.monotonic() - started)
            agent.close(reset=False)
            t = SerialTransport(board.port, timeout=1)
            t.enter_raw_repl(soft_reset=False)
            started = time.monotonic()
            made = set()
            for rel, data in sorted(build.files.items()):
                parts = ("mp/" + rel).split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    d = "/".join(parts[:i])
                    if d not in made:
                        if not t.fs_exists(d):
                            t.fs_mkdir(d)
                        made.add(d)
                t.fs_writefile("mp/" + rel, data)
            theirs.append(time.monotonic() - started)
            t.exit_raw_repl()
            t.close()
    return ours, theirs, len(build.files), nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    med = statistics.median
    links = ((None, "pty, no rate limit"), (115200, "115200 baud, paced like a USB-UART"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tables = [(label, _cli_rows(work, args.trials, baud)) for baud, label in links]
        ours, theirs, files, nbytes = _api_row(work, args.trials)
    print(f"tree: {files} files, {nbytes} bytes of .mpy (the spoolbus runtime and a 2-module app); "
          f"median of {args.trials} trials")
    for label, rows in tables:
        print(f"\nlink: {label}\n")
        print("| operation | spoolbus deploy (s) | mpremote cp -r (s) | speed-up |")
        print("| --- | --- | --- | --- |")
        for name, s, m in rows:
            print(f"| {name} | {med(s):.2f} | {med(m):.2f} | {med(m) / med(s):.1f}x |")
    print("\n| transfer only, in process | spoolbus agent (s) | mpremote fs_writefile (s) | speed-up |")
    print("| --- | --- | --- | --- |")
    ratio = med(theirs) / med(ours)
    print(f"| {files} files, {nbytes} bytes (pty) | {med(ours):.3f} | {med(theirs):.3f} | {ratio:.1f}x |")
    for label, rows in tables:
        print(f"no-change redeploy, {label}: {med(rows[1][1]):.2f} s (target: under 1 s)")


if __name__ == "__main__":
    main()
