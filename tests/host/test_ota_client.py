"""The host side of a deploy over the bus (deploy/ota.py) against a real MicroPython board process.

The board is the MicroPython unix port in a directory that stands for its flash: the boot loader a deploy
writes as main.py, boots app/current, whose application serves `spoolbus.update` on a spool link. When
the process exits (the reset after a commit, a rollback, a failed trial) the test starts it again: the
reboot. End-to-end runs through a bridge and the broker are tests/host/test_ota_*.py of the rig.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mpproc import MICROPYTHON, MicroPython
from spoolbus import node
from spoolbus.transport.spool import SpoolTransport
from spoolbus_host.deploy import build as dbuild
from spoolbus_host.deploy import ota
from spoolbus_host.progress import Progress
from spoolbus_host.testing import flashdir

pytestmark = pytest.mark.skipif(not Path(MICROPYTHON).exists(), reason="MicroPython not built")

BOARD = "gw/board"
HOST = "host/ota"

APP_MAIN = """import json, version
from spoolbus import node, update
from spoolbus.transport.spool import SpoolTransport

cfg = json.load(open("board.json"))
keys = None
if cfg.get("keys"):
    import binascii
    keys = {k: binascii.unhexlify(v) for k, v in cfg["keys"].items()}
if cfg.get("mqtt"):  # the board on the broker itself
    from spoolbus.transport.mqtt import MQTTTransport
    from spoolbus.transport.mqtt_client import MQTTClient
    t = MQTTTransport(MQTTClient("gw-board", "127.0.0.1", cfg["mqtt"]), "gw", "board")
else:
    t = SpoolTransport(cfg["spool"], "gw/board")
nd = node.Node("gw/board", t, keys=keys, require=bool(keys))
u = update.serve(nd, deadline_s=30, trusted=cfg.get("trusted"))
if cfg.get("raw"):
    u.z = 0
print("app v%d up" % version.V)
if version.V == 99:
    raise ValueError("broken on purpose")
while True:
    nd.poll(20)
"""

# Runs the flash's main.py (the deploy's boot loader) with the flash as the working directory.
BOOT = """
import os, sys
os.chdir(sys.argv[1])
exec(open("main.py").read(), {"__name__": "__main__"})
"""


def _app(root: Path, version: int, blob: int = 0) -> Path:
    app = root / "app"
    app.mkdir(exist_ok=True)
    (app / "main.py").write_text(APP_MAIN)
    (app / "version.py").write_text(f"V = {version}\n")
    if blob:  # half incompressible, half text: puts of both kinds, several windows of them
        rnd = random.Random(version)
        text = "".join(f"line {i} of version {version}: {rnd.random()}\n" for i in range(blob // 60))
        (app / "blob.bin").write_bytes(rnd.randbytes(blob // 2) + text.encode()[: blob // 2])
    return app


class Board:
    """The board process, started again whenever it exits (a reset), its console lines collected."""

    def __init__(self, tmp_path: Path, flash: Path):
        self.tmp = tmp_path
        self.flash = flash
        self.lines: list[str] = []
        self.boots = 0
        self._stop = False
        self.mp = self._start()
        self._thread = threading.Thread(target=self._keep, daemon=True)
        self._thread.start()

    def _start(self) -> MicroPython:
        self.boots += 1
        return MicroPython(self.tmp, BOOT, self.flash, path=".frozen")

    def _keep(self) -> None:
        while not self._stop:
            try:
                self.lines.append(self.mp.line(timeout=0.2))
            except AssertionError:
                if self.mp.proc.poll() is not None and not self._stop:
                    self.lines.extend(self.mp.output[len(self.lines):])
                    self.mp = self._start()

    def wait_for(self, text: str, times: int = 1, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(text in line for line in self.lines) >= times:
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.mp.kill()


@pytest.fixture
def world(tmp_path, runtime):
    """A board running tree v1 (as a serial deploy leaves it) and the host's node on the same spool."""
    flash = tmp_path / "flash"
    spool = tmp_path / "spool"
    boards = []
    hosts = []

    def start(cfg: dict | None = None, keys: dict[str, bytes] | None = None) -> tuple[Board, node.Node, Path]:
        app = _app(tmp_path, 1)
        b = dbuild.build(app, None, runtime)
        flashdir.install(flash, b)
        board_cfg = dict(cfg or {}, spool=str(spool))
        if keys:
            board_cfg["keys"] = {k: v.hex() for k, v in keys.items()}
        (flash / "board.json").write_text(json.dumps(board_cfg))
        board = Board(tmp_path, flash)
        boards.append(board)
        assert board.wait_for("app v1 up"), board.lines
        host = node.Node(HOST, SpoolTransport(str(spool), HOST), keys=keys, require=bool(keys), timeout=5)
        hosts.append(host)
        return board, host, app

    yield start
    for h in hosts:
        h.close()
    for b in boards:
        b.stop()
        print("board console:", b.lines[-30:])  # shown by pytest when a test fails


