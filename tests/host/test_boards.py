"""Board profiles load with clear errors; `spoolbus build-firmware` builds once, then hits its cache."""

import json
import subprocess
import sys
import time

import pytest
from spoolbus_host.boards import profiles
from spoolbus_host.paths import REPO as ROOT

GOOD = """
name = "{name}"
port = "unix"
filesystem = "posix"
[firmware]
micropython = "1.25.0"
artifact = "micropython"
[run]
console = "stdio-pty"
command = ["{{firmware}}", "-X", "heapsize={{heap}}", "-m", "main"]
[serial]
baudrate = 115200
max_frame = 1024
keepalive_ms = 500
dead_ms = 2000
[memory]
heap = 65536
"""


def _profile(tmp_path, text, name="myboard"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text.format(name=name))
    return path


def test_every_profile_in_boards_loads_and_the_simulated_ones_are_unix_and_qemu():
    for name in profiles.available():
        assert profiles.load(name).name == name
    assert profiles.simulated() == ["qemu-mps2-an385", "qemu-virt-rv32", "unix"]
    for name, mp_board, qemu_system in (("qemu-mps2-an385", "MPS2_AN385", "qemu-system-arm"),
                                        ("qemu-virt-rv32", "VIRT_RV32", "qemu-system-riscv32")):
        qemu = profiles.load(name)
        assert qemu.port == "qemu" and qemu.mp_board == mp_board and qemu.heap == 143360
        assert qemu.run_command("/fw.elf")[0] == qemu_system
        assert qemu.run_command("/fw.elf")[-4:] == ["-kernel", "/fw.elf", "-serial", "pty"]


def test_a_good_profile_file_loads(tmp_path):
    p = profiles.load(_profile(tmp_path, GOOD))
    assert p.run_command("/bin/mp") == ["/bin/mp", "-X", "heapsize=65536", "-m", "main"]


@pytest.mark.parametrize(
    "change, message",
    [
        (('name = "myboard"', 'name = "other"'), "must match the file name"),
        (("heap = 65536", "heap = 0"), "heap must be positive"),
        (("dead_ms = 2000", "dead_ms = 100"), "dead_ms must be larger than serial.keepalive_ms"),
        (("max_frame = 1024", 'max_frame = "big"'), "'serial.max_frame' must be of type int, not str"),
        (('console = "stdio-pty"', 'console = "telnet"'), "run.console 'telnet' is not one of"),
        (("baudrate = 115200\n", ""), "missing key 'serial.baudrate'"),
        (('"{firmware}", ', ""), "run.command must contain {firmware}"),
        (('port = "unix"', 'port = "esp32"'), "[run] needs firmware built here"),
        (("[memory]", "[memory"), "not valid TOML"),
        (('filesystem = "posix"', 'filesystem = "ntfs"'), "'ntfs' is not one of littlefs, fat, posix"),
    ],
)
def test_a_broken_profile_is_refused_with_the_file_and_the_key(tmp_path, change, message):
    path = _profile(tmp_path, GOOD)
    path.write_text(path.read_text().replace(*change))
    with pytest.raises(profiles.BoardProfileError) as e:
        profiles.load(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_an_unknown_board_name_lists_the_known_ones():
    with pytest.raises(profiles.BoardProfileError, match="known boards are .*qemu-mps2-an385.*unix"):
        profiles.load("no-such-board")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "spoolbus_host.cli", "build-firmware", *args],
                          capture_output=True, text=True, timeout=600)


def test_build_firmware_cli_refuses_an_unknown_board_with_exit_2():
    out = _cli("--board", "no-such-board")
    assert out.returncode == 2
    assert "no board profile 'no-such-board'" in out.stderr


def test_a_qemu_board_the_port_lacks_or_whose_compiler_is_missing_is_refused_in_one_line(monkeypatch):
    from dataclasses import replace

    from spoolbus_host.boards import firmware

    profile = profiles.load("qemu-virt-rv32")
    port = firmware.source_dir(profile) / "ports" / "qemu"
    if not port.is_dir():
        pytest.skip("MicroPython's source is not fetched (scripts/setup.sh)")
    with pytest.raises(firmware.FirmwareBuildError, match=r"firmware.board 'VIRT_RV64' is not a board of "
                       r"MicroPython 1.25.0's qemu port \(MICROBIT, MPS2_AN385, .*VIRT_RV32\)$"):
        firmware._check_qemu_board(replace(profile, mp_board="VIRT_RV64"), port)
    monkeypatch.setenv("PATH", "/nonexistent")
    missing = r"riscv64-unknown-elf-gcc is not installed: run `make setup` \(Debian packages "
    with pytest.raises(firmware.FirmwareBuildError,
                       match=missing + r"gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf\)$"):
        firmware._check_qemu_board(profile, port)


def test_build_firmware_cli_second_run_is_a_cache_hit():
    first = _cli("--board", "unix", "--json")  # builds if `make test`'s setup did not already
    assert first.returncode == 0, first.stderr[-2000:]
    started = time.monotonic()
    second = _cli("--board", "unix", "--json")
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["cached"] is True and result["firmware"] == json.loads(first.stdout)["firmware"]
    assert time.monotonic() - started < 10


