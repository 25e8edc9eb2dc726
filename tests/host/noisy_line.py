"""What the noisy-line runs (tests/host/test_hil_faults.py and bench/bench_serial.py) share."""

from __future__ import annotations

from spoolbus import errors
from spoolbus.node import Node


def take_all(node: Node, timeout: float) -> tuple[list[bytes], int]:
    """Empty the board's spool with spool.take calls: (the records taken, how many takes timed out).
    A take that timed out may have run on the board; its record is then gone with the reply."""
    stored = []
    lost_takes = 0
    while True:
        try:
            got = node.call("board", "spool.take", timeout=timeout)
        except errors.Timeout:
            lost_takes += 1
            continue
        if got is None:
            return stored, lost_takes
        stored.append(got)
