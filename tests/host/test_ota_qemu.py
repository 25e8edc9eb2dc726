"""OTA to the QEMU board (32-bit Cortex-M3, littlefs RAM disk) through a bridge: a new tree boots and is
confirmed, one that raises at import is back on the old tree within two boots, a rollback goes back; and
the heap the update service takes while receiving, on the 32-bit board (the issue's budget: 8 KB).

The runtime is frozen into the firmware's deployable variant; only the application travels (the
emulated UART moves a few KB a second).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from spoolbus import node as sbnode
from spoolbus_host import serialport
from spoolbus_host.bridge.gateway import Bridge
from spoolbus_host.deploy import micropython as serial_deploy
from spoolbus_host.deploy import ota
from spoolbus_host.deploy.build import DeployError, build
from spoolbus_host.mqtt.paho import PahoTransport

APP = Path(__file__).with_name("ota_qemu_app")
BRIDGE = "gw"
TARGET = "gw/qemu"
HEAP_BUDGET = 8 * 1024


@pytest.fixture(scope="module")
def deployable():
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("qemu-system-arm or the ARM toolchain is not installed")
    from spoolbus_host.boards import firmware, profiles

    profile = profiles.load("qemu-mps2-an385")
    elf, _ = firmware.ensure_built(profile, variant="deployable")
    return profile, elf


def _app(root: Path, v: int, main: str | None = None) -> Path:
    out = root / f"app-{v}"
    if out.exists():
        return out
    shutil.copytree(APP, out)
    (out / "version.py").write_text(f"V = {v}\nNAME = {TARGET!r}\nDEADLINE_S = 20\n")
    if main is not None:
        (out / "main.py").write_text(main)
    return out


@pytest.fixture
def rig(tmp_path, mosquitto, deployable):
    """The QEMU board with release 1 deployed over its UART, attached to a bridge; a host node on the
    broker."""
    from spoolbus_host.boards import qemu

    profile, elf = deployable
    board = qemu.boot(profile, elf)
    no_runtime = tmp_path / "no-runtime"
    no_runtime.mkdir()
    stop = threading.Event()
    bridge = thread = host = None
    try:
        serial_deploy.deploy(board.port, _app(tmp_path, 1), root="/flash", runtime=no_runtime)
        bridge = Bridge(BRIDGE, "127.0.0.1", mosquitto.port, str(tmp_path / "outbox"))
        link = serialport.connect(board.port, name=BRIDGE, baudrate=profile.baudrate,
                                  max_frame=profile.max_frame, keepalive_ms=profile.keepalive_ms,
                                  dead_ms=profile.dead_ms)
        bridge.attach("qemu", link, where=board.port)
        thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
        thread.start()
        t = PahoTransport("127.0.0.1", mosquitto.port, "host", "ota-qemu", clean_session=True, presence=False)
        host = sbnode.Node(t.name, t, timeout=10.0)
        _wait_version(host, 1)
        yield tmp_path, host, no_runtime
    finally:
        if host is not None:
            host.close()
        stop.set()
        if thread is not None:
            thread.join(10)
        if bridge is not None:
            bridge.close()
        board.stop()


def _wait_version(host: sbnode.Node, want: int, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        try:
            got = host.call(TARGET, "app.version", timeout=2.0)
            if got == want:
                return
        except Exception:  # noqa: BLE001 - the board is rebooting: ask again
            time.sleep(0.5)
    raise AssertionError(f"{TARGET} runs release {got}, not {want}")


def test_ota_to_the_qemu_board_confirms_reverts_a_release_that_raises_and_rolls_back(rig):
    tmp_path, host, runtime = rig
    two = ota.deploy_over_bus(host, TARGET, _app(tmp_path, 2), runtime=runtime)
    assert not two.up_to_date and two.sent >= 1
    _wait_version(host, 2)
    assert ota.deploy_over_bus(host, TARGET, _app(tmp_path, 2), runtime=runtime).up_to_date
    # Release 3 raises while it starts: the loader records it and the next boot runs release 2 again.
    bad = _app(tmp_path, 3, main="raise RuntimeError('release 3 fails at import')\n")
    with pytest.raises(DeployError, match="failed its trial"):
        ota.deploy_over_bus(host, TARGET, bad, runtime=runtime)
    _wait_version(host, 2)
    status = host.call(TARGET, "update.status")
    assert status["failed"]["tree"].startswith(build(bad, None, runtime).tree_id)
    assert "release 3 fails at import" in (status["failed"]["reason"] + status["failed"]["trace"])
    # Back to the tree before release 2.
    ota.rollback_over_bus(host, TARGET)
    _wait_version(host, 1)


def test_the_update_service_takes_at_most_8_kb_of_heap_on_the_32_bit_board_while_receiving(rig):
    tmp_path, host, runtime = rig
    for _ in range(20):  # the application's own traffic first: its node's dedup ring fills
        assert host.call(TARGET, "app.version") == 1
    big = _app(tmp_path, 2)
    # A file of several puts, so the service's state while receiving (open file, inflater, hash) is met.
    (big / "blob.bin").write_bytes(bytes((i * 7919) % 251 for i in range(12 * 1024)))
    ota.deploy_over_bus(host, TARGET, big, runtime=runtime)
    _wait_version(host, 2)
    own, served, before, during = (int(x) for x in ota.fetch(host, TARGET, "heap-1.txt").split())
    service = served - own + during - before  # its import and state, and what receiving adds
    print(f"\nQEMU mps2-an385 (32-bit), release 1: application after set-up {own} B, update.serve "
          f"+{served - own} B; peak live heap serving its own calls {before} B, while receiving an update "
          f"{during} B (+{during - before} B): the service takes {service} B (budget {HEAP_BUDGET} B)")
    assert service <= HEAP_BUDGET
