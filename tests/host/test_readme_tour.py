"""README.md's "A 5-minute tour", run as written: the README and the code cannot drift apart.

Each python block of the tour (first line `# NAME.py`) is saved as NAME.py; each sh block runs in bash
from the repository with the venv activated, as a user's terminal would; a text block is what the block
before it prints, "..." standing for anything that changes from run to run. The bridge and the sensor
run on until the end; the sensor runs once for each interpreter the tour offers.
"""

from __future__ import annotations

import os
import pathlib
import re
import selectors
import signal
import subprocess
import time

import pytest
from mpproc import MICROPYTHON, ROOT

README = ROOT / "README.md"
STEP_TIMEOUT = 60  # seconds, for each command that should finish (loaded machines are slow)


def tour() -> tuple[dict[str, str], list[tuple[list[str], str | None]]]:
    """({file name: source}, [(an sh block's commands, their expected output or None)]) of the tour."""
    text = README.read_text()
    start = text.index("## A 5-minute tour")
    section = text[start:text.index("\n## ", start + 1)]
    files: dict[str, str] = {}
    steps: list[tuple[list[str], str | None]] = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```$", section, re.M | re.S):
        if lang == "python":
            name = body.splitlines()[0].removeprefix("# ")
            assert re.fullmatch(r"\w+\.py", name), f"a python block starts with '# NAME.py', not {name!r}"
            files[name] = body
        elif lang == "sh":
            lines = body.replace("\\\n", "").splitlines()
            steps.append(([ln for ln in lines if ln.strip() and not ln.startswith("#")], None))
        elif lang == "text":
            assert steps and steps[-1][1] is None, "a text block follows the sh block whose output it is"
            steps[-1] = (steps[-1][0], body)
        else:
            raise AssertionError(f"the tour has a ```{lang} block; the test knows python, sh and text")
    return files, steps


def substitutions(tmp_path: pathlib.Path, port: int) -> dict[str, str]:
    """The only changes the test makes to what the README says: a temporary directory for the tour's,
    the test broker's port, and the MicroPython the suite is configured with (SPOOLBUS_MICROPYTHON)."""
    return {"/tmp/spoolbus-tour": str(tmp_path / "spoolbus-tour"), "1883": str(port),
            ".cache/micropython-1.25.0/bin/micropython": MICROPYTHON}


def substitute(text: str, table: dict[str, str]) -> str:
    """One pass: what a substitution put in (a temporary path with 1883 in it) is not substituted again."""
    return re.sub("|".join(map(re.escape, table)), lambda m: table[m.group()], text)


def matches(expected: str, got: str) -> bool:
    """Line by line; runs of spaces match any whitespace, "..." anything."""
    want, have = expected.strip().splitlines(), got.strip().splitlines()
    if len(want) != len(have):
        return False
    for w, h in zip(want, have, strict=True):
        pattern = r"\s+".join(".*".join(map(re.escape, word.split("..."))) for word in w.split())
        if not re.fullmatch(pattern, h.strip()):
            return False
    return True


def shell(command: str) -> list[str]:
    return ["bash", "-c", f". .venv/bin/activate && {command}"]


ENV = {k: v for k, v in os.environ.items() if k not in ("MICROPYPATH", "VIRTUAL_ENV")}
ENV["PYTHONUNBUFFERED"] = "1"  # CPython's print reaches the pipe at once, as MicroPython's does


def run(command: str) -> subprocess.CompletedProcess:
    """A command of the tour that ends by itself; on timeout its whole process group is killed."""
    proc = subprocess.Popen(shell(command), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=STEP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{command!r} did not end in {STEP_TIMEOUT} s: {out} {err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class Background:
    """A long-running command of the tour in its own process group; stop() ends the group."""

    def __init__(self, command: str, log):
        self.command = command
        self.log = log
        self.proc = subprocess.Popen(shell(command), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=log,
                                     start_new_session=True)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.out = b""

    def read_lines(self, n: int, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while self.out.count(b"\n") < n and self._sel.select(max(0.0, deadline - time.monotonic())):
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            self.out += chunk
        return self.out.decode(errors="replace")

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.proc.stdout.close()


@pytest.fixture
def background(tmp_path):
    started: list[Background] = []

    def start(command: str, name: str) -> Background:
        b = Background(command, open(tmp_path / f"{name}.log", "wb"))
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()
        b.log.close()


def bridge_online(port: int, timeout: float) -> bool:
    """Whether the bridge's retained status on the broker says online within `timeout` seconds."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    status: list[bytes] = []
    sub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    sub.on_message = lambda c, u, m: status.append(m.payload)
    sub.connect("127.0.0.1", port)
    sub.subscribe("spoolbus/gw/_bridge/status", 1)
    sub.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while b"online" not in status and time.monotonic() < deadline:
            time.sleep(0.05)
        return b"online" in status
    finally:
        sub.loop_stop()
        sub.disconnect()


SENSORS = ["cpython", "micropython", "frozen-firmware"]  # the README's three ways, in its order


@pytest.mark.parametrize("interpreter", SENSORS)
def test_the_readme_tour_runs_as_written(tmp_path, mosquitto, background, interpreter):
    files, steps = tour()
    assert sorted(files) == ["controller.py", "host.py", "sensor.py", "sensor_api.py"]
    table = substitutions(tmp_path, mosquitto.port)
    sensor_step = next(cmds for cmds, _ in steps if any("sensor.py" in c for c in cmds))
    assert len(sensor_step) == len(SENSORS), sensor_step
    sensor_command = sensor_step[SENSORS.index(interpreter)]
    if interpreter == "frozen-firmware":  # build it now if the sources changed: the sensor starts at once
        from spoolbus_host.boards import firmware, profiles

        firmware.ensure_built(profiles.load("unix"))
    for commands, expected in steps:
        if any("spoolbus bridge" in c for c in commands):
            [command] = commands
            bridge = background(substitute(command, table), "bridge")
            assert bridge_online(mosquitto.port, 30), (tmp_path / "bridge.log").read_text()
            continue
        if commands is sensor_step:
            sensor = background(substitute(sensor_command, table), "sensor")
            got = sensor.read_lines(len(expected.strip().splitlines()), 30)
            assert matches(expected, got), (got, (tmp_path / "sensor.log").read_text())
            continue
        [command] = commands
        if "controller.py" in command:
            # "To run it under MicroPython, use the same interpreter as for the sensor."
            same = sensor_command.replace("sensor.py", "controller.py")
            assert interpreter != "cpython" or command == same
            command = same
        r = run(substitute(command, table))
        assert r.returncode == 0, (command, r.stdout, r.stderr)
        if command.startswith("mkdir"):
            for name, source in files.items():
                (tmp_path / "spoolbus-tour" / name).write_text(substitute(source, table))
        if expected is not None:
            assert matches(substitute(expected, table), r.stdout), (command, r.stdout, r.stderr)
    assert bridge.proc.poll() is None and sensor.proc.poll() is None  # both served to the end


def test_the_expected_output_matcher_takes_dots_for_anything_and_spaces_for_any_whitespace():
    assert matches("gw/x   online  ... a@1.1  seen ...", "gw/x online mp 1.25 (linux) a@1.1  seen 12:00")
    assert not matches("21.5", "21.75")
    assert not matches("21.5", "21.5\n21.75")


def test_the_tour_uses_the_substituted_names_so_the_substitutions_change_something():
    files, steps = tour()
    text = "".join(files.values()) + "".join(c for cmds, _ in steps for c in cmds)
    for old in substitutions(ROOT, 1):
        assert old in text, f"{old!r} is no longer in the tour: drop it from substitutions()"
