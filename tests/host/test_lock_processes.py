"""The lock between real processes: CPython, MicroPython and both at once; kill -9, SIGSTOP and fencing.

Counts are exact only if no two processes ever held the lock at once (read, then write, of one file).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from spoolbus.lock import _whoami

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKER = str(ROOT / "tests" / "host" / "lock_worker.py")
MICROPYTHON = os.environ.get("SPOOLBUS_MICROPYTHON", str(ROOT / ".cache/micropython-1.25.0/bin/micropython"))
CMD = {"cp": [sys.executable, "-u", WORKER], "mp": [MICROPYTHON, WORKER]}
ENV = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:{ROOT}/tests/portable:.frozen",
           PYTHONPATH=f"{ROOT}/runtime:{ROOT}/tests/portable")


class Worker:
    def __init__(self, interp: str, *args: object):
        self.proc = subprocess.Popen(CMD[interp] + [str(a) for a in args], stdout=subprocess.PIPE,
                                     stdin=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, text=True)

    def line(self) -> str:
        out = self.proc.stdout.readline().strip()
        assert out, f"worker exited ({self.proc.wait()}) without a line"
        return out

    def finish(self, timeout: float = 60) -> str:
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, out
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def workers():
    started: list[Worker] = []

    def start(interp: str, *args: object) -> Worker:
        started.append(Worker(interp, *args))
        return started[-1]

    yield start
    for w in started:
        w.kill()


def _count(tmp_path, workers, interps, lock, rounds):
    """Start the counting processes together (all started, then a go file); the final count."""
    counter, go = tmp_path / "count", tmp_path / "go"
    counter.write_text("0")
    procs = [workers(i, "count", lock, counter, rounds, go) for i in interps]
    for p in procs:
        assert p.line() == "ready"
    go.touch()
    for p in procs:
        assert p.finish().strip() == "done"
    return int(counter.read_text())


@pytest.mark.parametrize("mix", ["cp,cp,cp,cp", "mp,mp,mp,mp", "cp,mp,cp,mp"])
def test_processes_counting_under_the_lock_lose_no_increment(tmp_path, workers, mix):
    rounds = 1000
    interps = mix.split(",")
    assert _count(tmp_path, workers, interps, tmp_path / "lk", rounds) == rounds * len(interps)
    assert os.listdir(tmp_path / "lk") == [f"f{rounds * len(interps)}"]


def test_the_same_processes_without_the_lock_lose_increments(tmp_path, workers):
    """The counting test can fail: without the lock the processes overlap and the count comes out wrong.

    Mostly short (lost updates), but it can also overshoot: two overlapping in-place writes of "999" and
    "1000" leave "9990" (seen once: 2066 of 1600).
    """
    assert _count(tmp_path, workers, ["cp", "mp", "cp", "mp"], "none", 400) != 1600


def test_of_processes_racing_to_break_one_dead_holder_exactly_one_wins(tmp_path, workers):
    from spoolbus.lock import Lock

    lk = str(tmp_path / "lk")
    for round_ in range(3):
        Lock(lk, timeout=0).acquire().release()
        (entry,) = os.listdir(lk)
        token = int(entry[1:])
        dead = f"h{token}.{'.'.join(_whoami()[:3])}.4194305.1.0.0"  # this machine, a pid that cannot exist
        os.rename(f"{lk}/{entry}", f"{lk}/{dead}")
        go = tmp_path / f"go{round_}"
        procs = [workers(i, "grab", lk, go) for i in ["cp", "mp", "cp", "mp", "cp", "mp"]]
        for p in procs:
            assert p.line() == "ready"
        go.touch()
        results = sorted(p.line() for p in procs)
        assert results == ["busy"] * 5 + [f"took {token + 1}"], results
        for p in procs:
            p.finish()  # closes its stdin: the holders let go
        (entry,) = os.listdir(lk)
        os.rename(f"{lk}/{entry}", f"{lk}/f{token + 1}")  # the winner's hold, let go for the next round


@pytest.mark.parametrize("holder,taker", [("cp", "mp"), ("mp", "cp")])
def test_holder_killed_with_sigkill_is_broken_and_the_next_proceeds(tmp_path, workers, holder, taker):
    h = workers(holder, "hold", tmp_path / "lk")
    assert h.line() == "held 1"
    h.proc.kill()  # not reaped yet: a zombie, which is dead all the same
    t = time.monotonic()
    assert workers(taker, "take", tmp_path / "lk", 5).finish().strip() == "took 2"
    assert time.monotonic() - t < 2


@pytest.mark.parametrize("holder,breaker", [("cp", "mp"), ("mp", "cp")])
def test_stopped_holder_loses_its_lease_and_sees_lock_lost_when_it_resumes(
    tmp_path, workers, holder, breaker
):
    h = workers(holder, "renew", tmp_path / "lk", 0.2)
    assert h.line() == "held 1"
    time.sleep(0.3)  # renewing all along: not breakable
    out = subprocess.run(CMD[breaker] + ["take", str(tmp_path / "lk"), "0"], env=ENV, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout
    assert "LockTimeout" in out and f"pid {h.proc.pid}" in out
    h.proc.send_signal(signal.SIGSTOP)
    try:
        assert workers(breaker, "take", tmp_path / "lk", 5).finish().strip() == "took 2"
    finally:
        h.proc.send_signal(signal.SIGCONT)
    assert h.line() == "lost 1"


@pytest.mark.parametrize("kind", ["lfs", "fat"])
def test_holder_killed_on_a_littlefs_or_fat_image_is_broken_by_the_next_process_to_mount_it(
    tmp_path, workers, kind
):
    image = tmp_path / "disk.img"
    h = workers("mp", "image", kind, image, "mkfs", "hold", "/disk/lk")
    assert h.line() == "held 1"
    h.kill()  # only one process may mount an image at a time: the next mounts after this one is gone
    out = workers("mp", "image", kind, image, "mount", "take", "/disk/lk", 0).finish()
    assert out.strip() == "took 2"
    out = workers("mp", "image", kind, image, "mount", "count", "/disk/lk", "/disk/count", 20).finish()
    assert out.split() == ["ready", "done"]


def test_forked_child_is_its_own_holder(tmp_path):
    """A child forked after the parent used a Lock names itself, so its death is seen as such."""
    from spoolbus.lock import Lock

    Lock(tmp_path / "lk").acquire().release()
    pid = os.fork()
    if pid == 0:
        Lock(str(tmp_path / "lk")).acquire()
        os._exit(0)  # dies holding it
    os.waitpid(pid, 0)
    assert f".{pid}." in os.listdir(tmp_path / "lk")[0]
    lk = Lock(str(tmp_path / "lk"), timeout=0, lease=None).acquire()
    assert lk.token == 3