def _tree(flash: Path, name: str = "current") -> tuple[str, dict[str, str]]:
    d = (flash / "app" / name).read_text().strip()
    root = flash / "app" / d
    return d, {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in root.rglob("*") if p.is_file()}


def _want(b: dbuild.Build) -> dict[str, str]:
    want = dict(b.hashes)
    want[dbuild.MANIFEST_NAME] = hashlib.sha256(b.manifest).hexdigest()
    return want


@pytest.mark.parametrize("raw", [False, True], ids=["deflate", "raw"])
def test_deploy_over_the_bus_stages_commits_and_the_board_confirms_the_new_tree(world, runtime, raw):
    board, host, app = world({"raw": raw})
    old, _ = _tree(board.flash)
    _app(app.parent, 2, blob=48 * 1024)
    b = dbuild.build(app, None, runtime)
    bar = io.StringIO()
    report = ota.deploy_over_bus(host, BOARD, app, runtime=runtime,
                                 progress=Progress("deploy", stream=bar, enabled=True))
    assert report.port == BOARD and report.tree_id == b.tree_id and report.previous_id == old
    assert not report.up_to_date and report.sent == 2 and report.reused == len(b.files) - 2
    assert report.verified == len(b.files) + 1
    blob = len(b.files["blob.bin"])
    if raw:
        assert report.bytes_sent == blob + len(b.files["version.mpy"]) + len(b.manifest)
    else:  # the text half deflates, the random half does not
        assert report.bytes_sent < blob * 0.85
    assert board.wait_for("app v2 up") and board.boots == 2
    # The board confirmed the trial: the new tree is current, exactly the build; the old one previous.
    assert _tree(board.flash) == (b.tree_id, _want(b))
    assert (board.flash / "app" / "previous").read_text() == old
    assert not (board.flash / "app" / "trial").exists()
    total = (blob + len(b.files["version.mpy"])) / 1024
    assert f"2/2 files {total:.1f}/{total:.1f} KB" in bar.getvalue()


class Lossy:
    """The host's link, losing the puts whose numbers are in `drop` (counted from 1)."""

    def __init__(self, transport: SpoolTransport, drop: set[int]):
        self.t = transport
        self.drop = drop
        self.puts = 0

    def send(self, dst: str, data: bytes) -> None:
        if b"update.put" in data:
            self.puts += 1
            if self.puts in self.drop:
                return
        self.t.send(dst, data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.t, name)


