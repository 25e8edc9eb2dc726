"""OTA goodput: `spoolbus deploy APP --to` through a bridge against `spoolbus deploy APP --port` (raw REPL).

Both boards are MicroPython unix boards behind a pty paced like a UART (115200 baud, 10 bits a byte each
way), in the same run. The bridge holds one board's pty (its console carries frames); the other's
console is free for the raw REPL. Each trial deploys a new release to both: the same ~40 KB of real code
(the runtime's modules copied into the app as `vendor/`, each with its release number appended) changes,
nothing else. Goodput = bytes of the changed .mpy files / wall time of the command as a user types it
(process start, transfer, the board's reboot and, over the bus, its confirmation). A no-change OTA is
timed after each.

    .venv/bin/python bench/bench_ota.py [--trials 3] [--window 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "host"))

from ota_rig import Rig  # noqa: E402
from spoolbus_host.deploy.build import build  # noqa: E402
from spoolbus_host.paths import RUNTIME  # noqa: E402

BAUD = 115200


def _vendor(release: int) -> dict[str, str]:
    """Real code that changes in every release: the runtime's modules, with a line appended."""
    out = {}
    for src in sorted(RUNTIME.rglob("*.py")):
        rel = src.relative_to(RUNTIME).as_posix()
        out[f"vendor/{rel}"] = src.read_text() + f"\n_RELEASE = {release}\n"
    return out


def _timed(cmd: list[str]) -> tuple[float, dict]:
    started = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    took = time.monotonic() - started
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-800:]}\n{res.stderr[-800:]}")
    return took, json.loads(res.stdout)


def _deploy(app: Path, *where: str) -> list[str]:
    return [sys.executable, "-m", "spoolbus_host.cli", "deploy", str(app), *where, "--json"]


def _changed(old: Path, new: Path) -> tuple[int, int]:
    a, b = build(old), build(new)
    changed = [p for p in b.files if a.hashes.get(p) != b.hashes[p]]
    return len(changed), sum(len(b.files[p]) for p in changed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--window", type=int, default=None, help="puts in flight (default: the deploy's own)")
    args = ap.parse_args()
    med = statistics.median
    ota_s, serial_s, nochange_s = [], [], []
    files = nbytes = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with Rig(work / "ota", link="serial", baud=BAUD) as bus, Rig(work / "serial", link="spool",
                                                                      baud=BAUD) as raw:
            # The raw-REPL board runs the same app on a spool: its console stays free for the REPL.
            bus.start(bus.release(0, files=_vendor(0)))
            raw.start(raw.release(0, files=_vendor(0)))
            to = ["--to", bus.name, "--broker", f"127.0.0.1:{bus.broker.port}"]
            if args.window:
                to += ["--window", str(args.window)]
            old_bus, old_raw = bus.first, raw.first
            for trial in range(1, args.trials + 1):
                new_bus = bus.release(trial, files=_vendor(trial))
                new_raw = raw.release(trial, files=_vendor(trial))
                files, nbytes = _changed(old_bus, new_bus)
                assert (files, nbytes) == _changed(old_raw, new_raw)
                took, report = _timed(_deploy(new_bus, *to))
                assert report["sent"] == files, report
                ota_s.append(took)
                bus.wait_answering(version=trial)
                took, report = _timed(_deploy(new_raw, "--port", raw.board.port))
                serial_s.append(took)
                raw.wait_answering(version=trial)
                took, report = _timed(_deploy(new_bus, *to))
                assert report["up_to_date"], report
                nochange_s.append(took)
                old_bus, old_raw = new_bus, new_raw
    ota, ser = med(ota_s), med(serial_s)
    print(f"changed set: {files} files, {nbytes} bytes of .mpy (the runtime's modules as app code); "
          f"link: {BAUD} baud, paced like a USB-UART; median of {args.trials} trials")
    print("\n| deploy of the changed set | wall time (s) | goodput (KB/s) |")
    print("| --- | --- | --- |")
    print(f"| `spoolbus deploy --to` (OTA through the bridge) | {ota:.2f} | {nbytes / ota / 1000:.1f} |")
    print(f"| `spoolbus deploy --port` (raw REPL) | {ser:.2f} | {nbytes / ser / 1000:.1f} |")
    print(f"\nOTA / raw REPL goodput: {ser / ota:.2f}x (target: at least 0.8x)")
    print(f"no-change OTA: {med(nochange_s):.2f} s (target: under 1 s)")
    print("trials (s): ota " + " ".join(f"{t:.2f}" for t in ota_s) + "; serial " +
          " ".join(f"{t:.2f}" for t in serial_s) + "; no-change " + " ".join(f"{t:.2f}" for t in nochange_s))


if __name__ == "__main__":
    main()
