"""OTA goodput: `spoolbus deploy APP --to` through a bridge against `spoolbus deploy APP --port` (raw REPL).

Both boards are MicroPython unix boards behind a pty paced like a UART (115200 baud, 10 bits a byte each
way), in the same run. The bridge holds one board's pty (its console carries frames); the other's
console is free for the raw REPL. Each trial deploys a new release to both: the same ~40 KB of real code
(the runtime's modules copied into the app as `vendor/`, each with its release number appended) changes,
nothing else. Goodput = bytes of the changed .mpy files / wall time of the deploy, in process on both sides
(build from the compile cache, transfer, the board's reboot and, over the bus, its confirmation); the host
node on the broker is made once, as a long-running tool would (each `spoolbus deploy --to` process is a new
source, and a board is `busy` for 10 s to a new one). A no-change OTA is timed after each.

    .venv/bin/python bench/bench_ota.py [--trials 3] [--window 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "host"))

from ota_rig import Rig  # noqa: E402
from spoolbus_host.deploy import micropython as serial_deploy  # noqa: E402
from spoolbus_host.deploy import ota  # noqa: E402
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


def _timed(fn, *args, **kw) -> tuple[float, object]:
    started = time.monotonic()
    report = fn(*args, **kw)
    return time.monotonic() - started, report


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
            kw = {"window": args.window} if args.window else {}
            old_bus, old_raw = bus.first, raw.first
            for trial in range(1, args.trials + 1):
                new_bus = bus.release(trial, files=_vendor(trial))
                new_raw = raw.release(trial, files=_vendor(trial))
                files, nbytes = _changed(old_bus, new_bus)
                assert (files, nbytes) == _changed(old_raw, new_raw)
                took, report = _timed(ota.deploy_over_bus, bus.host, bus.name, new_bus, **kw)
                assert report.sent == files, report
                ota_s.append(took)
                bus.wait_answering(version=trial)
                took, report = _timed(serial_deploy.deploy, raw.board.port, new_raw)
                assert report.sent == files, report
                serial_s.append(took)
                raw.wait_answering(version=trial)
                took, report = _timed(ota.deploy_over_bus, bus.host, bus.name, new_bus, **kw)
                assert report.up_to_date, report
                nochange_s.append(took)
                old_bus, old_raw = new_bus, new_raw
    bus_s, ser = med(ota_s), med(serial_s)
    print(f"changed set: {files} files, {nbytes} bytes of .mpy (the runtime's modules as app code); "
          f"link: {BAUD} baud, paced like a USB-UART; median of {args.trials} trials")
    print("\n| deploy of the changed set | wall time (s) | goodput (KB/s) |")
    print("| --- | --- | --- |")
    print(f"| deploy_over_bus (OTA through the bridge) | {bus_s:.2f} | {nbytes / bus_s / 1000:.1f} |")
    print(f"| deploy over the raw REPL | {ser:.2f} | {nbytes / ser / 1000:.1f} |")
    print(f"\nOTA / raw REPL goodput: {ser / bus_s:.2f}x (target: at least 0.8x)")
    print(f"no-change OTA: {med(nochange_s):.2f} s (target: under 1 s)")
    print("trials (s): ota " + " ".join(f"{t:.2f}" for t in ota_s) + "; serial " +
          " ".join(f"{t:.2f}" for t in serial_s) + "; no-change " + " ".join(f"{t:.2f}" for t in nochange_s))


if __name__ == "__main__":
    main()