@pytest.mark.parametrize("raw", [False, True], ids=["deflate", "raw"])
def test_lost_puts_restart_the_stream_where_the_board_is_and_the_tree_arrives_whole(world, runtime, raw):
    board, host, app = world({"raw": raw})
    _app(app.parent, 2, blob=48 * 1024)
    b = dbuild.build(app, None, runtime)
    # Puts 2.. go 4 at a time: the first of a pass lost, the first two of the next, one mid-stream.
    lossy = host.transport = Lossy(host.transport, {2, 6, 7, 13})
    started = time.monotonic()
    report = ota.deploy_over_bus(host, BOARD, app, runtime=runtime, timeout=30)
    # Each lost put was given up when the board refused the next one: no call waited out its 30 s.
    assert time.monotonic() - started < 30
    assert report.tree_id == b.tree_id and lossy.puts > 13
    assert board.wait_for("app v2 up")
    assert _tree(board.flash) == (b.tree_id, _want(b))


def test_a_no_change_deploy_is_up_to_date_without_a_commit_or_a_reboot(world, runtime):
    board, host, app = world()
    report = ota.deploy_over_bus(host, BOARD, app, runtime=runtime)
    assert report.up_to_date and report.sent == 0 and report.bytes_sent == 0
    assert "already running" in report.summary()
    time.sleep(0.3)
    assert board.boots == 1 and board.mp.proc.poll() is None


def test_a_trial_that_fails_is_a_deploy_error_and_the_board_runs_the_old_tree(world, runtime):
    board, host, app = world()
    old, files = _tree(board.flash)
    _app(app.parent, 99)
    b = dbuild.build(app, None, runtime)
    with pytest.raises(ota.DeployError) as e:
        ota.deploy_over_bus(host, BOARD, app, runtime=runtime)
    assert str(e.value).startswith(f"the new tree {b.tree_id} failed its trial on {BOARD}: ValueError: "
                                   f"broken on purpose; the board runs {old} again")
    assert _tree(board.flash) == (old, files)
    assert board.wait_for("app v1 up", times=2)
    # What the board wrote about the failure, fetched over the bus.
    failed = ota.fetch(host, BOARD, "app/failed").decode()
    assert failed.startswith(f"{b.tree_id}\nValueError: broken on purpose\n")


def test_rollback_and_fetch_over_the_bus(world, runtime):
    board, host, app = world()
    with pytest.raises(ota.DeployError, match=f"no previous tree on {BOARD}"):
        ota.rollback_over_bus(host, BOARD)
    v1, _ = _tree(board.flash)
    _app(app.parent, 2, blob=20 * 1024)
    v2 = ota.deploy_over_bus(host, BOARD, app, runtime=runtime).tree_id
    assert board.wait_for("app v2 up")
    blob = (app / "blob.bin").read_bytes()
    assert ota.fetch(host, BOARD, f"app/{v2}/blob.bin", window=3) == blob  # several reads in flight
    assert ota.fetch(host, BOARD, "app/current") == v2.encode()

    report = ota.rollback_over_bus(host, BOARD)
    assert report.rolled_back and report.tree_id == v1 and report.previous_id == v2
    assert board.wait_for("app v1 up", times=2)
    assert (board.flash / "app" / "current").read_text() == v1
    assert (board.flash / "app" / "previous").read_text() == v2

    with pytest.raises(ota.DeployError, match=f"app/nothing: no such file on {BOARD}"):
        ota.fetch(host, BOARD, "app/nothing")
    with pytest.raises(ota.DeployError, match="is not a file under"):
        ota.fetch(host, BOARD, "../etc/passwd")


def test_refusals_of_the_board_are_deploy_errors_that_say_what_to_do(world, runtime):
    board, host, app = world({"trusted": ["host/ops"]})
    with pytest.raises(ota.DeployError, match=f"{BOARD} does not let this host update it .*trusted"):
        ota.deploy_over_bus(host, BOARD, app, runtime=runtime)
    with pytest.raises(ota.DeployError) as e:  # a node that is not there
        ota.deploy_over_bus(host, "gw/nobody", app, runtime=runtime, timeout=0.5)
    assert "no reply from gw/nobody" in str(e.value) and "spoolbus monitor gw/nobody" in str(e.value)