def _boards(*args):
    return subprocess.run([sys.executable, "-m", "spoolbus_host.cli", "boards", *args],
                          capture_output=True, text=True, timeout=60)


def test_boards_command_lists_every_profile_with_its_filesystem_and_methods():
    out = _boards()
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == profiles.available()
    assert "esp32            esp32  littlefs   esptool  micropython" in out.stdout
    listed = {b["name"]: b for b in json.loads(_boards("--json").stdout)}
    assert listed["raspberry-pi"]["deploy"]["method"] == "linux-service"
    assert listed["qemu-mps2-an385"]["flash"]["method"] == "qemu" and listed["qemu-mps2-an385"]["simulated"]
    one = json.loads(_boards("rp2-pico", "--json").stdout)
    assert one["flash"] == {"method": "uf2", "family_id": 0xE48BFF56, "drive_label": "RPI-RP2"}
    unknown = _boards("no-such-board")
    assert unknown.returncode == 2 and "known boards are" in unknown.stderr


def test_boards_command_shows_a_broken_profile_with_the_reason_and_fails(tmp_path, monkeypatch, capsys):
    from spoolbus_host.cli import boards as boards_cmd
    from spoolbus_host.cli import main as cli

    monkeypatch.setattr(profiles, "BOARDS", tmp_path)
    _profile(tmp_path, GOOD, "good")
    typo = GOOD.format(name="typo") + '[flash]\nmethod = "esptool"\nchip = "esp32"\n'
    (tmp_path / "typo.toml").write_text(typo)
    assert cli.main(["boards"]) == 1
    out = capsys.readouterr().out
    assert "good             unix   posix      none" in out
    assert "typo             INVALID: " in out and "flash method 'esptool' needs flash.offset" in out
    assert boards_cmd.describe("good")["deploy"] == {"method": "micropython"}


@pytest.mark.parametrize(
    "table, message",
    [
        ('[flash]\nmethod = "dfu"\n', "flash.method 'dfu' is not one of esptool, uf2, qemu, none"),
        ('[flash]\nmethod = "uf2"\nfamily_id = 1\n', "flash method 'uf2' needs flash.drive_label"),
        ('[flash]\nmethod = "esptool"\nchip = "esp32"\noffset = "0x1000"\n',
         "'flash.offset' must be of type int, not str"),
        ('[deploy]\nroot = "/flash"\nbaud = 1\n', "deploy.baud is not a setting of deploy method"),
        ("deploy = 3\n", "[deploy] must be a table"),
    ],
)
def test_deploy_and_flash_settings_of_a_profile_are_checked(tmp_path, table, message):
    from spoolbus_host.boards import methods

    text = GOOD.format(name="b")
    text = table + text if table.startswith("deploy") else text + table
    (tmp_path / "b.toml").write_text(text)
    with pytest.raises(methods.ProfileError) as e:
        methods.read("b", tmp_path)
    assert message in str(e.value) and "b.toml" in str(e.value)


@pytest.mark.parametrize("files, mirror", [
    ({"sources.list": "deb [signed-by=/k.gpg] http://mirror.test/debian/ trixie main\n"}, "http://mirror.test/debian"),
    ({"sources.list.d/d.sources": "# URIs: http://old.test/debian\nTypes: deb\n"
      "URIs: http://mirror.test/debian-security https://m2.test/debian\n"}, "https://m2.test/debian"),
    ({"sources.list.d/x.list": "deb https://packages.test/apt stable main\n"}, None),
    ({}, None),
])
def test_the_micropython_source_comes_from_the_machines_own_debian_mirror(tmp_path, files, mirror):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    script = ROOT / "scripts" / "fetch-micropython.sh"
    res = subprocess.run(["bash", str(script), "--mirror"], capture_output=True, text=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin", "APT_ETC": str(tmp_path)})
    if mirror:
        assert (res.returncode, res.stdout.strip()) == (0, mirror), res.stderr
    else:
        assert res.returncode == 1 and "no Debian mirror" in res.stderr and res.stderr.count("\n") == 1


def test_each_runtime_module_is_frozen_by_the_core_manifest_or_by_one_feature():
    import ast

    def files(manifest):
        call = ast.parse(manifest.read_text()).body[0].value
        return [e.value for kw in call.keywords if kw.arg == "files" for e in kw.value.elts]

    firmware = ROOT / "firmware"
    core = files(firmware / "spoolbus" / "manifest.py")
    features = {m.parent.name: files(m) for m in (firmware / "features").glob("*/manifest.py")}
    frozen = core + [f for fs in features.values() for f in fs]
    runtime = ROOT / "runtime" / "spoolbus"
    assert sorted(frozen) == sorted(p.relative_to(runtime).as_posix() for p in runtime.rglob("*.py"))
    assert "transport/mqtt_client.py" in features["mqtt"]
    assert profiles.load("unix").features == ("mqtt",) and profiles.load("qemu-mps2-an385").features == ()
