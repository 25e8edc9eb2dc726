"""`spoolbus demo` end to end, as `make demo` runs it: real broker, bridge, QEMU and unix boards, deploys.

A short run must end with exit 0 and no errors, the sensor upgraded mid-run, that release rolled out to
every sensor in growing waves, a bad release stopped at its canary and rolled back, every board answering,
calls, casts and notifications flowing; a SIGTERM mid-run must stop everything too. Afterwards no
process it started is alive, the broker's port is closed and its work directory is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from spoolbus import proc
from spoolbus_host.boards.unix_board import MICROPYTHON

pytestmark = pytest.mark.skipif(
    not Path(MICROPYTHON).exists() or shutil.which("qemu-system-arm") is None
    or shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="needs the MicroPython build, qemu-system-arm and mosquitto",
)

DEMO = [sys.executable, "-m", "spoolbus_host.cli", "demo", "--json"]


def _processes_using(path: str) -> list[int]:
    """Processes whose command line or working directory is under `path`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if path in cmdline or cwd.startswith(path):
            found.append(int(entry))
    return found


def _assert_nothing_left(summary: dict) -> None:
    assert summary["processes"] and not [p for p in summary["processes"] if proc.alive(p)]
    assert summary["left_running"] == []
    assert not Path(summary["workdir"]).exists()
    assert _processes_using(summary["workdir"]) == []
    if "broker_port" in summary:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", summary["broker_port"]), 1).close()


def test_demo_upgrades_the_sensor_rolls_it_out_in_waves_stops_a_bad_release_and_leaves_nothing_running():
    started = time.monotonic()
    res = subprocess.run(DEMO + ["--seconds", "8"], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    summary = json.loads(res.stdout)
    assert summary["ok"] and summary["errors"] == 0, summary["error_list"]

    devices = summary["devices"]
    assert all(d["took_part"] and d["online"] for d in devices.values()), devices
    assert any(d["board"].startswith("QEMU") for d in devices.values())
    assert [d["link"] for d in devices.values() if d["board"].startswith("MicroPython")].count("spool") >= 2
    assert any(d["link"] == "serial pty" and d["board"].startswith("MicroPython") for d in devices.values())

    up = summary["upgrade"]
    assert up["done"] and up["error"] == "" and up["failed_calls_during"] == 0
    assert devices["gw/sensor"]["services"] == {"sensor": "1.1", "update": "1.0"}
    assert up["first_1_1_call_at_s"] is not None and up["first_1_1_call_at_s"] >= up["started_at_s"]

    # The staged rollout of that release over every sensor: gw/sensor has it already, the others take it
    # in growing waves after a canary; the bad release stops at its canary, which is rolled back.
    sensors = sorted(n for n, d in devices.items() if "sensor" in d["services"])
    assert len(sensors) >= 6
    assert all(devices[n]["services"] == {"sensor": "1.1", "update": "1.0"} for n in sensors)
    ro = summary["rollout"]
    assert ro["done"] and ro["error"] == "" and ro["failed_calls_during"] == 0, ro["summary"]
    assert ro["started_at_s"] >= up["advertised_at_s"]
    good, bad = ro["releases"]
    sizes = [len(w) for w in good["waves"]]
    assert good["outcome"] == "done" and sizes[0] == 1 and len(sizes) >= 3 and sizes == sorted(sizes)
    assert good["skipped"] == [{"node": "gw/sensor", "why": f"runs tree {good['tree']} already"}]
    assert sorted(d["node"] for w in good["waves"] for d in w if d["state"] == "done") == sensors[1:]
    assert bad["outcome"] == "aborted" and bad["reason"].startswith("the canary failed")
    canary = bad["waves"][0]
    assert len(canary) == 1 and canary[0]["state"] == "rolled_back"
    assert "the release declares 1.2" in canary[0]["reason"]
    assert all(d["state"] == "pending" for w in bad["waves"][1:] for d in w)
    assert ro["trees"] == {n: good["tree"] for n in sensors} and ro["good_tree"] == good["tree"]

    t = summary["traffic"]
    assert t["calls_ok"] > 0 and t["calls_failed"] == 0 and t["casts"] > 0 and t["notifications"] > 0
    assert t["events"].get("control.changed", 0) > 0 and t["events"].get("board.tick", 0) > 0
    assert summary["controller"]["ok"] > 0 and summary["controller"]["failed"] == 0  # board to board
    assert summary["bridge"].get("local", 0) > 0  # routed by the bridge between its own devices
    _assert_nothing_left(summary)
    print(f"demo of 8 s of traffic: {time.monotonic() - started:.1f} s in all, "
          f"start-up {summary['startup_s']} s")


def test_sigterm_mid_run_stops_everything():
    proc = subprocess.Popen(DEMO + ["--seconds", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 180
        for line in proc.stderr:
            if "answered hello" in line or time.monotonic() > deadline:
                break
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    summary = json.loads(out)
    assert summary["error_list"][-1] == "interrupted" and summary["traffic"]["calls_ok"] > 0
    _assert_nothing_left(summary)
