"""A lock contender for tests/host/test_lock_processes.py, run under CPython or MicroPython.

Usage: lock_worker.py MODE LOCK_DIR [ARGS]. Prints one line per event the test waits for.
  count LOCK COUNTER ROUNDS [GO]  once file GO exists, increment the number in COUNTER ROUNDS times under
                              the lock (LOCK "none": without it, to show that the count then comes out wrong)
  hold LOCK                   acquire, print "held <token>", then sleep until killed
  renew LOCK LEASE            acquire with LEASE seconds, check() in a loop; print "lost <token>" on LockLost
  take LOCK TIMEOUT           acquire within TIMEOUT seconds, print "took <token>", release
  grab LOCK GO                once file GO exists, try once: print "took <token>" or "busy"; hold on
                              until stdin ends
  image KIND FILE mkfs|mount MODE ...   mount littlefs/FAT on FILE at /disk, then run MODE there
"""

import os
import sys
import time

from spoolbus.lock import Lock, LockLost, LockTimeout


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def check(self):
        pass


def _ready(go):
    """Say so, then wait for the test's go file, so that all workers start together."""
    print("ready")
    while go is not None:
        try:
            os.stat(go)
            break
        except OSError:
            time.sleep(0.001)


def count(path, counter, rounds, go=None):
    lk = _NoLock() if path == "none" else Lock(path, timeout=60)
    _ready(go)
    for _ in range(int(rounds)):
        with lk:
            try:
                with open(counter) as f:
                    n = int(f.read() or "0")
            except OSError:  # not there yet
                n = 0
            lk.check()
            try:  # overwrite in place: the number never gets shorter, and ext4 flushes a truncated file
                f = open(counter, "r+")
            except OSError:
                f = open(counter, "w")
            with f:
                f.write(str(n + 1))
    print("done")


def hold(path):
    lk = Lock(path, timeout=10).acquire()
    print("held", lk.token)
    while True:
        time.sleep(1)


def renew(path, lease):
    lk = Lock(path, timeout=10, lease=float(lease)).acquire()
    print("held", lk.token)
    token = lk.token
    try:
        while True:
            lk.check()
            time.sleep(0.01)
    except LockLost:
        print("lost", token)


def take(path, timeout):
    lk = Lock(path, timeout=float(timeout)).acquire()
    print("took", lk.token)
    lk.release()


def grab(path, go):
    lk = Lock(path, timeout=0)
    _ready(go)
    try:
        lk.acquire()
        print("took", lk.token)
    except LockTimeout:
        print("busy")
    sys.stdin.read()  # hold on (alive) until the test is done


def image(kind, file, how, mode, *args):
    import vfs
    from blockdev import FileBlockDevice

    bdev = FileBlockDevice(file, 512, 256)
    cls = vfs.VfsLfs2 if kind == "lfs" else vfs.VfsFat
    if how == "mkfs":
        cls.mkfs(bdev)
    vfs.mount(cls(bdev), "/disk")
    MODES[mode](*args)


MODES = {"count": count, "hold": hold, "renew": renew, "take": take, "grab": grab, "image": image}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
