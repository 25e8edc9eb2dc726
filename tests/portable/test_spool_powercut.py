"""Power cuts and full disks under the spool on littlefs and FAT (RAM block devices, MicroPython's vfs).

Power cuts: the block device stops persisting after the Nth write.
For every N: remount what survived, open the spool (recovery), and check that every put that returned
before the cut is delivered, nothing corrupt is, and the filesystem stays sound for later messages.
MicroPython only: CPython has no vfs module to mount littlefs or FAT. Files a cut left open are finalised
after it, against the dead device: littlefs prints "OSError: 84" (corrupt) for each, which is expected.
"""

import gc
import os

from blockdev import RAMBlockDevice
from mpcompat import micropython_only, raises
from spoolbus import spool
from spoolbus.spool import SpoolFull

_MOUNT = "/spool-powercut"


def _payload(i):
    return (b"message %d " % i) * 12


def _index(payload):
    return int(payload.split(b" ")[1])


def _mount(fs, bdev):
    import vfs

    vfs.mount(fs(bdev), _MOUNT)


def _umount():
    import vfs

    try:
        vfs.umount(_MOUNT)
    except OSError:
        pass


def _workload(bdev, cut, returned, acked):
    """Puts, claims, acks, nacks and a put_many; fills the ids put before the cut and those whose ack began
    before it (an ack cut short may or may not have happened)."""
    s = spool.Spool(_MOUNT + "/s")

    def put(i):
        mid = s.put(_payload(i))
        if bdev.writes <= cut:
            returned[mid] = i

    for i in range(5):
        put(i)
    m = s.claim()
    if bdev.writes <= cut:
        acked.add(m[0])
    s.ack(m[0])
    m = s.claim()
    s.nack(m[0])
    ids = s.put_many([_payload(i) for i in range(5, 9)])
    if bdev.writes <= cut:
        for k, mid in enumerate(ids):
            returned[mid] = 5 + k
    m = s.claim()
    if bdev.writes <= cut:
        acked.add(m[0])
    s.ack(m[0])
    s.claim()  # left claimed when the power goes: recovery must return it
    put(9)


def _check_after_cut(fs, cut):
    bdev = RAMBlockDevice(512, 256)
    fs.mkfs(bdev)
    bdev.writes = 0
    bdev.fail_after_writes = cut
    spool._OWNER = "b%08x" % (2 * cut)  # as on a board: no /proc, a random nonce for each boot
    _mount(fs, bdev)
    returned = {}
    acked = set()
    try:
        _workload(bdev, cut, returned, acked)
    except Exception:  # noqa: BLE001 - after the cut the filesystem may see its own writes vanish
        if bdev.writes <= cut:
            raise
    finally:
        gc.collect()  # files the cut left open are finalised now, while their writes go nowhere
        _umount()
    bdev.fail_after_writes = None
    spool._OWNER = "b%08x" % (2 * cut + 1)  # the board rebooted: every claim of the old boot is dead
    _mount(fs, bdev)
    try:
        s = spool.Spool(_MOUNT + "/s")
        delivered = {}
        while True:
            m = s.claim()
            if m is None:
                break
            assert m[0] not in delivered, "delivered twice after recovery: %s" % m[0]
            assert m[1] == _payload(_index(m[1])), "corrupt payload delivered (cut %d)" % cut
            delivered[m[0]] = m[1]
            s.ack(m[0])
        for mid, i in returned.items():
            if mid not in acked:
                assert delivered.get(mid) == _payload(i), "cut %d lost returned put %s" % (cut, mid)
        assert os.listdir(_MOUNT + "/s/tmp") == []
        for owner in os.listdir(_MOUNT + "/s/cur"):
            assert os.listdir(_MOUNT + "/s/cur/" + owner) == []
        # Later messages reuse freed space: a cluster chain shared by two entries would show up here.
        for i in range(100, 130):
            s.put(_payload(i))
            if i % 3 == 0:
                m = s.claim()
                assert m[1] == _payload(_index(m[1]))
                s.ack(m[0])
        rest = 0
        while True:
            m = s.claim()
            if m is None:
                break
            assert m[1] == _payload(_index(m[1])), "corrupt payload after recovery (cut %d)" % cut
            s.ack(m[0])
            rest += 1
        assert rest == 20 and s.corrupt == 0, "cut %d: %d left, quarantined %r" % (cut, rest, s.quarantined)
    finally:
        _umount()


def _writes_of_workload(fs):
    bdev = RAMBlockDevice(512, 256)
    fs.mkfs(bdev)
    bdev.writes = 0
    _mount(fs, bdev)
    try:
        _workload(bdev, 1 << 30, {}, set())
    finally:
        _umount()
    return bdev.writes


def _every_cut(fs):
    owner = spool._OWNER
    try:
        total = _writes_of_workload(fs)
        for cut in range(total + 1):
            _check_after_cut(fs, cut)
    finally:
        spool._OWNER = owner
    print("power cuts on %s: %d cut points checked" % (fs.__name__, total + 1))
    assert total > 50


@micropython_only("mounts littlefs from MicroPython's vfs module")
def test_power_cut_after_every_write_on_littlefs_loses_no_returned_put():
    import vfs

    _every_cut(vfs.VfsLfs2)


@micropython_only("mounts FAT from MicroPython's vfs module")
def test_power_cut_after_every_write_on_fat_loses_no_returned_put():
    import vfs

    _every_cut(vfs.VfsFat)


def _fill_and_drain(fs):
    bdev = RAMBlockDevice(512, 128)
    fs.mkfs(bdev)
    _mount(fs, bdev)
    try:
        s = spool.Spool(_MOUNT + "/s")
        ids = []
        with raises(SpoolFull) as e:
            for i in range(1000):
                ids.append(s.put(_payload(i) * 2))
        assert "disk full" in str(e.value) and len(ids) > 20
        with raises(SpoolFull):
            s.put_many([_payload(0)] * 3)
        assert os.listdir(_MOUNT + "/s/tmp") == []  # nothing half-written left behind
        got = []
        while True:
            m = s.claim()
            if m is None:
                break
            assert m[1] == _payload(_index(m[1])) * 2
            got.append(m[0])
            s.ack(m[0])
        assert got == ids and s.corrupt == 0  # every returned put, in order; the consumer was not stuck
        s.put(b"room again")
    finally:
        _umount()


@micropython_only("mounts littlefs from MicroPython's vfs module")
def test_full_littlefs_raises_spool_full_and_still_delivers_every_returned_put():
    import vfs

    _fill_and_drain(vfs.VfsLfs2)


@micropython_only("mounts FAT from MicroPython's vfs module")
def test_full_fat_raises_spool_full_and_still_delivers_every_returned_put():
    import vfs

    _fill_and_drain(vfs.VfsFat)
