"""A Maildir-style message spool on a directory: tmp/ -> new/ (commit) -> cur/<owner>/ (claim) -> ack.

Every put that returned is delivered at least once, in enqueue order, through kill -9 and power cuts;
torn or foreign files are quarantined, never delivered. Record and file formats: docs/spool-format.md.
"""

import os
import sys
import time

from spoolbus import crc, errors
from spoolbus.proc import alive as _pid_alive
from spoolbus.proc import fields as _stat_fields
from spoolbus.proc import read as _read_text


class SpoolError(errors.SpoolbusError):
    """A spool operation failed (missing or read-only directory, unknown message id); the message says why."""


class SpoolFull(SpoolError):
    """The spool is at its quota (messages or bytes) or the disk is full; consume, raise the quota, retry."""


_MAGIC = b"SPL1"
_HEAD = 12  # magic, payload length (u32 LE), CRC-32 of the payload (u32 LE)
_ENOENT = 2
_ENOSPC = 28
_DIRS = ("tmp", "new", "cur", "quarantine")
_MICROPYTHON = sys.implementation.name == "micropython"
# Names a consumer keeps from one listing of new/: all of a large backlog on CPython (one listing per
# batch makes claims amortised O(1)), a few on MicroPython to keep the heap small.
_BATCH = 16 if _MICROPYTHON else 65536
_QUARANTINE_LOG = 16  # how many quarantined names a Spool keeps in .quarantined

try:
    import _thread

    _stamp_lock = _thread.allocate_lock()
except ImportError:  # a port without threads has nothing to race with
    _stamp_lock = None


_PROC = _read_text("/proc/self/stat")


def _whoami():
    """This process's owner token: pid and start time (Linux), pid (other POSIX), else a boot nonce."""
    if _PROC:
        return "p%x.%s" % (int(_PROC[: _PROC.find(" ")]), _stat_fields(_PROC)[19])
    if hasattr(os, "getpid"):
        return "p%x.0" % os.getpid()
    return "b%08x" % int.from_bytes(os.urandom(4), "little")


_OWNER = _whoami()
_last_us = [0]


def _alive(owner):
    """Whether the writer or consumer `owner` may still be running (only a provably dead one is not)."""
    if owner == _OWNER:
        return True
    if owner[:1] != "p":
        return False  # another boot's nonce: on a board only one interpreter runs, and it restarted
    pid, _, start = owner[1:].partition(".")
    try:
        pid = int(pid, 16)
    except ValueError:
        return False
    if not _PROC and hasattr(os, "kill"):  # CPython without /proc: ask the kernel (misses pid reuse)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            pass
        return True
    return _pid_alive(pid, start)


def _stamp():
    """A microsecond time stamp, strictly increasing within this process even if the clock steps back."""
    if _stamp_lock:
        _stamp_lock.acquire()
    now = time.time_ns() // 1000
    if now <= _last_us[0]:
        now = _last_us[0] + 1
    _last_us[0] = now
    if _stamp_lock:
        _stamp_lock.release()
    return now


def _parse(name):
    """(stamp hex, owner, payload size) of a message file name, or None for a foreign name."""
    parts = name.split("-")
    if len(parts) != 3 or len(parts[0]) != 13:
        return None
    try:
        return parts[0], parts[1], int(parts[2], 16)
    except ValueError:
        return None


def _names(path):
    """The entry names of a directory (empty if it is missing)."""
    path = path.rstrip("/")  # FAT under MicroPython refuses a trailing slash (EINVAL)
    try:
        if _MICROPYTHON:
            return [e[0] for e in os.ilistdir(path)]
        return os.listdir(path)
    except OSError:
        return []


def _smallest(path, k):
    """The k smallest names in `path`, largest first (so pop() gives the oldest): one listing."""
    path = path.rstrip("/")
    if _MICROPYTHON:
        out = []
        for e in os.ilistdir(path):
            out.append(e[0])
            if len(out) >= 2 * k:
                out.sort()
                del out[k:]
    else:
        out = os.listdir(path)
    out.sort()
    del out[k:]
    out.reverse()
    return out


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


