"""The spool on a full disk, a read-only filesystem, a vanished directory, and in durable mode (CPython)."""

import os
import subprocess
import threading

import pytest
from spoolbus import spool
from spoolbus.spool import SpoolError, SpoolFull


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (needs root and mount permission; skipped otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def _valid_files(d):
    return [n for n in os.listdir(d) if spool.check((d / n).read_bytes()) is not None]


def test_full_disk_raises_spool_full_and_leaves_nothing_half_visible(small_disk):
    s = spool.Spool(str(small_disk / "s"))
    returned = []
    with pytest.raises(SpoolFull) as e:
        for i in range(10_000):
            returned.append(s.put(b"%05d" % i + b"x" * 3000))
    assert "disk full" in str(e.value)
    assert os.listdir(small_disk / "s" / "tmp") == []
    new = small_disk / "s" / "new"
    assert sorted(os.listdir(new)) == returned == sorted(_valid_files(new))
    with pytest.raises(SpoolFull):
        s.put_many([b"y" * 3000] * 30)
    assert sorted(os.listdir(new)) == returned and os.listdir(small_disk / "s" / "tmp") == []
    got = []
    while (m := s.claim()) is not None:
        got.append(m[0])
        s.ack(m[0])
    assert got == returned
    s.put(b"room again")


def test_read_only_spool_can_be_opened_but_put_and_claim_say_why_they_fail(small_disk):
    s = spool.Spool(str(small_disk / "s"))
    s.put(b"kept")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        ro = spool.Spool(str(small_disk / "s"))
        assert len(ro) == 1
        with pytest.raises(SpoolError) as e:
            ro.put(b"x")
        assert "writing" in str(e.value) and "Read-only" in str(e.value)
        with pytest.raises(SpoolError) as e:
            ro.claim()
        assert "Read-only" in str(e.value)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert s.claim()[1] == b"kept"


def test_spool_removed_under_a_consumer_is_a_clear_error(tmp_path):
    s = spool.Spool(str(tmp_path / "s"))
    subprocess.run(["rm", "-rf", str(tmp_path / "s")], check=True)
    with pytest.raises(SpoolError) as e:
        s.claim()
    assert "listing" in str(e.value)
    with pytest.raises(SpoolError):
        s.put(b"x")


def _count_syncs(s: spool.Spool) -> list[int]:
    """Make the spool's syncfs calls land in the returned list (the real call still runs)."""
    calls = []
    real = s._sync._libc

    class Counting:
        def syncfs(self, fd):
            calls.append(fd)
            return real.syncfs(fd)

    s._sync._libc = Counting()
    return calls


def test_durable_put_and_put_many_commit_with_one_sync_per_batch(tmp_path, monkeypatch):
    s = spool.Spool(str(tmp_path / "s"), durable=True)
    assert s._sync, "syncfs(2) is expected on Linux"
    calls = _count_syncs(s)
    ids = s.put_many([b"m%d" % i for i in range(50)])
    s.put(b"one more")
    assert len(calls) == 2
    got = []
    while (m := s.claim()) is not None:
        got.append(m[0])
        s.ack(m[0])
    assert got == ids + got[-1:]
    s.close()


def test_durable_puts_from_threads_share_syncs(tmp_path):
    s = spool.Spool(str(tmp_path / "s"), durable=True)
    calls = _count_syncs(s)

    def producer(k):
        for i in range(40):
            s.put(b"%d-%d" % (k, i))

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(s) == 160
    assert len(calls) < 160, "group commit should let one sync cover several threads' puts"
    s.close()


def test_durable_mode_without_syncfs_fsyncs_files_and_directory_once_per_batch(tmp_path, monkeypatch):
    def no_syncfs(path):
        raise AttributeError("syncfs")

    monkeypatch.setattr(spool, "_SyncFs", no_syncfs)
    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    s = spool.Spool(str(tmp_path / "s"), durable=True)
    assert s._sync is False
    s.put_many([b"a", b"b", b"c"])
    assert len(fsyncs) == 4  # each file, then the directory once
    assert s.claim()[1] == b"a"
    s.close()
