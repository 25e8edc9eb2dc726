#!/usr/bin/env bash
# Everything a fresh Debian machine needs: apt packages, a virtual environment with spoolbus
# installed, and MicroPython built from source. Each step is skipped when already done.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# Build tools for MicroPython's unix port and spoolbus's C decoder (python3-dev: Python's headers);
# the broker for MQTT tests; the QEMU board and its toolchain.
apt_packages=(build-essential pkg-config libffi-dev python3-venv python3-dev mosquitto mosquitto-clients
              qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "spoolbus: installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# (Re)install when the package's definition or its C decoder changed, or the decoder was never built.
stamp=.venv/.spoolbus-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
   || [ csrc/cbor_c.c -nt "$stamp" ] || ! ls runtime/spoolbus/_cbor_c.*.so >/dev/null 2>&1; then
  echo "spoolbus: creating .venv and installing spoolbus with its test dependencies"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[test]"
  touch "$stamp"
fi

bash scripts/build-micropython.sh

# Firmware with spoolbus frozen in, for the HIL tests (cached by content: instant when unchanged).
bash scripts/build-firmware.sh unix
bash scripts/build-firmware.sh qemu-mps2-an385
bash scripts/build-firmware.sh qemu-mps2-an385 deployable   # the demo's QEMU board
