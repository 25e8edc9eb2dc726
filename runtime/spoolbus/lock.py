"""A lock between processes and tasks on a directory: ext4, tmpfs, littlefs, FAT; CPython and MicroPython.

The lock directory holds one entry whose name is the lock's state; every change renames that exact name,
so of racing contenders one wins; dead or expired holders are broken the same way and fenced by token.
"""

import os
import sys
import time

from spoolbus import errors
from spoolbus.crc import crc32
from spoolbus.errors import ticks_diff as _ticks_diff
from spoolbus.errors import ticks_ms as _ticks_ms  # not time.time(): it may count whole seconds on a board
from spoolbus.proc import alive as _alive
from spoolbus.proc import fields as _fields
from spoolbus.proc import read as _read

try:
    import random as _random
except ImportError:  # a port without random: back off without jitter
    _random = None

_ENOENT = 2  # the errno of a rename whose source is gone, on every VFS we run on
_EEXIST = 17
_BACKOFF_MIN = 0.0005
_BACKOFF_MAX = 0.02
_me = None  # this process: (node, boot, pid namespace, pid, start time, the five joined by ".")
_created = [0]  # lock directories this process prepared: their names must differ within one millisecond


class LockError(errors.SpoolbusError):
    """A lock cannot be used (its directory cannot be created, or is misused); the message says why."""


class LockTimeout(LockError):
    """Another holder kept the lock past the timeout; the message names the holder. Retry or wait longer."""


class LockLost(LockError):
    """This holder no longer has the lock (it was broken as stale): stop writing, acquire again."""


def _hex12(data):
    return "".join("%02x" % b for b in data)[:12]


def _identity():
    """(node, boot, pid namespace, pid, start time) of this process; docs/locks.md says what each tells."""
    s = _read("/proc/self/stat")
    if s:  # Linux, CPython or the MicroPython unix port: processes we can see live and die
        machine_id = (_read("/etc/machine-id") or "").strip()[:8] or "00000000"
        host = (_read("/proc/sys/kernel/hostname") or "").strip()
        boot = (_read("/proc/sys/kernel/random/boot_id") or "").replace("-", "").strip()[:12] or "0"
        try:
            ns = "%x" % os.stat("/proc/self/ns/pid")[1]
        except OSError:
            ns = "0"
        if _read("/proc/1/stat") is None:  # /proc mounted with hidepid: others' processes look dead
            ns = "0"
        node = "%s%04x" % (machine_id, crc32(host.encode()) & 0xFFFF)
        return node, boot, ns, s.split(None, 1)[0], _fields(s)[19]
    if sys.implementation.name == "micropython":  # a board: one interpreter a boot, a fresh random boot id
        try:
            import machine

            node = _hex12(machine.unique_id())
        except (ImportError, AttributeError):
            node = "0"
        return node, _hex12(os.urandom(6)), "0", "0", "0"
    import socket  # CPython off Linux: we cannot tell a dead process there, so leases only

    return "%08x" % crc32(socket.gethostname().encode()), "0", "0", str(os.getpid()), "0"


def _whoami():
    global _me
    if _me is None:
        me = _identity()
        _me = me + (".".join(me),)
    return _me


def _forget_whoami():
    global _me
    _me = None


if hasattr(os, "register_at_fork"):  # CPython: a forked child is another process (MicroPython cannot fork)
    os.register_at_fork(after_in_child=_forget_whoami)


def _now_ms():
    """Wall-clock milliseconds: lease expiries are compared between processes."""
    return time.time_ns() // 1000000 if hasattr(time, "time_ns") else int(time.time() * 1000)


def _parse(name):
    """Rank of a state entry name (newer states rank higher), or None for a name that is not one.

    Free `f<token>`; held `h<token>.<node>.<boot>.<pid namespace>.<pid>.<start>.<since ms>.<expiry ms>`.
    At one token a free entry is newer than a held one (release), a later expiry newer than an earlier.
    """
    try:
        if name[0] == "f":
            return (int(name[1:]), 1, 0)
        if name[0] == "h":
            f = name[1:].split(".")
            if len(f) == 8:
                return (int(f[0]), 0, int(f[7]))
    except (ValueError, IndexError):
        pass
    return None


def _why_stale(name, now):
    """Why the holder named by a held entry is gone, or None while it may be alive."""
    _, node, boot, ns, pid, start, _, expiry = name[1:].split(".")
    if expiry != "0" and now > int(expiry):
        return "its lease expired"
    me = _whoami()
    if node != me[0] or node == "0" or boot == "0":
        return None  # another machine, or one we cannot tell apart: only its lease tells
    if boot != me[1]:
        return "its machine restarted"
    if ns == "0" or ns != me[2] or pid == me[3] or pid == "0":
        return None  # another pid namespace (container), a hidden /proc, or this process: lease only
    if not _alive(pid, start):
        return "process %s is gone" % pid
    return None


def _describe(name):
    f = name[1:].split(".")
    held = (_now_ms() - int(f[6])) / 1000
    return "pid %s on node %s (boot %s, token %s, held for %.1f s)" % (f[4], f[1], f[2], f[0], held)


