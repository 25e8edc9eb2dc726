"""`spoolbus deploy` against a real MicroPython unix board on a pty: copies, no-change redeploys, cut links.

The board is the MicroPython unix port running the unix ROM (boot, main.py, raw REPL) behind a pty the
host opens like a USB serial port; its flash is a directory the test can also read.
"""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from spoolbus_host import paths, progress
from spoolbus_host.boards.unix_board import MICROPYTHON, UnixBoard
from spoolbus_host.deploy import agent as dagent
from spoolbus_host.deploy import build as dbuild
from spoolbus_host.deploy import micropython as dp

REPO_CACHE = paths.CACHE

pytestmark = pytest.mark.skipif(
    not Path(os.environ.get("SPOOLBUS_MICROPYTHON", MICROPYTHON)).exists(), reason="MicroPython not built"
)

APP_MAIN = """import spoolbus, version
print('app v%d running with spoolbus %s' % (version.V, spoolbus.__version__))
import time
while True:
    time.sleep(0.05)
"""


def _app(root: Path, version: int, big: int = 0) -> Path:
    app = root / "app"
    app.mkdir(exist_ok=True)
    (app / "main.py").write_text(APP_MAIN)
    (app / "version.py").write_text(f"V = {version}\n")
    if big:  # a data file large enough that a test can cut the link while it is on the wire
        (app / "blob.bin").write_bytes(random.Random(version).randbytes(big))  # incompressible
    return app


def _running(board: UnixBoard, version: int, times: int = 1, timeout: float = 10.0) -> bool:
    needle = f"app v{version} running".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if board.console.count(needle) >= times:
            return True
        time.sleep(0.02)
    return False


def _tree_on_flash(flash: Path) -> tuple[str, dict[str, str]]:
    """The tree the board's loader will run, and the sha256 of each of its files, read from the flash."""
    cur = (flash / "app" / "current").read_text().strip()
    tree = flash / "app" / cur
    files = {p.relative_to(tree).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in tree.rglob("*") if p.is_file()}
    return cur, files


def _manifest_hashes(build: dbuild.Build) -> dict[str, str]:
    want = dict(build.hashes)
    want[dbuild.MANIFEST_NAME] = hashlib.sha256(build.manifest).hexdigest()
    return want


@pytest.fixture
def board(tmp_path):
    b = UnixBoard(tmp_path / "flash")
    b.start()
    yield b
    b.stop()
    print("board console (tail):", bytes(b.console[-1500:]))  # shown by pytest when a test fails


