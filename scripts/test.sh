#!/usr/bin/env bash
# The whole test suite: the portable tests under CPython and under the MicroPython unix port,
# then the host tests. Assumes scripts/setup.sh has run (make test does that).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export SPOOLBUS_MICROPYTHON="$here/.cache/micropython-1.25.0/bin/micropython"
export SPOOLBUS_MPY_CROSS="$here/.cache/micropython-1.25.0/bin/mpy-cross"

echo "== ruff"
.venv/bin/ruff check runtime host_tools tests bench
echo "== portable tests under MicroPython $("$SPOOLBUS_MICROPYTHON" -c 'import sys; print(sys.version)')"
MICROPYPATH="$here/runtime:$here/tests/portable:.frozen" "$SPOOLBUS_MICROPYTHON" tests/mp_runner.py tests/portable
echo "== CPython tests (portable + host)"
.venv/bin/python -m pytest -q tests
