"""`spoolbus rollout` on a real fleet: 13 boards behind two bridges (tests/host/fleet_rig.py): two
MicroPython unix boards on ptys, a QEMU board on its emulated UART, ten cheap unix-port boards on the
bridges' spools, one mosquitto.

The fleet is shared by the module and each test starts from the tree the fleet runs then; they run in
the file's order: the first rolls the fleet from its first release (app 1.0) to app 1.1 while hosts keep
calling every device, the others each roll (or refuse to roll) a release of their own on top of that.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fleet_rig import BRIDGES, Caller, Fleet, SpoolBoard, has_qemu
from spoolbus.node import Node
from spoolbus_host.boards.unix_board import MICROPYTHON
from spoolbus_host.deploy import build as dbuild
from spoolbus_host.mqtt.paho import PahoTransport
from spoolbus_host.rollout import plan
from spoolbus_host.rollout.run import Options, Rollout
from spoolbus_host.rollout.state import State

pytestmark = [
    pytest.mark.skipif(not MICROPYTHON.exists(), reason="MicroPython not built"),
    pytest.mark.skipif(not has_qemu(), reason="qemu-system-arm or the ARM toolchain is not installed"),
]

LAYOUT = {"gwa": {"pty": 1, "spool": 5}, "gwb": {"pty": 1, "qemu": 1, "spool": 5}}
DEVICES = "gw*/*"
# What the fleet's first release (app 1.0) and the release of the first test (app 1.1) answer app.version.
FIRST, SECOND = 1, 2


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(LAYOUT, tmp_path_factory.mktemp("fleet"))
    try:
        started = time.monotonic()
        f.start(f.release(FIRST, "1.0"))
        print(f"\nfleet of {len(f.devices)} up in {time.monotonic() - started:.1f} s (set-up of the slowest "
              f"board of each kind: {', '.join(f'{k} {s:.1f} s' for k, s in sorted(f.started_s.items()))})")
        yield f
    finally:
        f.close()


def _cli(fleet: Fleet, app: Path, state: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cli_args(fleet, app, state, *extra), capture_output=True, text=True, timeout=300)


def _cli_args(fleet: Fleet, app: Path, state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "spoolbus_host.cli", "rollout", str(app), "--devices", DEVICES,
            "--broker", f"127.0.0.1:{fleet.broker.port}", "--state", str(state), *extra]


def _one_tree(fleet: Fleet) -> str:
    """The tree every device of the fleet runs (the test's starting point)."""
    trees = {name: cur for name, (cur, _) in fleet.trees().items()}
    assert len(set(trees.values())) == 1, trees
    return next(iter(trees.values()))


def _boots(fleet: Fleet) -> dict[str, list[str]]:
    return {d.name: fleet.boots(d) for d in fleet.devices}


def test_a_rollout_over_two_bridges_upgrades_every_device_canary_first_while_every_call_succeeds(fleet):
    old = _one_tree(fleet)
    assert old == fleet.first_tree
    new_app = fleet.release(SECOND, "1.1")
    new = dbuild.build(new_app, None).tree_id
    callers = [Caller(fleet, f"caller-{b}", [d for d in fleet.devices if d.name.startswith(b + "/")])
               for b in BRIDGES]
    for c in callers:
        c.start()

    def connect(k: int) -> Node:
        t = PahoTransport(fleet.broker.host, fleet.broker.port, "host", f"rollout-{k}", clean_session=True,
                          presence=False, watch="+" if k == 0 else None)
        return Node(t.name, t, timeout=5.0, max_pending=8, max_message=65536)

    events: list[tuple[float, dict]] = []
    state = State(fleet.workdir / "rollout.sqlite")
    time.sleep(1.0)  # calls before the rollout, to every device
    try:
        report = Rollout(connect, new_app, [DEVICES], state, Options(parallel=4),
                         on_event=lambda e: events.append((time.monotonic(), e))).run()
        time.sleep(1.5)  # and after it: every device at app 1.1 (the callers' hellos are 0.5 s apart)
    finally:
        for c in callers:
            c.stop()
        state.close()
    d = report.as_dict()
    times = sorted(x["seconds"] for w in d["waves"] for x in w)
    print(f"\nrollout of {len(fleet.devices)} devices: {d['seconds']} s; per device p50 "
          f"{d['upgrade_s']['p50']} s, p99 {d['upgrade_s']['p99']} s, max {times[-1]} s; by device: "
          + ", ".join(f"{x['node']} {x['seconds']}" for w in d["waves"] for x in w))
    print("calls: " + ", ".join(f"{n} {c.ok[n]} ({c.at_1_1[n]} at 1.1, longest "
                                f"{max(b - a for a, b in c.calls[n]):.2f} s)" for c in callers for n in c.ok))
    across = [(a, b) for c in callers for dev in fleet.devices if isinstance(dev.board, SpoolBoard)
              for a, b in c.calls.get(dev.name, [])
              if any(a < up and b > down for down, up in dev.board.downs)]
    reboots = [up - down for dev in fleet.devices if isinstance(dev.board, SpoolBoard)
               for down, up in dev.board.downs]
    print(f"spool boards: reboots of {min(reboots):.3f} to {max(reboots):.3f} s (exit to node up); "
          f"{len(across)} calls were waiting while their board rebooted, the longest "
          f"{max((b - a for a, b in across), default=0):.2f} s")

    failures = [f for c in callers for f in c.failures]
    assert failures == [], failures
    assert d["outcome"] == "done", d
    names = sorted(x.name for x in fleet.devices)
    assert sorted(x["node"] for w in d["waves"] for x in w) == names
    assert all(x["state"] == "done" and x["old_tree"] == old for w in d["waves"] for x in w), d["waves"]
    # Canary first: waves of 1, 10%, 50%, 100% of 13; no other device began before the canary was done.
    assert [len(w) for w in d["waves"]] == plan.wave_sizes(len(names), plan.parse_waves(plan.DEFAULT_WAVES))
    assert [len(w) for w in d["waves"]][0] == 1
    canary = d["waves"][0][0]["node"]
    steps = [(e["node"], e["state"]) for _, e in events if e["event"] == "device"]
    assert steps[:2] == [(canary, "deploying"), (canary, "done")], steps
    # Both bridges in the early waves: the canary on one, the second wave on the other.
    assert {d["waves"][0][0]["node"].split("/")[0], d["waves"][1][0]["node"].split("/")[0]} == set(BRIDGES)
    for c in callers:
        for n in c.ok:
            assert c.at_1_1[n] >= 1 and c.ok[n] > c.at_1_1[n], (n, c.ok[n], c.at_1_1[n])
            assert c.trees_seen[n] == {new}, (n, c.trees_seen[n])  # app.tree: only ever the new tree
    assert fleet.trees() == {n: (new, old) for n in names}
    for dev in fleet.devices:
        assert fleet.services(dev) == {"app": "1.1", "update": "1.0"}, dev.name
        assert fleet.boots(dev)[-1] == new, dev.name


@pytest.mark.parametrize("fault", ["raises at import", "advertises the wrong API version"])
def test_a_bad_release_aborts_after_the_canary_and_leaves_every_device_on_its_old_tree(fleet, tmp_path,
                                                                                      fault):
    old = _one_tree(fleet)
    before = _boots(fleet)
    if fault == "raises at import":
        bad = fleet.release(90, broken=True, declares="1.1")
    else:  # serves app 1.0 but declares 1.1: its trial confirms, the rollout's check refuses it
        bad = fleet.release(91, "1.0", declares="1.1")
    tree = dbuild.build(bad, None).tree_id
    started = time.monotonic()
    r = _cli(fleet, bad, tmp_path / "state.sqlite", "--json")
    seconds = time.monotonic() - started
    assert r.returncode == 1, (r.stdout, r.stderr)
    d = json.loads(r.stdout)
    print(f"\n{fault}: aborted in {seconds:.1f} s (CLI wall), report {d['seconds']} s")
    assert d["outcome"] == "aborted" and d["tree"] == tree
    canary = d["waves"][0][0]
    assert len(d["waves"][0]) == 1
    why = ("RuntimeError: release 90 is broken" if fault == "raises at import"
           else "its hello advertises app 1.0 (the release declares 1.1)")
    assert canary["node"] in d["reason"] and why in d["reason"], d["reason"]
    assert d["reason"].startswith("the canary failed: ")
    assert why in canary["reason"]
    # The canary's trial failed (it booted its old tree itself), or it passed and was rolled back.
    assert canary["state"] == ("failed" if fault == "raises at import" else "rolled_back"), canary
    assert all(x["state"] == "pending" for w in d["waves"][1:] for x in w), d["waves"]
    assert {n: cur for n, (cur, _) in fleet.trees().items()} == {n: old for n in before}
    after = _boots(fleet)
    for name in before:  # only the canary booted: the bad tree, then the old one again
        grew = after[name][len(before[name]):]
        assert after[name][:len(before[name])] == before[name]
        assert grew == ([tree, old] if name == canary["node"] else []), (name, grew)
    assert "aborting: rolling wave 1 back" in r.stderr


def test_a_rollout_killed_mid_wave_and_run_again_boots_each_device_s_new_tree_exactly_once(fleet, tmp_path):
    old = _one_tree(fleet)
    before = _boots(fleet)
    app = fleet.release(3, "1.1")
    new = dbuild.build(app, None).tree_id
    state_file = tmp_path / "state.sqlite"
    started = time.monotonic()
    first = subprocess.Popen(_cli_args(fleet, app, state_file), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(first.stderr), daemon=True)
    reader.start()
    seen = _kill_mid_wave(first, state_file, wave=2)
    first.wait(10)
    reader.join(5)
    killed_at = time.monotonic() - started
    assert first.returncode == -signal.SIGKILL
    assert any("wave 3/4: " in line for line in stderr), stderr
    again = _cli(fleet, app, state_file, "--json")
    total = time.monotonic() - started
    assert again.returncode == 0, (again.stdout, again.stderr)
    d = json.loads(again.stdout)
    print(f"\nkilled after {killed_at:.1f} s with wave 3 at {seen}; the second run: {d['seconds']} s; "
          f"both: {total:.1f} s (CLI wall)")
    assert "continuing the rollout of tree " + new in again.stderr
    assert d["outcome"] == "done" and d["tree"] == new
    assert all(x["state"] == "done" for w in d["waves"] for x in w), d["waves"]
    assert fleet.trees() == {dev.name: (new, old) for dev in fleet.devices}
    after = _boots(fleet)
    for name in before:
        grew = after[name][len(before[name]):]
        assert grew == [new], (name, grew)  # the new tree booted once, nothing else booted


def _kill_mid_wave(proc: subprocess.Popen, state_file: Path, wave: int,
                   timeout: float = 120) -> dict[str, str]:
    """SIGKILL `proc` once its state file shows wave `wave` (0: the canary) begun and not over: a device
    of it done and another still deploying, or pending. Returns that wave's states then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the rollout ended before it could be killed"
        states = _states(state_file, wave)
        if "done" in states.values() and {"deploying", "pending"} & set(states.values()):
            proc.send_signal(signal.SIGKILL)
            return states
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"wave {wave + 1} never was half done in {timeout} s")


def _states(state_file: Path, wave: int) -> dict[str, str]:
    if not state_file.exists():
        return {}
    db = sqlite3.connect(f"file:{state_file}?mode=ro", uri=True, timeout=5)
    try:
        return dict(db.execute("select node, state from devices where wave = ?", (wave,)).fetchall())
    except sqlite3.OperationalError:  # the tables are not there yet
        return {}
    finally:
        db.close()


def test_a_release_that_breaks_callers_is_refused_and_a_dry_run_changes_nothing(fleet, tmp_path):
    trees = fleet.trees()
    before = _boots(fleet)
    services = {fleet.services(dev)["app"] for dev in fleet.devices}
    breaking = fleet.release(20, "2.0")
    state_file = tmp_path / "state.sqlite"
    r = _cli(fleet, breaking, state_file)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--allow-breaking" in lines[0], r.stderr
    assert all(f"app {v} -> 2.0 changes the major version" in lines[0] for v in services), lines[0]
    assert r.stdout == ""
    assert _planned(state_file) is None

    dry = fleet.release(4, "1.1")
    r = _cli(fleet, dry, state_file, "--dry-run")
    assert r.returncode == 0, (r.stdout, r.stderr)
    tree = dbuild.build(dry, None).tree_id
    assert r.stdout.splitlines()[0] == f"plan for tree {tree} (dry run)"
    for dev in fleet.devices:
        assert f" {dev.name} " in r.stdout and "pending" in r.stdout
    assert _planned(state_file) is None
    assert fleet.trees() == trees and _boots(fleet) == before


def _planned(state_file: Path) -> str | None:
    """The tree a rollout state file holds a plan for (None: nothing was planned)."""
    state = State(state_file)
    try:
        return state.get("tree")
    finally:
        state.close()
