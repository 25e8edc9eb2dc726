#!/usr/bin/env bash
# Build the firmware of board profile BOARD (boards/BOARD.toml) with spoolbus frozen in; a second
# argument names a variant (firmware/VARIANT/manifest.py).
# Cached in .cache/firmware by a hash of the sources: a second run with nothing changed is instant.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 BOARD [VARIANT] (BOARD one of: $(cd "$here/boards" && ls *.toml | sed 's/\.toml$//' | tr '\n' ' '))" >&2; exit 2; }
exec "$here/.venv/bin/python" -m spoolbus_host.cli build-firmware --board "$1" --variant "${2:-}"