@pytest.mark.parametrize("root", ["", "flash"])
def test_the_boot_loader_runs_the_tree_app_current_names_and_nothing_without_one(tmp_path, root):
    micropython = os.environ.get("SPOOLBUS_MICROPYTHON", str(MICROPYTHON))
    base = tmp_path / root
    (base / "app" / "t1").mkdir(parents=True)
    (base / "app" / "t1" / "main.py").write_text("print('tree t1 runs')\n")
    (tmp_path / "main.py").write_bytes(dbuild.loader(root))  # as a deploy writes it at the board's root

    def boot() -> str:
        res = subprocess.run([micropython, "main.py"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=30)
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert boot() == ""
    (base / "app" / "current").write_text("t1\n")
    assert boot() == "tree t1 runs\n"


def test_deploy_runs_the_new_code_and_a_no_change_redeploy_copies_nothing(tmp_path, board, runtime):
    app = _app(tmp_path, 1)
    first = dp.deploy(board.port, app, runtime=runtime)
    build = dbuild.build(app, None, runtime)
    assert first.tree_id == build.tree_id and first.previous_id is None
    assert first.sent == len(build.files) and first.verified == len(build.files) + 1
    assert _running(board, 1), bytes(board.console[-500:])
    # What the board will boot is exactly the build: every file's hash, nothing more.
    cur, files = _tree_on_flash(board.flash)
    assert cur == build.tree_id and files == _manifest_hashes(build)
    assert (board.flash / "main.py").read_bytes() == dbuild.loader()
    assert all(p.endswith(".mpy") for p in files if p != dbuild.MANIFEST_NAME)

    again = dp.deploy(board.port, app, runtime=runtime)
    assert again.up_to_date and again.sent == 0 and again.local_copies == 0 and again.bytes_sent < 200
    assert again.verified == len(build.files)  # the running tree was re-hashed on the board
    assert _running(board, 1, times=2)

    (app / "version.py").write_text("V = 2\n")
    second = dp.deploy(board.port, app, runtime=runtime)
    assert second.sent == 1 and second.local_copies == len(build.files) - 1
    assert second.previous_id == build.tree_id
    assert _running(board, 2)
    # The old tree stays as the previous one; the deploy agent keeps a copy of itself for the next deploy.
    assert (board.flash / "app" / "previous").read_text() == build.tree_id
    assert sorted(p.name for p in (board.flash / "app").iterdir()) == sorted(
        ["current", "previous", build.tree_id, second.tree_id, dagent.AGENT_FILE])


def test_rollback_boots_the_previous_tree_and_deploys_keep_only_two_trees(tmp_path, board, runtime):
    app = _app(tmp_path, 1)
    with pytest.raises(dbuild.DeployError, match=f"no previous tree on {board.port}"):
        dp.rollback(board.port)
    first = dp.deploy(board.port, app, runtime=runtime)
    with pytest.raises(dbuild.DeployError, match=f"no previous tree on {board.port}"):
        dp.rollback(board.port)
    assert _running(board, 1)
    (app / "version.py").write_text("V = 2\n")
    second = dp.deploy(board.port, app, runtime=runtime)
    (board.flash / "app" / "trial").write_text(second.tree_id)  # as a trial cut short would leave it
    (app / "version.py").write_text("V = 3\n")
    third = dp.deploy(board.port, app, runtime=runtime)
    assert _running(board, 3)
    assert sorted(p.name for p in (board.flash / "app").iterdir()) == sorted(
        ["current", "previous", second.tree_id, third.tree_id, dagent.AGENT_FILE])
    assert first.tree_id not in {second.tree_id, third.tree_id}

    back = dp.rollback(board.port)
    assert back.rolled_back and back.tree_id == second.tree_id and back.previous_id == third.tree_id
    assert f"rolled back to tree {second.tree_id}" in back.summary()
    assert _running(board, 2)
    assert (board.flash / "app" / "current").read_text() == second.tree_id
    assert (board.flash / "app" / "previous").read_text() == third.tree_id
    forth = dp.rollback(board.port)  # and forth: the two trees swap again
    assert forth.tree_id == third.tree_id and _running(board, 3, times=2)


def test_a_damaged_copy_of_the_agent_on_the_board_is_not_run_but_replaced(tmp_path, board, runtime):
    app = _app(tmp_path, 1)
    dp.deploy(board.port, app, runtime=runtime)
    cached = board.flash / "app" / dagent.AGENT_FILE
    assert cached.read_bytes() == dagent.AGENT.encode()
    cached.write_bytes(dagent.AGENT.encode()[:-200] + b"raise SystemExit\n")  # a torn or tampered copy
    (app / "version.py").write_text("V = 2\n")
    second = dp.deploy(board.port, app, runtime=runtime)
    assert second.sent == 1 and _running(board, 2)
    assert cached.read_bytes() == dagent.AGENT.encode()


def test_a_damaged_running_tree_is_found_and_rebuilt_beside_it(tmp_path, board, runtime):
    app = _app(tmp_path, 1)
    dp.deploy(board.port, app, runtime=runtime)
    assert _running(board, 1)
    cur, _ = _tree_on_flash(board.flash)
    (board.flash / "app" / cur / "version.mpy").write_bytes(b"garbage")
    report = dp.deploy(board.port, app, runtime=runtime)
    assert not report.up_to_date and report.sent == 1
    new_cur, files = _tree_on_flash(board.flash)
    assert new_cur == cur + ".1" and files == _manifest_hashes(dbuild.build(app, None, runtime))
    assert _running(board, 1, times=2)


def _deploy_process(port: str, app: Path, runtime: Path) -> subprocess.Popen:
    """A deploy in its own process, so the test can kill it (and its end of the link) mid-file."""
    code = (f"from spoolbus_host.deploy.micropython import deploy; "
            f"print(deploy({port!r}, {str(app)!r}, runtime={str(runtime)!r}).tree_id)")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_partial(flash: Path, tree_id: str, timeout: float = 20.0) -> None:
    """Until the new tree's big file exists on the board but is not complete yet."""
    blob = flash / "app" / tree_id / "blob.bin"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if blob.exists() and blob.stat().st_size > 0:
            return
        time.sleep(0.002)
    raise AssertionError("the deploy never started writing blob.bin")


def test_link_cut_mid_file_leaves_the_old_code_running_and_the_next_deploy_resumes(tmp_path, board, runtime):
    app = _app(tmp_path, 1)
    dp.deploy(board.port, app, runtime=runtime)
    old_id, old_files = _tree_on_flash(board.flash)
    _app(tmp_path, 2, big=256 * 1024)
    new = dbuild.build(app, None, runtime)
    proc = _deploy_process(board.port, app, runtime)
    _wait_partial(board.flash, new.tree_id)
    proc.send_signal(signal.SIGKILL)  # the host and its end of the link vanish mid-file
    proc.wait()
    blob = board.flash / "app" / new.tree_id / "blob.bin"
    assert blob.stat().st_size < len(new.files["blob.bin"]), "the cut came too late to test anything"
    assert _tree_on_flash(board.flash) == (old_id, old_files)
    # Power-cycle: the board boots the old tree.
    board.kill()
    board.console.clear()
    board.start()
    assert _running(board, 1), bytes(board.console[-500:])
    # The next deploy takes over and keeps what had arrived intact.
    report = dp.deploy(board.port, app, runtime=runtime)
    assert report.reused >= 1 and report.previous_id == old_id
    assert _tree_on_flash(board.flash) == (new.tree_id, _manifest_hashes(new))
    assert _running(board, 2)


def test_a_new_deploy_takes_over_from_an_agent_left_waiting_by_a_cut_link(tmp_path, board, runtime):
    app = _app(tmp_path, 1)
    dp.deploy(board.port, app, runtime=runtime)
    _app(tmp_path, 2, big=256 * 1024)
    new = dbuild.build(app, None, runtime)
    proc = _deploy_process(board.port, app, runtime)
    _wait_partial(board.flash, new.tree_id)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # No power cycle: the board's agent is still waiting for the rest of the file.
    proc = _deploy_process(board.port, app, runtime)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == new.tree_id
    assert _running(board, 2), bytes(board.console[-500:])


def test_power_cut_mid_file_leaves_a_bootable_board_with_the_old_code(tmp_path, board, runtime):
    app = _app(tmp_path, 1)
    dp.deploy(board.port, app, runtime=runtime)
    old = _tree_on_flash(board.flash)
    _app(tmp_path, 2, big=256 * 1024)
    new = dbuild.build(app, None, runtime)
    proc = _deploy_process(board.port, app, runtime)
    _wait_partial(board.flash, new.tree_id)
    board.kill()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"stopped answering" in err and b"the old code still runs" in err
    assert _tree_on_flash(board.flash) == old
    board.console.clear()
    board.start()
    assert _running(board, 1), bytes(board.console[-500:])


def test_deploy_rejects_a_compiler_whose_bytecode_the_board_cannot_load(tmp_path, board, runtime):
    fake = tmp_path / "mpy-cross-v5"
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && echo 'mpy-cross emitting mpy v5.1' && exit 0\n"
                    f"exec {dbuild.find_mpy_cross()} \"$@\"\n")
    fake.chmod(0o755)
    with pytest.raises(dbuild.DeployError, match="loads .mpy version 6 but .* emits version 5"):
        dp.deploy(board.port, _app(tmp_path, 1), mpy_cross=str(fake), runtime=runtime)
    assert not (board.flash / "app").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spoolbus_host.cli", "deploy", *args],
                          capture_output=True, text=True, timeout=60)


