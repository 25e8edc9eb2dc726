"""The `spoolbus` console script installs and answers --version and --help."""

import subprocess
import sys

import pytest
import spoolbus


def _spoolbus(*args):
    return subprocess.run(
        [sys.executable, "-m", "spoolbus_host.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_version():
    out = _spoolbus("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"spoolbus {spoolbus.__version__}"


def test_help_lists_commands():
    out = _spoolbus("--help")
    assert out.returncode == 0
    assert "demo" in out.stdout


def test_unknown_command_is_a_clear_error():
    out = _spoolbus("no-such-command")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_a_subcommand_imports_only_its_own_module():
    heavy = ("paho", "mpremote", "esptool", "spoolbus_host.demo")
    code = (f"import sys; from spoolbus_host.cli import main; main.build_parser('boards'); "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
    assert "boards" in _spoolbus("boards", "--help").stdout


def _broken(args):
    raise RuntimeError("disk on fire")


def test_an_unexpected_error_is_one_line_asking_for_a_report(monkeypatch, capsys):
    from spoolbus_host.cli import boards, main

    monkeypatch.setattr(boards, "run", _broken)
    monkeypatch.delenv("SPOOLBUS_DEBUG", raising=False)
    assert main.main(["boards"]) == 1
    assert capsys.readouterr().err == (
        "spoolbus boards: unexpected RuntimeError: disk on fire; this is a bug, please report it "
        "(run with SPOOLBUS_DEBUG=1 for the traceback)\n")
    monkeypatch.setenv("SPOOLBUS_DEBUG", "1")
    with pytest.raises(RuntimeError, match="disk on fire"):
        main.main(["boards"])


def test_ctrl_c_is_one_line_and_status_130(monkeypatch, capsys):
    from spoolbus_host.cli import boards, main

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(boards, "run", interrupted)
    assert main.main(["boards"]) == 130
    assert capsys.readouterr().err == "spoolbus boards: interrupted\n"
