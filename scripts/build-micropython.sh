#!/usr/bin/env bash
# Build the MicroPython unix port (and mpy-cross) from source into .cache/micropython-$VERSION/bin.
# The port has the tls module on Mbed TLS 3.6 with MicroPython's own configuration, as its boards do.
# Cached by version and make flags: a second run is instant; other flags rebuild the port from scratch.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=${MICROPYTHON_VERSION:-1.25.0}
cache="$here/.cache/micropython-$version"
bin="$cache/bin"
flags=(FROZEN_MANIFEST= MICROPY_PY_BTREE=0 MICROPY_SSL_AXTLS=0 MICROPY_SSL_MBEDTLS=1 MICROPY_PY_SSL=1)
stamp="$bin/micropython.flags"
if [ -x "$bin/micropython" ] && [ -x "$bin/mpy-cross" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${flags[*]}" ]; then
  exit 0
fi

bash "$here/scripts/fetch-micropython.sh"
src="$cache/src"
jobs=$(nproc 2>/dev/null || echo 2)
mkdir -p "$bin"
if [ ! -x "$bin/mpy-cross" ]; then
  make -s -C "$src/mpy-cross" -j"$jobs" >"$cache/build-mpy-cross.log" 2>&1 \
    || { tail -n 30 "$cache/build-mpy-cross.log"; exit 1; }
  cp "$src/mpy-cross/build/mpy-cross" "$bin/mpy-cross"
fi
echo "spoolbus: building MicroPython $version unix port ($jobs jobs)"
# make does not see changed flags: objects of an earlier build would be linked in.
rm -rf "$src/ports/unix/build-standard"
make -s -C "$src/ports/unix" -j"$jobs" "${flags[@]}" >"$cache/build-unix.log" 2>&1 \
  || { tail -n 30 "$cache/build-unix.log"; exit 1; }
# A rename: processes running the old binary (tests of another shell) keep it.
cp "$src/ports/unix/build-standard/micropython" "$bin/micropython.new"
mv -f "$bin/micropython.new" "$bin/micropython"
echo "${flags[*]}" >"$stamp"
"$bin/micropython" -c "import sys, tls; print('spoolbus: built MicroPython', sys.implementation.version, 'with', tls.MBEDTLS_VERSION)"
