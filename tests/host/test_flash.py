"""`spoolbus flash`: everything up to the hardware, with real files, real ptys, real esptool and QEMU.

There is no ESP32 or Pico on this machine: esptool is run against a pty where no chip answers, and
the UF2 copy goes to a directory made to look like the RPI-RP2 drive (it has an INFO_UF2.TXT).
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest
import serial
from spoolbus_host.boards import flash, methods

RP2040 = 0xE48BFF56
INFO = "UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n"


def _uf2(blocks=3, family=RP2040, corrupt_block=None, total=None):
    out = bytearray()
    for i in range(blocks):
        head = struct.pack("<8I", flash.UF2_MAGIC_START0, flash.UF2_MAGIC_START1, flash.UF2_FLAG_FAMILY_ID,
                           0x10000000 + 256 * i, 256, i, total or blocks, family)
        blk = head + bytes([i]) * 256 + bytes(476 - 256) + struct.pack("<I", flash.UF2_MAGIC_END)
        if i == corrupt_block:
            blk = blk[:-4] + b"\0\0\0\0"
        out += blk
    return bytes(out)


def _esp_image(chip_id=0):
    # 8-byte image header (magic 0xE9), then the extended header: chip id at bytes 12-13.
    return bytes([0xE9, 1, 2, 0x20]) + struct.pack("<I", 0x40080000) + bytes(4) + struct.pack("<H", chip_id) \
        + bytes(10) + b"\x55" * 1000


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "spoolbus_host.cli", "flash", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def drive(tmp_path):
    d = tmp_path / "media" / "user" / "RPI-RP2"
    d.mkdir(parents=True)
    (d / "INFO_UF2.TXT").write_text(INFO)
    return d


def test_uf2_is_checked_then_copied_whole_to_the_bootloader_drive(tmp_path, drive):
    image = tmp_path / "firmware.uf2"
    image.write_bytes(_uf2(5))
    out = _cli("--board", "rp2-pico", "--image", str(image), "--drive", str(drive), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["method"] == "uf2" and result["bytes"] == 5 * 512
    assert (drive / "firmware.uf2").read_bytes() == image.read_bytes()


def test_the_bootloader_drive_is_found_by_its_info_file(tmp_path, drive):
    assert flash.find_uf2_drive("RPI-RP2", roots=(str(tmp_path / "media"),)) == drive
    other = tmp_path / "media" / "user" / "USBSTICK"
    other.mkdir()
    (other / "README.TXT").write_text("not a bootloader")
    assert flash.find_uf2_drive("RPI-RP2", roots=(str(tmp_path / "media"),)) == drive
    with pytest.raises(flash.FlashError, match="no RPI-RP2 drive mounted .* hold BOOTSEL"):
        flash.find_uf2_drive("RPI-RP2", roots=(str(tmp_path / "empty"),))


@pytest.mark.parametrize("data, message", [
    (_uf2(3, family=0xADA52840), "wrong chip: this UF2 is for family 0xada52840, the board needs 0xe48bff56"),
    (_uf2(3, corrupt_block=1), "block 1 has wrong magic numbers"),
    (_uf2(3, total=4), "block 0 says it is 0 of 4 \\(file has 3\\)"),
    (_uf2(2)[:700], "not a whole number of 512-byte blocks"),
    (b"\x7fELF" + bytes(508), "block 0 has wrong magic numbers"),
])
def test_a_bad_uf2_is_refused_before_anything_is_written(tmp_path, drive, data, message):
    image = tmp_path / "bad.uf2"
    image.write_bytes(data)
    with pytest.raises(flash.FlashError, match=message):
        flash.flash_uf2(methods.read("rp2-pico"), image, drive)
    assert not (drive / "bad.uf2").exists()


def test_uf2_errors_on_the_command_line(tmp_path, drive):
    out = _cli("--board", "rp2-pico", "--drive", str(drive))
    assert out.returncode == 2 and "no firmware image given" in out.stderr
    out = _cli("--board", "rp2-pico", "--image", str(tmp_path / "missing.uf2"), "--drive", str(drive))
    assert out.returncode == 2 and "missing.uf2 does not exist" in out.stderr
    image = tmp_path / "firmware.uf2"
    image.write_bytes(_uf2(1))
    out = _cli("--board", "rp2-pico", "--image", str(image), "--drive", str(tmp_path))
    assert out.returncode == 2 and "not a UF2 bootloader drive" in out.stderr


def test_esp32_image_checks_name_a_wrong_chip_and_a_wrong_file(tmp_path):
    profile = methods.read("esp32")
    flash.check_esp_image(_esp_image(0), "esp32")
    with pytest.raises(flash.FlashError, match="wrong chip: the image is for esp32s3, the board is esp32"):
        flash.check_esp_image(_esp_image(9), "esp32")
    with pytest.raises(flash.FlashError, match="not an ESP firmware image"):
        flash.check_esp_image(_uf2(1), "esp32")
    bad = tmp_path / "s3.bin"
    bad.write_bytes(_esp_image(9))
    out = _cli("--board", "esp32", "--image", str(bad), "--port", "/dev/null")
    assert out.returncode == 2 and "wrong chip" in out.stderr
    good = tmp_path / "firmware.bin"
    good.write_bytes(_esp_image(0))
    out = _cli("--board", "esp32", "--image", str(good), "--port", "/dev/ttyUSB-nope")
    assert out.returncode == 2 and "no serial port /dev/ttyUSB-nope" in out.stderr
    out = _cli("--board", "esp32", "--image", str(good))
    assert out.returncode == 2 and "--port is required" in out.stderr
    with pytest.raises(flash.FlashError, match="does not exist"):
        flash.flash_esptool(profile, tmp_path / "none.bin", "/dev/null")


def test_esptool_on_a_port_where_no_chip_answers_is_a_clear_error(tmp_path):
    good = tmp_path / "firmware.bin"
    good.write_bytes(_esp_image(0))
    master, slave = os.openpty()
    port = os.ttyname(slave)
    try:
        with pytest.raises(flash.FlashError, match=f"no chip answered on {port}: .*bootloader mode"):
            flash.flash_esptool(methods.read("esp32"), good, port, connect_attempts=1)
    finally:
        os.close(master)
        os.close(slave)


def test_boards_that_spoolbus_does_not_flash_say_what_to_do_instead():
    out = _cli("--board", "raspberry-pi")
    assert out.returncode == 2 and "spoolbus deploy" in out.stderr
    out = _cli("--board", "unix")
    assert out.returncode == 2 and "build-firmware" in out.stderr
    out = _cli("--board", "nope")
    assert out.returncode == 2 and "no board profile 'nope'" in out.stderr


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
def test_flash_of_the_qemu_board_builds_boots_and_stops_it():
    proc = subprocess.Popen([sys.executable, "-m", "spoolbus_host.cli", "flash", "--board", "qemu-mps2-an385",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        # The booted firmware talks on the pty it printed (its node's hello frames, console text).
        with serial.Serial(info["port"], 115200, timeout=0.2) as port:
            got = b""
            deadline = time.monotonic() + 20
            while not got and time.monotonic() < deadline:
                got = port.read(256)
        assert got, "the QEMU board said nothing on its UART"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(info["pid"], 0)