def test_deploy_errors_name_the_problem(tmp_path):
    app = _app(tmp_path, 1)
    out = _cli(str(app), "--port", "/dev/no-such-port")
    assert out.returncode == 2 and "cannot open /dev/no-such-port" in out.stderr
    out = _cli(str(app))
    assert out.returncode == 2 and "--port is required" in out.stderr
    out = _cli(str(tmp_path), "--port", "/dev/null")
    assert out.returncode == 2 and "has no main.py" in out.stderr
    out = _cli(str(app), "--board", "no-such-board")
    assert out.returncode == 2 and "no board profile 'no-such-board'" in out.stderr
    out = _cli(str(app), "--board", "raspberry-pi")
    assert out.returncode == 2 and "exactly one of --root DIR or --ssh HOST" in out.stderr


def test_deploy_to_a_port_where_no_board_answers_is_a_clear_error(tmp_path):
    master, slave = os.openpty()  # a serial line with nothing on the other end
    try:
        out = _cli(str(_app(tmp_path, 1)), "--port", os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)
    assert out.returncode == 2 and "no MicroPython REPL answered" in out.stderr


def test_raspberry_pi_install_writes_a_tree_a_one_rename_switch_and_a_systemd_unit(tmp_path):
    app = tmp_path / "pi-app"
    app.mkdir()
    (app / "main.py").write_text(
        "import os, spoolbus\n"
        "print('pi app on', os.path.dirname(spoolbus.__file__), os.environ['SPOOLBUS_SPOOL'])\n"
    )
    root = tmp_path / "root"
    out = _cli(str(app), "--board", "raspberry-pi", "--root", str(root), "--json")
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)
    current = root / "opt" / "spoolbus" / "current"
    assert os.readlink(current) == f"trees/{first['tree_id']}"
    assert (root / "var" / "lib" / "spoolbus").is_dir()
    unit = (root / "etc" / "systemd" / "system" / "spoolbus-app.service").read_text()
    assert "ExecStart=/usr/bin/python3 /opt/spoolbus/current/main.py" in unit
    assert "StateDirectory=spoolbus" in unit and "Environment=SPOOLBUS_SPOOL=/var/lib/spoolbus" in unit
    # The installed tree runs on CPython with the runtime it carries (plain .py, not .mpy).
    run = subprocess.run([sys.executable, str(current / "main.py")], capture_output=True, text=True,
                         env={**os.environ, "SPOOLBUS_SPOOL": "/var/lib/spoolbus", "PYTHONPATH": ""})
    assert run.returncode == 0, run.stderr
    where = run.stdout.split()[3]  # the tree's own spoolbus, through the symlink or resolved
    assert where in (str(current / "spoolbus"), str(current.resolve() / "spoolbus")), run.stdout
    if shutil.which("systemd-analyze"):
        unit_path = root / "etc/systemd/system/spoolbus-app.service"
        check = subprocess.run(["systemd-analyze", "verify", str(unit_path)], capture_output=True, text=True)
        assert "Unknown key" not in check.stderr and "Invalid" not in check.stderr, check.stderr
    # A changed application: a new tree, the symlink switched, the old tree gone.
    (app / "extra.py").write_text("X = 1\n")
    out = _cli(str(app), "--board", "raspberry-pi", "--root", str(root), "--json")
    second = json.loads(out.stdout)
    assert second["previous_id"] == first["tree_id"] != second["tree_id"]
    assert os.listdir(root / "opt" / "spoolbus" / "trees") == [second["tree_id"]]