if _MICROPYTHON:

    def _read(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return b""  # a directory or an unreadable entry: not a record

    def _write(path, data):
        with open(path, "wb") as f:
            f.write(data)

else:  # CPython: plain descriptors skip io.open's fstat, ioctl and buffer objects (a third of a claim)

    def _read(path):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return b""
        try:
            data = os.read(fd, 65536)
            while len(data) % 65536 == 0 and data:  # a short read of a regular file is its end
                more = os.read(fd, 65536)
                if not more:
                    break
                data += more
            return data
        except OSError:
            return b""  # a directory: not a record
        finally:
            os.close(fd)

    def _write(path, data):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def record(payload):
    """The bytes of the file that holds `payload`: magic, length, CRC-32, payload."""
    n = len(payload)
    return _MAGIC + n.to_bytes(4, "little") + crc.crc32(payload).to_bytes(4, "little") + payload


def check(rec):
    """The payload of a record, or None if it is torn, corrupt or foreign."""
    if len(rec) < _HEAD or rec[:4] != _MAGIC:
        return None
    if int.from_bytes(rec[4:8], "little") != len(rec) - _HEAD:
        return None
    payload = rec[_HEAD:]
    if crc.crc32(payload) != int.from_bytes(rec[8:12], "little"):
        return None
    return payload


def _os_error(err, what, path):
    if err.args and err.args[0] == _ENOSPC:
        return SpoolFull("disk full while %s %s: consume messages or free space, retry" % (what, path))
    return SpoolError("%s %s failed: %r (does it exist, is it writable?)" % (what, path, err))


class _SyncFs:
    """Group commit on CPython/Linux: one syncfs(2) makes every file and rename before it durable.

    Threads that finish their renames while a sync runs are covered by the next one, done once for all.
    """

    def __init__(self, path):
        import ctypes
        import threading

        self.fd = os.open(path, os.O_RDONLY)
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syncfs  # noqa: B018 - raises AttributeError where libc has no syncfs
        self._lock = threading.Lock()
        self._asked = 0
        self._done = 0

    def commit(self):
        self._asked += 1
        ticket = self._asked
        with self._lock:
            if self._done >= ticket:
                return
            target = self._asked
            if self._libc.syncfs(self.fd) != 0:
                import ctypes

                raise OSError(ctypes.get_errno(), "syncfs failed")
            self._done = target


class Spool:
    """One process's handle on a spool directory; producers and consumers may be many processes.

    `put`/`put_many` commit by rename into new/; `claim` renames the oldest message into this process's
    claim directory cur/<owner>/ (exactly one competing consumer wins), `ack` deletes it, `nack` returns
    it to new/ under its own name, so it keeps its place in FIFO order. Quotas raise SpoolFull.
    """

    def __init__(self, path, max_messages=None, max_bytes=None, durable=False):
        path = path.rstrip("/")
        self.path = path
        self._tmp = path + "/tmp/"
        self._new = path + "/new/"
        self._cur = path + "/cur/"
        self._qdir = path + "/quarantine/"
        self._mine = self._cur + _OWNER + "/"
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._batch = []
        self._have_claim_dir = False
        self.corrupt = 0  # files this handle quarantined
        self.quarantined = []  # their names, the last _QUARANTINE_LOG of them
        self._open_dirs(path)
        self.recover()
        try:  # now, while there is room: on a full littlefs a consumer could not make it later
            self._open_claim_dir()
        except SpoolError:
            pass  # read-only or full: claim() tries again and says why
        self._rescan()
        self._sync = None
        if durable and not _MICROPYTHON:
            try:
                self._sync = _SyncFs(self._new)
            except (ImportError, AttributeError, OSError):
                self._sync = False  # no syncfs: fsync each file and the directory instead
                self._dir_fd = os.open(self._new, os.O_RDONLY)

    def close(self):
        """Release the directory handles of durable mode (claims stay claimed until acked or recovered)."""
        if self._sync:
            os.close(self._sync.fd)
        elif self._sync is False:
            os.close(self._dir_fd)
        self._sync = None

    def _open_dirs(self, path):
        for sub in ("",) + _DIRS:
            p = path + "/" + sub if sub else path
            if _is_dir(p):
                continue
            try:
                os.mkdir(p)
            except OSError as e:
                if not _is_dir(p):
                    raise SpoolError(
                        "cannot create spool directory %s: %r (does its parent exist and is it writable?)"
                        % (p, e)
                    ) from None

    # -- producing

    def put(self, data):
        """Append one message (bytes); returns its id once it is committed (durable: on disk)."""
        return self.put_many((data,))[0]

    def put_many(self, items):
        """Append several messages; in durable mode one sync commits them all (group commit)."""
        total = 0
        for d in items:
            total += len(d)
        self._reserve(len(items), total)
        sync = self._sync
        ids = []
        done = 0
        try:
            for d in items:  # all written before any is committed: a full disk leaves nothing visible
                name = "%013x-%s-%x" % (_stamp(), _OWNER, len(d))
                tmp = self._tmp + name
                try:
                    if sync is False:
                        self._write_fsync(tmp, record(d))
                    else:
                        _write(tmp, record(d))
                except OSError as e:
                    _remove(tmp)
                    raise _os_error(e, "writing", tmp) from None
                ids.append(name)
            for name in ids:
                self._commit(name)
                done += 1
            if sync is False:
                os.fsync(self._dir_fd)
            elif sync:
                sync.commit()
        except BaseException:
            for name in ids[done:]:
                _remove(self._tmp + name)
            raise
        self._count += len(ids)
        self._bytes += total
        return ids

    def _commit(self, name):
        try:
            os.rename(self._tmp + name, self._new + name)
        except OSError as e:
            raise _os_error(e, "committing", self._new + name) from None

    def _write_fsync(self, path, data):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _reserve(self, n, nbytes):
        """Raise SpoolFull unless n more messages of nbytes fit; rescans only when the estimate runs out."""
        mm, mb = self._max_messages, self._max_bytes
        if mm is None and mb is None:
            return
        if self._spent >= self._rescan_after or not self._fits(n, nbytes):
            self._rescan()
            if not self._fits(n, nbytes):
                raise SpoolFull(
                    "spool %s is full: %d messages, %d bytes held; limits %s messages, %s bytes "
                    "(consume, or raise max_messages/max_bytes)"
                    % (self.path, self._count, self._bytes, mm, mb)
                )
        self._spent += n

    def _fits(self, n, nbytes):
        mm, mb = self._max_messages, self._max_bytes
        return (mm is None or self._count + n <= mm) and (mb is None or self._bytes + nbytes <= mb)

    def _rescan(self):
        """Count messages and bytes held (new/ and every claim directory); names carry the sizes."""
        count = nbytes = 0
        newest = ""
        for d in [self._new] + [self._cur + o + "/" for o in _names(self._cur)]:
            for name in _names(d):
                p = _parse(name)
                count += 1
                if p:
                    nbytes += p[2]
                    if p[0] > newest:
                        newest = p[0]
        self._count = count
        self._bytes = nbytes
        if newest:  # a clock that stepped back still stamps after the backlog already here
            last = int(newest, 16)
            if last > _last_us[0]:
                _last_us[0] = last
        # Other producers' puts are seen at the next rescan: after half the free room is spent here.
        room = (self._max_messages or 1 << 30) - count
        if self._max_bytes is not None:
            room = min(room, (self._max_bytes - nbytes) // 64)
        self._rescan_after = max(1, room // 2)
        self._spent = 0

    # -- consuming

    def claim(self):
        """Take the oldest message: (msg_id, payload), or None if none is waiting."""
        while True:
            if not self._batch:
                try:
                    self._batch = _smallest(self._new, _BATCH)
                except OSError as e:
                    raise _os_error(e, "listing", self._new) from None
                if not self._batch:
                    return None
            name = self._batch.pop()
            if not self._have_claim_dir:
                self._open_claim_dir()
            mine = self._mine + name
            try:
                os.rename(self._new + name, mine)
            except OSError as e:
                if e.args and e.args[0] == _ENOENT and not _exists(self._new + name):
                    continue  # another consumer won it
                self._have_claim_dir = False  # perhaps removed under us: make it again next time
                raise _os_error(e, "claiming", self._new + name) from None
            payload = check(_read(mine))
            if payload is None:
                self._quarantine(mine, name)
                continue
            return name, payload

    def _open_claim_dir(self):
        try:
            os.mkdir(self._mine[:-1])
        except OSError as e:
            if not _is_dir(self._mine[:-1]):
                raise _os_error(e, "creating", self._mine) from None
        self._have_claim_dir = True

    def ack(self, msg_id):
        """Forget a claimed message: it was processed."""
        try:
            os.remove(self._mine + msg_id)
        except OSError as e:
            raise self._not_claimed(e, msg_id) from None

    def nack(self, msg_id):
        """Return a claimed message to new/; it keeps its place (its name) in FIFO order."""
        try:
            os.rename(self._mine + msg_id, self._new + msg_id)
        except OSError as e:
            raise self._not_claimed(e, msg_id) from None
        b = self._batch
        if not b or msg_id < b[-1]:
            b.append(msg_id)

    def _not_claimed(self, err, msg_id):
        if err.args and err.args[0] == _ENOENT:
            return SpoolError(
                "message %s is not claimed by this process (already acked or nacked, or returned to the "
                "spool after a crash)" % msg_id
            )
        return _os_error(err, "releasing", self._mine + msg_id)

    def _quarantine(self, path, name):
        dst = self._qdir + name
        if _exists(dst):  # never rename over a file: not atomic on FAT
            dst = "%s.%x" % (dst, _stamp())
        try:
            os.rename(path, dst)
        except OSError as e:
            if e.args and e.args[0] == _ENOENT and not _exists(path):
                return  # another process's recovery dealt with it first
            raise _os_error(e, "quarantining", path) from None
        self.corrupt += 1
        self.quarantined.append(name)
        del self.quarantined[:-_QUARANTINE_LOG]

    def __len__(self):
        """Messages held: waiting in new/ plus claimed and not yet acked (one listing: not for hot loops)."""
        self._rescan()
        return self._count

    # -- recovery

    def recover(self):
        """Remove tmp files of dead writers; return claims of dead consumers to new/.

        Runs on open; a long-lived process may call it again. Returns (claims returned, tmp files removed).
        """
        returned = removed = 0
        names = _names(self._tmp)
        for name in names:  # first, before anything allocates space: interrupted FAT repairs
            if name.endswith(".dn") or name.endswith(".dq"):
                self._finish_repair(name)
        for name in names:
            if name.endswith(".dn") or name.endswith(".dq"):
                continue
            p = _parse(name)
            path = self._tmp + name
            if p is None:
                self._quarantine(path, name)
            elif not _alive(p[1]):
                # tmp/ was listed before the writer was known dead: a put it committed (renamed into
                # new/) in between has returned, and only a tmp file still here now was cut short.
                if not _exists(path):
                    continue
                # A rename into new/ cut by power on FAT can leave both entries on one cluster chain;
                # that put never returned, so drop both (with nothing allocated in between).
                _remove(path)
                if _exists(self._new + name):
                    _remove(self._new + name)
                removed += 1
        for owner in _names(self._cur):
            d = self._cur + owner
            if not _is_dir(d):
                self._quarantine(d, owner)
            elif not _alive(owner):
                for name in _names(d):
                    returned += self._return_claim(d + "/" + name, name)
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        return returned, removed

    def _return_claim(self, path, name):
        for target, kind in ((self._new + name, ".dn"), (self._qdir + name, ".dq")):
            # Both there: a rename cut by power on FAT, two entries on one cluster chain. Checked in this
            # order, a claim another process returned meanwhile (one atomic rename) never looks like that.
            if _exists(target) and _exists(path):
                self._repair(target, path, name + kind)
                return 0
        try:
            os.rename(path, self._new + name)
        except OSError as e:
            if not (e.args and e.args[0] == _ENOENT):  # ENOENT: another process returned it first
                raise _os_error(e, "returning", path) from None
            return 0
        return 1

    def _repair(self, target, other, dup):
        """Give `target` its own copy of the data before dropping both entries of a shared chain."""
        _write(self._tmp + dup, _read(target))
        self._finish_repair(dup, other)

    def _finish_repair(self, dup, other=None):
        name = dup[:-3]
        target = (self._new if dup.endswith(".dn") else self._qdir) + name
        path = self._tmp + dup
        if _exists(target) and _size(target) != _size(path):
            _remove(path)  # the copy was cut short: both old entries are intact; repair again later
            return
        if other is None:
            for owner in _names(self._cur):
                _remove(self._cur + owner + "/" + name)
        else:
            try:
                os.remove(other)
            except OSError:  # not a FAT pair: another process returned this claim to new/ meanwhile
                _remove(path)
                return
        _remove(target)
        os.rename(path, target)
