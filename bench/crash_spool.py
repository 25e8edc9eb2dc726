"""Many kill -9 trials on one spool (the suite runs 300): producers and consumers killed at random points.

Run: .venv/bin/python bench/crash_spool.py [--trials 2000] [--seed N]
Each trial starts one or two producers and one or two consumers (CPython or MicroPython, at random) on
the same spool and kills each with SIGKILL at a random moment. At the end a consumer drains the spool;
every id a producer logged after its put returned must have been processed exactly once, and nothing
corrupt delivered. Prints the counts; exits non-zero on a broken invariant.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "host"))

from spool_crash import run_trials  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="crash-spool-") as work:
        try:
            stats = run_trials(pathlib.Path(work), args.trials, args.seed)
        except AssertionError as e:
            print(f"FAILED (seed {args.seed}): {e}")
            return 1
    print(
        f"spool kill -9: {stats['trials']} trials passed (seed {args.seed}), {stats['puts_returned']} puts "
        f"returned, {stats['processed']} processed exactly once, {stats['drained_at_end']} drained at the "
        f"end, kills {stats['kills']}, {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
