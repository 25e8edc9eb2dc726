#!/usr/bin/env bash
# Build the MicroPython unix port (and mpy-cross) from source into .cache/micropython-$VERSION/bin.
# Cached by version: a second run is instant; an empty cache rebuilds from the Debian source package.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=${MICROPYTHON_VERSION:-1.25.0}
cache="$here/.cache/micropython-$version"
bin="$cache/bin"
if [ -x "$bin/micropython" ] && [ -x "$bin/mpy-cross" ]; then exit 0; fi

bash "$here/scripts/fetch-micropython.sh"
src="$cache/src"
jobs=$(nproc 2>/dev/null || echo 2)
echo "spoolbus: building MicroPython $version unix port ($jobs jobs)"
make -s -C "$src/mpy-cross" -j"$jobs" >"$cache/build-mpy-cross.log" 2>&1 \
  || { tail -n 30 "$cache/build-mpy-cross.log"; exit 1; }
make -s -C "$src/ports/unix" -j"$jobs" FROZEN_MANIFEST= MICROPY_PY_BTREE=0 MICROPY_SSL_AXTLS=0 \
  MICROPY_SSL_MBEDTLS=0 MICROPY_PY_SSL=0 >"$cache/build-unix.log" 2>&1 \
  || { tail -n 30 "$cache/build-unix.log"; exit 1; }
mkdir -p "$bin"
cp "$src/mpy-cross/build/mpy-cross" "$bin/mpy-cross"
cp "$src/ports/unix/build-standard/micropython" "$bin/micropython"
"$bin/micropython" -c "import sys; print('spoolbus: built MicroPython', sys.implementation.version)"
