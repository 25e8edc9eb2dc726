"""The directory lock excludes holders, breaks dead or expired ones and fences them, on every filesystem.

littlefs and FAT tests exist only under MicroPython (vfs on RAM block devices); CPython does not collect them.
"""

import os
import time

from blockdev import RAMBlockDevice
from mpcompat import raises, temp_dir
from spoolbus import lock, proc
from spoolbus.lock import Lock, LockError, LockLost, LockTimeout

try:
    import vfs
except ImportError:
    vfs = None


def _entries(path):
    return sorted(os.listdir(path))


def _plant(path, name):
    """Replace the lock's state by `name`, as another holder (or what a crash left) would have it."""
    for n in os.listdir(path):
        os.remove(path + "/" + n)
    open(path + "/" + name, "w").close()


def _held_by(path, node=None, boot=None, ns=None, pid=None, start=None, expiry=0, token=7):
    me = lock._whoami()
    fields = (node or me[0], boot or me[1], ns or me[2], pid or me[3], start or me[4])
    return "h%d.%s.%s.%s.%s.%s.%d.%d" % ((token,) + fields + (lock._now_ms() - 5000, expiry))


def _fresh(root):
    p = root + "/lk"
    Lock(p, timeout=0).acquire().release()
    return p


def test_tokens_grow_with_every_acquisition():
    with temp_dir() as d:
        a = Lock(d + "/lk", timeout=0)
        tokens = []
        for _ in range(3):
            a.acquire()
            tokens.append(a.token)
            a.check()
            a.release()
            assert a.token is None
        b = Lock(d + "/lk", timeout=0)
        with b:
            tokens.append(b.token)
        assert tokens == [1, 2, 3, 4]
        assert _entries(d + "/lk") == ["f4"]


def test_second_holder_times_out_naming_the_first():
    with temp_dir() as d:
        a = Lock(d + "/lk").acquire()
        t = time.time()
        with raises(LockTimeout) as e:
            Lock(d + "/lk", timeout=0.05).acquire()
        assert time.time() - t >= 0.049  # the lock counts whole milliseconds (ticks_ms)
        assert ("pid %s" % lock._whoami()[3]) in str(e.value)
        assert "token 1, held for 0." in str(e.value)
        a.release()
        with Lock(d + "/lk", timeout=0) as b:
            assert b.token == 2


def test_context_manager_releases_when_the_block_raises():
    with temp_dir() as d:
        with raises(KeyError):
            with Lock(d + "/lk"):
                raise KeyError("x")
        assert _entries(d + "/lk") == ["f1"]


def test_expired_lease_is_broken_and_the_old_holder_sees_lock_lost():
    with temp_dir() as d:
        a = Lock(d + "/lk", lease=0.03).acquire()
        time.sleep(0.06)
        b = Lock(d + "/lk", timeout=0).acquire()
        assert b.token == 2
        with raises(LockLost) as e:
            a.check()
        assert "token 1" in str(e.value)
        with raises(LockLost):
            a.check()  # and stays lost
        a.release()  # a lost lock has nothing to give back
        b.check()
        b.release()


def test_release_of_a_broken_lock_raises_lock_lost_and_leaves_the_new_holder_alone():
    with temp_dir() as d:
        a = Lock(d + "/lk", lease=0.03).acquire()
        time.sleep(0.06)
        b = Lock(d + "/lk", timeout=0).acquire()
        with raises(LockLost):
            a.release()
        b.check()
        assert _entries(d + "/lk")[0].startswith("h2.")
        b.release()


def test_check_renews_the_lease_so_a_live_holder_is_not_broken():
    with temp_dir() as d:
        a = Lock(d + "/lk", lease=0.1).acquire()
        end = time.time() + 0.35
        while time.time() < end:
            a.check()
            with raises(LockTimeout):
                Lock(d + "/lk", timeout=0).acquire()
            time.sleep(0.02)
        assert a.token == 1
        a.release()


def test_of_two_breakers_of_one_stale_holder_only_one_wins():
    with temp_dir() as d:
        p = _fresh(d)
        stale = _held_by(p, node="ffffffffffff", expiry=1, token=5)
        _plant(p, stale)
        b, c = Lock(p, timeout=0), Lock(p, timeout=0)
        assert b._take(stale, 6)  # both saw the same stale entry; renaming it is the contest
        assert not c._take(stale, 6)
        assert b.token == 6 and c.token is None
        with raises(LockTimeout):
            c.acquire()
        b.check()
        b.release()