def test_another_host_updating_makes_the_board_busy_until_its_claim_lapses(world, runtime, tmp_path,
                                                                          monkeypatch):
    board, host, app = world({"trusted": [HOST, "host/other"]})
    other = node.Node("host/other", SpoolTransport(str(tmp_path / "spool"), "host/other"), timeout=5)
    try:
        b = dbuild.build(_app(app.parent, 2), None, runtime)
        assert "stage" in other.call(BOARD, "update.begin", {"tree": b.tree_id, "size": len(b.manifest)})
        with monkeypatch.context() as m:
            m.setattr(ota, "_BUSY_WAIT_S", 0.0)
            with pytest.raises(ota.DeployError, match=f"another host is updating {BOARD}"):
                ota.deploy_over_bus(host, BOARD, app, runtime=runtime)
        assert board.boots == 1
        # The other host went quiet (a deploy killed mid-transfer, say): 10 s after its last call the
        # board is free again, and a deploy that began meanwhile waits for that instead of failing.
        started = time.monotonic()
        report = ota.deploy_over_bus(host, BOARD, app, runtime=runtime)
        assert not report.up_to_date and time.monotonic() - started < 15
    finally:
        other.close()


def test_a_signing_board_takes_a_deploy_signed_by_a_trusted_host(world, runtime):
    keys = {BOARD: b"board key 0123456789", HOST: b"host key 9876543210"}
    board, host, app = world({"trusted": [HOST]}, keys=keys)
    _app(app.parent, 3)
    report = ota.deploy_over_bus(host, BOARD, app, runtime=runtime)
    assert report.sent == 1 and board.wait_for("app v3 up")
    unsigned = node.Node("host/x", SpoolTransport(str(board.flash.parent / "spool"), "host/x"))
    try:  # the board drops what is not signed: no reply, and the error says so
        with pytest.raises(ota.DeployError, match="drops unsigned calls"):
            ota.deploy_over_bus(unsigned, BOARD, app, runtime=runtime, timeout=0.5)
    finally:
        unsigned.close()


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLBUS_BROKER")}
    return subprocess.run([sys.executable, "-m", "spoolbus_host.cli", *args], capture_output=True,
                          timeout=120, env=env)


def test_the_cli_deploys_fetches_and_rolls_back_through_the_broker_signed(world, mosquitto, tmp_path):
    keys = {BOARD: os.urandom(16), "host/ops": os.urandom(16)}
    board, _, app = world({"trusted": ["host/ops"], "mqtt": mosquitto.port}, keys=keys)
    key_file = tmp_path / "keys.json"
    key_file.write_text(json.dumps({k: v.hex() for k, v in keys.items()}))
    bus = ["--to", BOARD, "--broker", f"127.0.0.1:{mosquitto.port}", "--key-file", str(key_file)]
    v1, _ = _tree(board.flash)
    _app(app.parent, 2)
    out = _cli("deploy", str(app), *bus, "--json")
    assert out.returncode == 0, out.stderr.decode()
    report = json.loads(out.stdout)
    assert report["port"] == BOARD and report["previous_id"] == v1 and report["sent"] == 1
    assert board.wait_for("app v2 up")
    out = _cli("deploy", str(app), *bus)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().startswith(f"{BOARD}: tree {report['tree_id']} already running")
    fetch = ["fetch", BOARD, "app/current", *bus[2:]]
    out = _cli(*fetch)
    assert out.returncode == 0 and out.stdout == report["tree_id"].encode(), out.stderr.decode()
    out = _cli(*fetch, "--out", str(tmp_path / "current.txt"))
    assert out.returncode == 0 and out.stdout == b""
    assert (tmp_path / "current.txt").read_text() == report["tree_id"]
    out = _cli("deploy", "--rollback", *bus)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().startswith(f"{BOARD}: rolled back to tree {v1}")
    assert board.wait_for("app v1 up", times=2)
    out = _cli("fetch", BOARD, "app/nothing", *bus[2:])
    assert out.returncode == 2
    assert out.stderr.decode() == f"spoolbus fetch: app/nothing: no such file on {BOARD}\n"
