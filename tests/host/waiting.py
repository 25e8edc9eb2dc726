"""Waiting in tests for something another process or thread makes true."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(what: Callable[[], bool], timeout: float) -> float:
    """Seconds until `what()` holds, asked every 20 ms; fails the test after `timeout`."""
    start = time.monotonic()
    while not what():
        assert time.monotonic() - start < timeout, "not in time"
        time.sleep(0.02)
    return time.monotonic() - start