def test_holder_on_another_machine_is_kept_until_its_lease_expires():
    with temp_dir() as d:
        p = _fresh(d)
        _plant(p, _held_by(p, node="ffffffffffff", expiry=int(time.time() * 1000) + 150))
        with raises(LockTimeout) as e:
            Lock(p, timeout=0).acquire()
        assert "node ffffffffffff" in str(e.value)
        with Lock(p, timeout=2) as b:
            assert b.token == 8


def test_holder_without_lease_on_another_machine_is_never_broken():
    with temp_dir() as d:
        p = _fresh(d)
        _plant(p, _held_by(p, node="ffffffffffff", expiry=0))
        with raises(LockTimeout):
            Lock(p, timeout=0.05).acquire()


def test_holder_from_an_earlier_boot_of_this_machine_is_broken_at_once():
    with temp_dir() as d:
        p = _fresh(d)
        _plant(p, _held_by(p, boot="000000000001", expiry=0))
        with Lock(p, timeout=0) as b:
            assert b.token == 8
            assert "restarted" in b._holder


def test_holder_whose_process_is_gone_is_broken_at_once():
    if lock._whoami()[3] == "0":
        return  # a board has no other processes
    with temp_dir() as d:
        p = _fresh(d)
        _plant(p, _held_by(p, pid="4194305", expiry=0))  # above Linux's pid_max: no such process
        with Lock(p, timeout=0) as b:
            assert "process 4194305 is gone" in b._holder


def test_holder_whose_pid_was_reused_by_another_process_is_broken():
    if lock._whoami()[3] == "0":
        return
    with temp_dir() as d:
        p = _fresh(d)
        init_start = proc.fields(proc.read("/proc/1/stat"))[19]
        _plant(p, _held_by(p, pid="1", start=str(int(init_start) + 1), expiry=0))
        with Lock(p, timeout=0) as b:
            assert b.token == 8
        _plant(p, _held_by(p, pid="1", start=init_start, expiry=0))  # pid 1 with its own start: alive
        with raises(LockTimeout):
            Lock(p, timeout=0).acquire()


def test_holder_in_another_pid_namespace_is_kept_until_its_lease_expires():
    with temp_dir() as d:
        p = _fresh(d)
        _plant(p, _held_by(p, ns="1", pid="4194305", expiry=0))  # a container's pid means nothing here
        with raises(LockTimeout):
            Lock(p, timeout=0).acquire()


def test_holder_in_this_process_without_lease_is_never_broken():
    with temp_dir() as d:
        a = Lock(d + "/lk", lease=None).acquire()
        with raises(LockTimeout):
            Lock(d + "/lk", timeout=0.03).acquire()
        a.check()
        a.release()


def test_empty_lock_directory_is_taken_over():
    with temp_dir() as d:
        os.mkdir(d + "/lk")
        with Lock(d + "/lk", timeout=0) as a:
            assert a.token == 1


def test_foreign_files_alone_in_the_lock_directory_are_reported_not_removed():
    with temp_dir() as d:
        os.mkdir(d + "/lk")
        open(d + "/lk/notes.txt", "w").close()
        with raises(LockTimeout) as e:
            Lock(d + "/lk", timeout=0).acquire()
        assert "notes.txt" in str(e.value)
        assert _entries(d + "/lk") == ["notes.txt"]


def test_foreign_files_next_to_the_state_are_ignored():
    with temp_dir() as d:
        p = _fresh(d)
        open(p + "/notes.txt", "w").close()
        with Lock(p, timeout=0) as a:
            assert a.token == 2
        assert _entries(p) == ["f2", "notes.txt"]


def test_older_state_entries_left_by_a_cut_rename_are_ignored_then_removed():
    with temp_dir() as d:
        p = _fresh(d)
        _plant(p, "f5")
        open(p + "/" + _held_by(p, node="ffffffffffff", expiry=0, token=5), "w").close()  # cut release
        open(p + "/f3", "w").close()
        with Lock(p, timeout=0) as a:
            assert a.token == 6
        assert _entries(p) == ["f6"]


def test_missing_parent_directory_is_a_clear_lock_error():
    with raises(LockError) as e:
        Lock("/tmp/spoolbus-no-such-dir/x/lk", timeout=0).acquire()
    assert "parent" in str(e.value)


def test_acquiring_a_held_lock_object_twice_is_an_error():
    with temp_dir() as d:
        a = Lock(d + "/lk").acquire()
        with raises(LockError):
            a.acquire()
        a.release()


def _holder(path, counter, rounds, log):
    """A task that increments `counter` under the lock, yielding between read and write."""
    lk = Lock(path, timeout=0)
    for _ in range(rounds):
        while True:
            try:
                lk.acquire()
                break
            except LockTimeout:
                yield
        with open(counter) as f:
            n = int(f.read() or "0")
        log.append(lk.token)
        yield  # the others run now, and must not get in
        lk.check()
        with open(counter, "w") as f:
            f.write(str(n + 1))
        lk.release()
        yield


