"""The `spoolbus` console script installs and answers --version and --help."""

import subprocess
import sys

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