# ------------------------------------------------------------------------------------------ QEMU board

QEMU_APP_MAIN = """import spoolbus, version
f = open('/flash/ran.txt', 'w')
f.write('%d' % version.V)
f.close()
"""


@pytest.fixture(scope="module")
def qemu_firmware():
    """The QEMU board's firmware with the deploy-test entry point (tests/host/qemu_deploy), built once."""
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("qemu-system-arm or the ARM toolchain is not installed")
    from spoolbus_host.boards import firmware, profiles

    profile = profiles.load("qemu-mps2-an385")
    src = firmware.source_dir(profile)
    if not (src / "py" / "mpconfig.h").is_file():
        pytest.skip("MicroPython source not fetched")
    port_dir = firmware._qemu_tree(profile, src)  # the firmware's qemu port overlay, built elsewhere
    build = REPO_CACHE / "firmware" / "build-qemu-deploy-test"
    cmd = ["make", "-C", str(port_dir), "-j2", f"BOARD={profile.mp_board}", f"BUILD={build}",
           f"FROZEN_MANIFEST={Path(__file__).parent / 'qemu_deploy' / 'manifest.py'}",
           f"MICROPY_HEAP_SIZE={profile.heap}", f"MPY_LIB_DIR={firmware._empty_micropython_lib()}",
           *(f"{k}={v}" for k, v in profile.make_vars.items())]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return profile, build / "firmware.elf"