class Lock:
    """A lock on the directory `path`, exclusive between processes, threads and tasks.

    `timeout`: seconds acquire() waits (None: forever, 0: one try). `lease`: seconds this holder keeps the
    lock without calling check(), after which others may break it even if this process lives (None: only
    when this process dies). `token` is the fencing token while held: it grows with every acquisition.
    """

    def __init__(self, path, timeout=10.0, lease=60.0):
        self.path = path = str(path)  # a pathlib.Path too, on CPython
        self._dir = path + "/"
        self.timeout = timeout
        self.lease = lease
        self.token = None
        self._held = None  # the state entry's name while held
        self._expiry = 0
        self._since = 0  # when this holder acquired it, wall-clock ms
        self._free = None  # the free entry's name, as last seen or foreseen: the one-rename fast path
        self._holder = None  # the other holder seen last, for the timeout message

    def acquire(self):
        """Take the lock, waiting up to `timeout` seconds; raises LockTimeout naming the holder."""
        if self._held is not None:
            raise LockError("lock %s is already held by this Lock object" % self.path)
        self._holder = None
        if self._try():
            return self
        start = _ticks_ms()
        delay = _BACKOFF_MIN
        while True:
            waited = _ticks_diff(_ticks_ms(), start) / 1000
            if self.timeout is not None and waited >= self.timeout:
                raise LockTimeout(
                    "lock %s still held after %.1f s by %s; raise the timeout or stop that holder"
                    % (self.path, waited, self._holder or "nobody visible")
                )
            time.sleep(delay * (0.5 + _random.random()) if _random else delay)
            delay = min(delay * 2, _BACKOFF_MAX)
            if self._try():
                return self

    def _held_name(self, token, since, now):
        lease = self.lease
        # a renewed name must outrank the old one even if the clock stepped back (see _parse)
        self._expiry = max(now + int(lease * 1000), self._expiry + 1) if lease is not None else 0
        return "h%d.%s.%d.%d" % (token, (_me or _whoami())[5], since, self._expiry)

    def _take(self, old, token):
        """Rename the state entry `old` into ours with `token`: True if we won it."""
        self._since = now = _now_ms()
        new = self._held_name(token, now, now)
        try:
            os.rename(self._dir + old, self._dir + new)
        except OSError as e:
            if e.args[0] == _ENOENT:  # another contender renamed it first
                return False
            raise self._io_error(e) from None
        self._held = new
        self.token = token
        return True

    def _try(self):
        free = self._free
        if free is not None and self._take(free, int(free[1:]) + 1):
            return True
        try:
            names = os.listdir(self.path)
        except OSError:
            self._create()
            try:
                names = os.listdir(self.path)
            except OSError:  # created and removed again meanwhile: rare, try later
                return False
        best = None
        rank = None
        for n in names:
            r = _parse(n)
            if r is not None and (rank is None or r > rank):
                best, rank = n, r
        if best is None:
            self._holder = "nobody: the directory holds no lock state, only %r" % (names,)
            try:
                os.rmdir(self.path)  # succeeds only while it is empty
            except OSError:
                return False
            return self._try()  # creates it afresh
        token = rank[0]
        if best[0] == "f":
            self._free = best
            won = self._take(best, token + 1)
        else:
            self._holder = _describe(best)
            self._free = "f%d" % token  # where the holder will release it
            won = self._why_stale_holder(best) and self._take(best, token + 1)
        if won and len(names) > 1:
            self._remove_leftovers(names, rank)
        return won

    def _why_stale_holder(self, name):
        why = _why_stale(name, _now_ms())
        if why is not None:
            self._holder = "%s, broken as stale: %s" % (_describe(name), why)
        return why is not None

    def _remove_leftovers(self, names, rank):
        """Drop state entries older than ours: only a power cut mid-rename on FAT leaves them."""
        for n in names:
            r = _parse(n)
            if r is not None and r < rank:
                try:
                    os.remove(self._dir + n)
                except OSError:
                    pass

    def _create(self):
        """Create the lock directory with its first state entry in place, by renaming a prepared one."""
        me = _whoami()
        while True:
            _created[0] += 1
            prep = "%s.new-%s-%s-%d-%d" % (self.path, me[1], me[3], _now_ms(), _created[0])
            try:
                os.mkdir(prep)
                open(prep + "/f0", "w").close()
                break
            except OSError as e:
                if e.args[0] != _EEXIST:  # EEXIST: another thread of this process took the same name
                    raise LockError(
                        "cannot create lock directory %s (%s): does its parent exist, is it writable?"
                        % (self.path, e)
                    ) from None
        try:
            os.rename(prep, self.path)
            return
        except OSError:
            pass  # another process created it first
        os.remove(prep + "/f0")
        os.rmdir(prep)

    def check(self):
        """Raise LockLost unless this holder still has the lock; renews the lease past its half.

        Call it before each write the lock protects: a holder broken as stale finds out here.
        """
        held = self._held
        if held is None:
            raise LockLost("lock %s is not held by this Lock object" % self.path)
        expiry = self._expiry
        now = _now_ms()
        if self.lease is not None and now > expiry - int(self.lease * 500):
            new = self._held_name(self.token, self._since, now)
            try:
                os.rename(self._dir + held, self._dir + new)
                self._held = new
                return
            except OSError:
                self._expiry = expiry  # broken, or the renewal itself failed: the entry tells which
        try:
            os.stat(self._dir + held)
        except OSError:
            self._lost()

    def _io_error(self, e):
        return LockError(
            "cannot change lock %s (%s): is its filesystem full or read-only?" % (self.path, e)
        )

    def _lost(self):
        self._held = None
        self._free = None
        token, self.token = self.token, None
        raise LockLost(
            "lock %s (token %d) was broken as stale while this holder had it: its writes since its last "
            "check() were not exclusive; acquire again" % (self.path, token)
        )

    def release(self):
        """Give the lock back; raises LockLost if it had been broken meanwhile."""
        held = self._held
        if held is None:
            return
        free = "f%d" % self.token
        try:
            os.rename(self._dir + held, self._dir + free)
        except OSError as e:
            if e.args[0] == _ENOENT:
                self._lost()
            raise self._io_error(e) from None
        self._held = None
        self._free = free
        self.token = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.release()
        else:
            try:
                self.release()
            except LockLost:
                pass  # the block's own error says more
