"""kill -9 trials on one spool: producers and consumers (CPython and MicroPython) killed at random points.

Shared by tests/host/test_spool_crash.py (a few hundred trials) and bench/crash_spool.py (more). After the
trials a consumer that is not killed drains the spool; then every id a producer logged (after its put
returned) must have been processed, exactly once, and nothing corrupt may have been delivered.
"""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKER = HERE / "spool_crash_worker.py"
MICROPYTHON = os.environ.get("SPOOLBUS_MICROPYTHON", str(ROOT / ".cache/micropython-1.25.0/bin/micropython"))

# Kill windows (seconds after start): CPython needs ~50 ms to import before it does anything.
_WINDOW = {"cpython": (0.03, 0.15), "micropython": (0.002, 0.06)}


def _start(interp: str, args: list[str]) -> subprocess.Popen:
    if interp == "micropython":
        # The consumer keeps every id of the shared ack log in a set (tens of thousands after a few hundred
        # trials on a quiet machine): more than the unix port's default 2 MB heap. The spool does not need it.
        cmd = [MICROPYTHON, "-X", "heapsize=64m", str(WORKER)]
        env = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime")
    else:
        cmd = [sys.executable, str(WORKER)]
        env = dict(os.environ, PYTHONPATH=f"{ROOT}/runtime")
    return subprocess.Popen(cmd + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run_trials(work: pathlib.Path, trials: int, seed: int = 1) -> dict:
    """Run the trials in `work`; returns counts. Raises AssertionError on a broken invariant."""
    rng = random.Random(seed)
    interps = ["cpython"] + (["micropython"] if os.path.exists(MICROPYTHON) else [])
    spool_dir = work / "spool"
    acks = work / "acks.log"
    acks.touch()
    kills = {"cpython": 0, "micropython": 0}
    for trial in range(trials):
        procs = []
        for k in range(rng.choice((1, 1, 2))):
            interp = rng.choice(interps)
            log = work / f"put-{trial}-{k}.log"
            procs.append((interp, _start(interp, ["produce", str(spool_dir), str(log), f"t{trial}p{k}"])))
        for _ in range(rng.choice((1, 1, 2))):
            interp = rng.choice(interps)
            procs.append((interp, _start(interp, ["consume", str(spool_dir), str(acks)])))
        start = time.monotonic()
        for at, (interp, p) in sorted((rng.uniform(*_WINDOW[i]), (i, p)) for i, p in procs):
            time.sleep(max(0.0, start + at - time.monotonic()))
            if p.poll() is not None:
                raise AssertionError(f"a {interp} worker exited by itself: {p.stderr.read().decode()}")
            p.send_signal(signal.SIGKILL)
            kills[interp] += 1
        for _, p in procs:
            p.wait()
            p.stderr.close()
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT / "runtime"))
    import spool_crash_worker

    drained = spool_crash_worker.consume(str(spool_dir), str(acks), drain=True)
    return check(work, trials, kills, drained)


def check(work: pathlib.Path, trials: int, kills: dict, drained: int) -> dict:
    put = set()
    for log in work.glob("put-*.log"):
        data = log.read_bytes()
        put.update(line for line in data[: data.rfind(b"\n") + 1].split(b"\n") if line)
    processed = [line for line in (work / "acks.log").read_bytes().split(b"\n") if line]
    bad = [line for line in processed if line.startswith(b"BAD")]
    assert not bad, f"corrupt messages delivered: {bad[:5]}"
    dups = len(processed) - len(set(processed))
    assert dups == 0, f"{dups} ids processed twice"
    lost = put - set(processed)
    assert not lost, f"{len(lost)} returned puts never delivered, e.g. {sorted(lost)[:5]}"
    spool_dir = work / "spool"
    left = {d: sorted(os.listdir(spool_dir / d)) for d in ("tmp", "new", "quarantine")}
    claimed = [n for o in os.listdir(spool_dir / "cur") for n in os.listdir(spool_dir / "cur" / o)]
    assert left == {"tmp": [], "new": [], "quarantine": []} and claimed == [], (left, claimed)
    return {
        "trials": trials,
        "kills": kills,
        "puts_returned": len(put),
        "processed": len(processed),
        "drained_at_end": drained,
    }
