"""`spoolbus bridge` settings: the TOML file (examples/bridge.toml), checked key by key, flags over it."""

from __future__ import annotations

import pytest
from mosquitto import make_certs
from mpproc import ROOT
from spoolbus_host.bridge import config as bridge_config
from spoolbus_host.bridge.config import BridgeConfigError, SerialDevice
from spoolbus_host.cli import bridge as bridge_cmd
from spoolbus_host.cli import main as cli


def test_the_example_config_loads():
    cfg = bridge_config.load(ROOT / "examples" / "bridge.toml")
    assert (cfg.name, cfg.prefix, cfg.user) == ("gw1", "spoolbus", "gw1")
    assert cfg.brokers == ["mqtt1.plant:8883", "mqtt2.plant:8883"]
    assert cfg.outbox == "/var/lib/spoolbus/outbox" and cfg.spools == ["/run/spoolbus/board"]
    assert cfg.serial == {"sensor": SerialDevice("/dev/ttyUSB0"), "pump": SerialDevice("/dev/ttyACM0", 9600)}
    assert cfg.tls == {"ca": "/etc/spoolbus/ca.crt"} and cfg.keys == {"sensor": b"key-of-the-sensor"}
    assert cfg.device_quota == 1000


def test_flags_override_the_file_and_add_devices(tmp_path):
    ca, _, _ = make_certs(tmp_path / "tls")
    key = tmp_path / "pump.key"
    key.write_bytes(b"\x00secret")
    conf = tmp_path / "b.toml"
    conf.write_text(f'name = "gw1"\nbroker = "file:1"\noutbox = "{tmp_path}/o"\nspools = ["s1"]\n'
                    f'[serial]\nsensor = "/dev/a"\n[keys]\npump = {{ file = "{key}" }}\n')
    args = cli.build_parser().parse_args(["bridge", "--config", str(conf), "--broker", "flag:2",
                                          "--spool", "s2", "--serial", "sensor=/dev/b", "--ca", str(ca)])
    cfg = bridge_cmd.settings(args)
    assert (cfg.name, cfg.brokers, cfg.prefix, cfg.outbox) == ("gw1", ["flag:2"], "spoolbus", f"{tmp_path}/o")
    assert cfg.spools == ["s1", "s2"] and cfg.serial == {"sensor": SerialDevice("/dev/b")}
    assert cfg.keys == {"pump": b"\x00secret"} and cfg.tls == {"ca": str(ca)}
    cfg = bridge_cmd.settings(cli.build_parser().parse_args(["bridge", "other", "--config", str(conf)]))
    assert (cfg.name, cfg.brokers) == ("other", ["file:1"])


def test_several_brokers_come_from_the_file_the_flags_or_the_environment(tmp_path, monkeypatch):
    conf = tmp_path / "b.toml"
    conf.write_text(f'name = "gw1"\nbrokers = ["a:1", "b:2"]\noutbox = "{tmp_path}/o"\nspools = ["s"]\n')

    def brokers(*argv: str) -> list[str]:
        return bridge_cmd.settings(cli.build_parser().parse_args(["bridge", *argv])).brokers

    assert brokers("--config", str(conf)) == ["a:1", "b:2"]
    assert brokers("--config", str(conf), "--broker", "c:3", "--broker", "d:4,e:5") == ["c:3", "d:4", "e:5"]
    monkeypatch.setenv("SPOOLBUS_BROKER", "x:1, y:2")
    assert brokers("gw1", "--outbox", f"{tmp_path}/o", "--spool", "s") == ["x:1", "y:2"]
    assert brokers("--config", str(conf)) == ["a:1", "b:2"]  # the file is over the environment


@pytest.mark.parametrize("text, says", [
    ('nmae = "gw1"', "unknown key 'nmae'; the keys are name, broker"),
    ("broker = 1883", 'broker = 1883 is not valid; write broker = "mqtt.plant:8883"'),
    ('broker = "a:x"', "broker = 'a:x' is not valid; write broker = \"mqtt.plant:8883\""),
    ('brokers = "a:1"', 'brokers = \'a:1\' is not valid; write brokers = ["mqtt1.plant:8883", '),
    ("brokers = []", "brokers = [] is not valid; write brokers = ["),
    ('brokers = ["a:1", "b:0"]', "brokers[1] = 'b:0' is not valid; write brokers = ["),
    ('brokers = ["a:1", 2]', "brokers[1] = 2 is not valid"),
    ('broker = "a:1"\nbrokers = ["b:1"]', "both broker and brokers are set; keep one"),
    ('spools = "/run/x"', "write spools = [\"/run/spoolbus/board\"]"),
    ("baudrate = '9600'", "write baudrate = 115200"),
    ("device_quota = 1.5", "write device_quota = 1000"),
    ('[tls]\ncafile = "x"', "unknown key 'tls.cafile'; the keys are ca, cert, key"),
    ('[serial]\nsensor = { path = "/dev/x" }', 'write sensor = "/dev/ttyUSB0" or sensor = { port = '),
    ('[serial]\nsensor = { port = "/dev/x", baudrate = "fast" }', "serial.sensor.baudrate = 'fast'"),
    ('[keys]\nsensor = "xyz"', "keys.sensor = 'xyz' is not valid; write sensor = \"<hex"),
    ('[keys]\nsensor = { file = "/no/such.key" }', "keys.sensor: cannot read /no/such.key"),
    ("name = ", "not valid TOML"),
])
def test_a_bad_config_names_the_key_and_the_fix(tmp_path, text, says):
    conf = tmp_path / "b.toml"
    conf.write_text(text + "\n")
    with pytest.raises(BridgeConfigError) as e:
        bridge_config.load(conf)
    assert str(conf) in str(e.value) and says in str(e.value)


def test_spoolbus_bridge_reports_config_errors_and_missing_settings(tmp_path, capsys):
    conf = tmp_path / "b.toml"
    conf.write_text("outbox = 3\n")
    assert cli.main(["bridge", "--config", str(conf)]) == 2
    assert "outbox = 3 is not valid" in capsys.readouterr().err
    assert cli.main(["bridge", "--config", str(tmp_path / "none.toml")]) == 2
    assert "cannot read the bridge configuration" in capsys.readouterr().err
    assert cli.main(["bridge", "--outbox", "o", "--spool", "s"]) == 2
    assert "no bridge name" in capsys.readouterr().err
    assert cli.main(["bridge", "gw", "--spool", "s"]) == 2
    assert "no outbox" in capsys.readouterr().err
    assert cli.main(["bridge", "gw", "--outbox", "o"]) == 2
    assert "--serial DEVICE=PORT or --spool DIR" in capsys.readouterr().err