def _interleave(root, holders=4, rounds=15):
    counter = root + "/count"
    open(counter, "w").close()
    log = []
    tasks = [_holder(root + "/lk", counter, rounds, log) for _ in range(holders)]
    while tasks:
        for t in list(tasks):
            try:
                next(t)
            except StopIteration:
                tasks.remove(t)
    with open(counter) as f:
        assert int(f.read()) == holders * rounds
    assert log == list(range(1, holders * rounds + 1))


def test_interleaved_holders_count_exactly_on_the_host_filesystem():
    with temp_dir() as d:
        _interleave(d)


def test_threads_count_exactly():
    import _thread

    with temp_dir() as d:
        box = [0]
        finished = []

        def work():
            lk = Lock(d + "/lk", timeout=30)
            for _ in range(50):
                with lk:
                    n = box[0]
                    time.sleep(0.0002)  # let the other threads run now
                    lk.check()
                    box[0] = n + 1
            finished.append(1)

        for _ in range(4):
            _thread.start_new_thread(work, ())
        end = time.time() + 30
        while len(finished) < 4 and time.time() < end:
            time.sleep(0.01)
        assert len(finished) == 4 and box[0] == 200


def _mount(kind, bdev, mkfs=True):
    cls = vfs.VfsLfs2 if kind == "lfs" else vfs.VfsFat
    if mkfs:
        cls.mkfs(bdev)
    point = "/%s%d" % (kind, id(bdev) & 0xFFFF)
    vfs.mount(cls(bdev), point)
    return point


if vfs is not None:

    def _on_ram_disk(kind, fn):
        point = _mount(kind, RAMBlockDevice(512, 128))
        try:
            fn(point)
        finally:
            vfs.umount(point)

    def test_interleaved_holders_count_exactly_on_littlefs():
        _on_ram_disk("lfs", _interleave)

    def test_interleaved_holders_count_exactly_on_fat():
        _on_ram_disk("fat", _interleave)

    def test_read_only_filesystem_is_a_lock_error_naming_the_cause_not_a_timeout():
        bdev = RAMBlockDevice(512, 128)
        point = _mount("lfs", bdev)
        Lock(point + "/lk").acquire().release()
        vfs.umount(point)
        vfs.mount(vfs.VfsLfs2(bdev), point, readonly=True)
        try:
            with raises(LockError) as e:
                Lock(point + "/lk", timeout=5).acquire()
            assert not isinstance(e.value, LockTimeout)
            assert "read-only" in str(e.value)
        finally:
            vfs.umount(point)

    def _lease_break(root):
        a = Lock(root + "/lk", lease=0.03).acquire()
        time.sleep(0.06)
        with Lock(root + "/lk", timeout=0) as b:
            assert b.token == 2
            with raises(LockLost):
                a.check()

    def test_expired_lease_is_broken_on_littlefs_and_fat():
        _on_ram_disk("lfs", _lease_break)
        _on_ram_disk("fat", _lease_break)

    def _power_cut_then_reboot(kind):
        """Cut the power at every write of acquire/release; after a reboot the lock is usable at once."""
        bdev = RAMBlockDevice(512, 128)
        point = _mount(kind, bdev)
        Lock(point + "/lk").acquire().release()
        vfs.umount(point)
        image = bytes(bdev.data)
        n = 0
        me = lock._me
        try:
            while True:
                n += 1
                bdev.data[:] = image
                bdev.fail_after_writes = None
                bdev.writes = 0
                point = _mount(kind, bdev, mkfs=False)
                bdev.fail_after_writes = bdev.writes + n
                a = Lock(point + "/lk", timeout=0, lease=None)
                try:
                    for _ in range(3):
                        a.acquire()
                        a.release()
                    a.acquire()
                except (OSError, LockError):  # the power went mid-way (the disk raises EIO)
                    pass
                vfs.umount(point)
                done = bdev.writes <= bdev.fail_after_writes
                bdev.fail_after_writes = None
                board = (me[0], "%012x" % n, "0", "0", "0")  # a board rebooted: a new boot id
                lock._me = board + (".".join(board),)
                point = _mount(kind, bdev, mkfs=False)
                with Lock(point + "/lk", timeout=0) as b:
                    assert b.token >= 2
                vfs.umount(point)
                if done:
                    return n
        finally:
            lock._me = me

    def test_power_cut_at_any_write_leaves_a_lock_the_next_boot_takes_on_littlefs():
        assert _power_cut_then_reboot("lfs") > 3

    def test_power_cut_at_any_write_leaves_a_lock_the_next_boot_takes_on_fat():
        assert _power_cut_then_reboot("fat") > 3