@pytest.fixture
def qemu_board(qemu_firmware):
    from spoolbus_host.boards import qemu

    profile, elf = qemu_firmware
    board = qemu.boot(profile, elf)
    yield board
    board.stop()


def _qemu_app(root: Path, version: int, big: int = 0) -> Path:
    app = _app(root, version, big)
    (app / "main.py").write_text(QEMU_APP_MAIN)
    return app


def _ran(port: str, remove: bool = False) -> str | None:
    """What the deployed application wrote at its last boot (reading it through the deploy agent)."""
    agent = dagent.Agent(port)
    try:
        got = agent.get("/flash/ran.txt")
        if remove:
            agent.request("X /flash/ran.txt")
    finally:
        agent.close(reset=False)
    return got.decode() if got is not None else None


class _CutLink(progress.Progress):
    """Kills the host's side mid-way through the last (largest) file: the link is cut mid-file."""

    def advance_bytes(self, n: int) -> None:
        super().advance_bytes(n)
        if self.files_done == self.files - 1:
            raise ConnectionAbortedError("link cut by the test")


def test_deploy_to_the_qemu_board_runs_switches_and_survives_a_cut_link(tmp_path, qemu_board):
    # The emulated UART moves a few KB a second: a small runtime (the package and its errors) keeps the
    # test short; the unix board tests deploy the whole runtime.
    runtime = tmp_path / "runtime" / "spoolbus"
    runtime.mkdir(parents=True)
    for name in ("__init__.py", "errors.py"):
        shutil.copy(paths.RUNTIME / name, runtime / name)
    port = qemu_board.port
    app = _qemu_app(tmp_path, 1)
    first = dp.deploy(port, app, root="/flash", runtime=runtime)
    assert first.sent == len(dbuild.build(app, None, runtime).files) and first.verified
    assert _ran(port) == "1"
    again = dp.deploy(port, app, root="/flash", runtime=runtime)
    assert again.up_to_date and again.sent == 0
    # Version 2, with a big file: the host's side of the link goes away mid-way through it.
    new_app = _qemu_app(tmp_path, 2, big=8 * 1024)
    with pytest.raises(ConnectionAbortedError):
        dp.deploy(port, new_app, root="/flash", runtime=runtime, progress=_CutLink("deploy", enabled=False))
    # The board still names the old tree and boots it after a (soft) reset.
    assert _ran(port, remove=True) == "1"
    agent = dagent.Agent(port)
    assert agent.get("/flash/app/current").decode() == first.tree_id
    agent.close(reset=True)
    assert _ran(port) == "1"
    # The next deploy resumes and switches.
    final = dp.deploy(port, new_app, root="/flash", runtime=runtime)
    assert final.reused >= 1 and final.previous_id == first.tree_id
    assert _ran(port) == "2"
