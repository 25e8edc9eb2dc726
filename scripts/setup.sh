#!/usr/bin/env bash
# Everything a fresh Debian machine needs: apt packages, a virtual environment with spoolbus
# installed, and MicroPython built from source. Each step is skipped when already done.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# Build tools for MicroPython's unix port and spoolbus's C decoder (python3-dev: Python's headers);
# the brokers for MQTT tests (mosquitto; RabbitMQ, whose tests start a cluster of their own); the QEMU
# boards and their toolchains (Arm: newlib; RISC-V: bookworm has picolibc only).
apt_packages=(build-essential pkg-config libffi-dev python3-venv python3-dev mosquitto mosquitto-clients
              rabbitmq-server qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi
              qemu-system-misc gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "spoolbus: installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # A policy-rc.d that exits 101 stops the packages from starting their services (rabbitmq-server's
  # would take port 5672 and the default Erlang port mapper); one already there is put back afterwards.
  policy=/usr/sbin/policy-rc.d
  put_back_policy() {
    rm -f "$policy"
    [ ! -e "$policy.spoolbus-saved" ] || mv "$policy.spoolbus-saved" "$policy"
  }
  [ ! -e "$policy" ] || [ -e "$policy.spoolbus-saved" ] || mv "$policy" "$policy.spoolbus-saved"
  trap put_back_policy EXIT
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  put_back_policy
  trap - EXIT
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
bash scripts/build-firmware.sh qemu-mps2-an385 stock        # nothing frozen: test_mip_install's board
bash scripts/build-firmware.sh qemu-virt-rv32
