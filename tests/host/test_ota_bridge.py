"""Over-the-bus deploys end to end: mosquitto, a bridge, a MicroPython unix board, a host node (ota_rig.py).

The board is first deployed over serial, then reached through the bridge (its serial link or its spool)
or on the broker itself; every OTA here goes through `deploy_over_bus` or `spoolbus deploy --to` as a
user runs it, and the board's answer to `app.version` says which tree runs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ota_rig import Rig
from spoolbus import errors
from spoolbus_host.boards.unix_board import MICROPYTHON
from spoolbus_host.deploy import ota
from spoolbus_host.deploy.build import DeployError, build

pytestmark = pytest.mark.skipif(
    not Path(os.environ.get("SPOOLBUS_MICROPYTHON", MICROPYTHON)).exists(), reason="MicroPython not built"
)

BLOB = 24_000  # an incompressible file: a transfer that lasts long enough to be cut mid-way


@pytest.fixture
def rig(tmp_path):
    made: list[Rig] = []

    def start(link: str = "serial", **release) -> Rig:
        r = Rig(tmp_path / f"rig-{len(made)}", link=link)
        made.append(r)
        r.start(r.release(1, **release))
        return r

    yield start
    for r in made:
        r.close()


def _changed_bytes(rig: Rig, new: Path) -> int:
    """Bytes of the files of `new`'s tree that the first release's tree does not have as they are."""
    a, b = build(rig.first), build(new)
    return sum(len(d) for p, d in b.files.items() if a.hashes.get(p) != b.hashes[p])


def _status(rig: Rig) -> dict:
    return rig.call("update.status")


def _staged(rig: Rig, tree_id: str, name: str = "blob.bin") -> int:
    """Bytes of `name` staged so far for tree `tree_id` on the board's flash."""
    p = rig.workdir / "flash" / "app" / tree_id / name
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _wait_staging(rig: Rig, tree_id: str, at_least: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = _staged(rig, tree_id)
        if got >= at_least:
            return got
        time.sleep(0.002)
    raise AssertionError(f"tree {tree_id}: blob.bin never reached {at_least} bytes on the board")


@pytest.mark.parametrize("link", ["serial", "spool", "mqtt"])
def test_a_new_tree_over_the_bus_runs_after_the_reboot(rig, link):
    r = rig(link)
    assert r.version() == 1
    v2 = r.release(2)
    report = ota.deploy_over_bus(r.host, r.name, v2)
    assert r.version() == 2
    assert not report.up_to_date
    assert 0 < report.sent <= 2  # version.py and board_config.py only; the runtime is kept
    st = _status(r)
    assert st["current"].startswith(report.tree_id) and st["previous"] and st["trial"] in (None, "")
    assert st["failed"] is None


def test_the_bridge_serves_the_boards_other_calls_during_the_transfer(rig):
    r = rig("serial")
    other = r.node("other")
    served, failed = [], []
    transferring = threading.Event()
    done = threading.Event()

    class Watch:
        def start(self, files: int, nbytes: int) -> None:
            transferring.set()

        def advance_bytes(self, n: int) -> None: ...
        def advance_file(self, name: str) -> None: ...

        def finish(self) -> None:
            done.set()

    def caller() -> None:
        transferring.wait(20)
        while not done.is_set():
            try:
                served.append(r.version(node=other, timeout=2.0))
            except errors.SpoolbusError as e:
                if not done.is_set():  # the reboot after the transfer is not the transfer
                    failed.append(e)

    t = threading.Thread(target=caller, daemon=True)
    t.start()
    report = ota.deploy_over_bus(r.host, r.name, r.release(2, blob=BLOB), progress=Watch())
    t.join(10)
    assert r.version() == 2 and report.sent >= 1
    assert len(served) >= 3 and set(served) == {1}, (len(served), failed)
    assert not failed


def test_a_no_change_deploy_is_up_to_date_and_sends_nothing(rig):
    r = rig("serial")
    before = _status(r)
    report = ota.deploy_over_bus(r.host, r.name, r.first)
    assert report.up_to_date and report.bytes_sent == 0
    assert _status(r)["current"] == before["current"] and r.version() == 1


def test_a_release_that_raises_at_import_is_given_up_and_the_old_tree_runs(rig):
    r = rig("serial")
    bad = r.release(3, broken=True)
    with pytest.raises(DeployError, match="failed its trial") as e:
        ota.deploy_over_bus(r.host, r.name, bad, timeout=2.0, boot_timeout=30)
    assert r.wait_answering(version=1) == 1
    st = _status(r)
    tree = build(bad).tree_id
    said = st["failed"]["reason"] + st["failed"]["trace"]
    assert st["failed"]["tree"].startswith(tree) and "RuntimeError" in said
    assert "release 3 is broken" in str(e.value) + said
    assert not st["current"].startswith(tree) and not st["trial"]


def test_a_release_that_never_confirms_is_given_up_at_its_deadline(rig):
    r = rig("serial")
    sick = r.release(4, healthy=False, deadline_s=2)
    with pytest.raises(DeployError, match="failed its trial"):
        ota.deploy_over_bus(r.host, r.name, sick, timeout=2.0, boot_timeout=30)
    assert r.wait_answering(version=1) == 1
    st = _status(r)
    assert st["failed"]["tree"].startswith(build(sick).tree_id) and "confirmed" in st["failed"]["reason"]


def test_rollback_over_the_bus_and_with_the_command(rig):
    r = rig("serial")
    ota.deploy_over_bus(r.host, r.name, r.release(2))
    assert r.version() == 2
    ota.rollback_over_bus(r.host, r.name)
    assert r.version() == 1
    res = _cli(r, "deploy", "--rollback", "--to", r.name)
    assert res.returncode == 0, res.stderr
    assert r.wait_answering(version=2) == 2


def _cli_cmd(rig: Rig, *args: str) -> list[str]:
    return [sys.executable, "-m", "spoolbus_host.cli", *args, "--broker", f"127.0.0.1:{rig.broker.port}"]


def _cli(rig: Rig, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(_cli_cmd(rig, *args), capture_output=True, text=True, timeout=timeout)


def _resumed(r: Rig, new: Path) -> None:
    """A second deploy completes the cut one, sending less than the changed files."""
    whole = _changed_bytes(r, new)
    try:
        report = ota.deploy_over_bus(r.host, r.name, new, timeout=2.0, boot_timeout=20)
    except DeployError as e:
        raise AssertionError(f"{e}; console tail: {bytes(r.board.console[-1500:])!r}") from None
    print("resumed:", report.summary(), f"({report.bytes_sent} of {whole} bytes)")
    assert r.version() == 2
    assert report.up_to_date or report.bytes_sent < whole, (report, whole)


def test_a_deploy_whose_host_is_killed_mid_transfer_resumes(rig, tmp_path):
    # The command's node is named by its key file: the rerun is the same source (as host/cli-<pid> it would
    # be another one, and begin would wait out the board's 10 s claim of the killed run).
    keys = {"ota/board": os.urandom(16).hex(), "host/ops": os.urandom(16).hex()}
    key_file = tmp_path / "keys.json"
    key_file.write_text(json.dumps(keys))
    board_keys = {k: bytes.fromhex(v) for k, v in keys.items()}
    r = rig("serial", keys=board_keys, trusted=["host/ops"])
    new = r.release(2, blob=BLOB, keys=board_keys, trusted=["host/ops"])
    tree = build(new).tree_id
    cmd = _cli_cmd(r, "deploy", str(new), "--to", r.name, "--key-file", str(key_file), "--json")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_staging(r, tree, 1)
        time.sleep(random.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    cut = _staged(r, tree)
    assert 0 < cut < BLOB, cut
    assert r.version() == 1
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert r.version() == 2
    assert report["bytes_sent"] < _changed_bytes(r, new), report


def _cut_while_deploying(r: Rig, new: Path, cut, restore) -> None:
    tree = build(new).tree_id
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(ota.deploy_over_bus(r.host, r.name, new, timeout=1.0, boot_timeout=20))
        except (DeployError, errors.SpoolbusError) as e:
            outcome.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    _wait_staging(r, tree, random.randint(1, BLOB // 2))
    cut()
    t.join(30)
    restore()
    assert outcome, "the first deploy did not end"
    print("first deploy:", repr(outcome[0])[:300])
    if isinstance(outcome[0], Exception):  # cut for good: the old tree runs, the next deploy resumes
        assert r.wait_answering() == 1
        assert 0 < _staged(r, tree) or r.version() == 2
    _resumed(r, new)


def test_a_deploy_cut_by_a_bridge_restart_resumes(rig):
    r = rig("serial")
    _cut_while_deploying(r, r.release(2, blob=BLOB), r._stop_bridge, r.restart_bridge)


def test_a_deploy_cut_by_a_power_cut_resumes(rig):
    r = rig("serial")
    _cut_while_deploying(r, r.release(2, blob=BLOB), r.power_cut, r.power_on)


def test_a_signing_board_refuses_an_unsigned_update_and_takes_a_trusted_signed_one(rig):
    keys = {"ota/board": "board-key", "host/signer": "signer-key"}
    r = rig("serial", keys=keys, trusted=["host/signer"])
    v2 = r.release(2, keys=keys, trusted=["host/signer"])
    with pytest.raises(DeployError, match="does not let this host update it"):
        ota.deploy_over_bus(r.host, r.name, v2, timeout=2.0)
    assert r.version() == 1
    signer = r.node("signer", keys={k: v.encode() for k, v in keys.items()})
    ota.deploy_over_bus(signer, r.name, v2, timeout=2.0)
    assert r.version() == 2
