"""The board side of an update over the bus: the `update` service stages a tree, commits it for a trial boot
and confirms or gives it up; the board keeps running its tree until a new one is verified whole.

Files and protocol: docs/deploy.md, "Over the bus (OTA) and the trial boot". The manifest stays on flash,
file data goes straight to flash; every pointer file changes by one rename of `<name>.new`.
"""

import binascii
import gc
import hashlib
import os
import sys

from spoolbus import appdir, contract, errors
from spoolbus.errors import ticks_add, ticks_diff, ticks_ms

try:
    import machine
except ImportError:  # CPython
    machine = None
try:
    import io

    import deflate
except ImportError:
    deflate = None

SERVICE = contract.Service("update", "1.0")
SERVICE.method("status")
SERVICE.method("begin", ("tree", str), ("size", int))
SERVICE.method("put", ("f", int), ("o", int), ("d", bytes), ("z", int, 0), ("s", bool, False), ("n", int, -1))
SERVICE.method("commit", ("tree", str), ("reboot", bool, True))
SERVICE.method("health")
SERVICE.method("rollback", ("reboot", bool, True))
SERVICE.method("read", ("path", str), ("o", int), ("n", int))

_BUSY_MS = 10000  # another source may not start while the last one called this recently
_RESET_MS = 200  # a reset waits this long after its reply, so the reply goes out
_HEADER = "spoolbus-manifest 1\n"
_MANIFEST = ".manifest"
_NEW = ".manifest.new"


class UpdateError(errors.SpoolbusError):
    """A refused update call; `wire_type` is its type in the ERROR reply (busy, out_of_order, ...)."""

    def __init__(self, wire_type, message, details=None):
        super().__init__(message)
        self.wire_type = wire_type
        self.details = details


def _size(p):
    try:
        return os.stat(p)[6]
    except OSError:
        return -1


def _is_dir(p):
    try:
        return os.stat(p)[0] & 0x4000 != 0
    except OSError:
        return False


def _hash(p, buf):
    h = hashlib.sha256()
    mv = memoryview(buf)
    with open(p, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    return binascii.hexlify(h.digest()).decode()


def _rm(p):
    try:
        os.remove(p)
    except OSError:
        if _is_dir(p):
            for name in os.listdir(p):
                _rm(p + "/" + name)
            os.rmdir(p)


def _mkdirs(p):
    q = ""
    for part in p.split("/"):
        q += part
        if part and not _is_dir(q):
            os.mkdir(q)
        q += "/"


def _files(d, pre=""):
    """Relative paths of the files under `d` (a generator: no list of a whole tree in RAM)."""
    for name in os.listdir(d):
        p = d + "/" + name
        if _is_dir(p):
            yield from _files(p, pre + name + "/")
        else:
            yield pre + name


def _safe(path):
    return path and path[0] != "/" and ".." not in path.split("/") and "\\" not in path


def _entries(mpath):
    """(path, size, sha256) of each file line of the manifest at `mpath`, read line by line from flash."""
    with open(mpath) as f:
        f.readline()
        for line in f:
            a = line.split(" ", 2)
            yield a[2].rstrip("\n"), int(a[1]), a[0]


class _Feed(io.IOBase if deflate else object):
    """The compressed bytes of one stream as puts bring them; DeflateIO reads only what has arrived (a
    sync-flushed put ends where its bytes end), leaving a few bytes of the flush for the next put."""

    def __init__(self):
        self.b = b""
        self.i = 0

    def add(self, d):
        self.b = self.b[self.i :] + d if self.i < len(self.b) else bytes(d)
        self.i = 0

    def readinto(self, m):
        n = min(len(m), len(self.b) - self.i)
        m[:n] = memoryview(self.b)[self.i : self.i + n]
        self.i += n
        return n


class Updater:
    """The `update` service of `node` (see serve)."""

    def __init__(self, node, root="", deadline_s=60, healthy=None, trusted=None):
        self.node = node
        self.root = root.rstrip("/") + "/" if root else ""
        self.app = self.root + "app/"
        self.deadline_s = deadline_s
        self.healthy = healthy
        self.trusted = trusted
        self.chunk = min(node.max_message, getattr(node.transport, "max_frame", node.max_message)) - 256
        self.z = _wbits() if deflate or sys.implementation.name != "micropython" else 0
        self._buf = bytearray(512)
        self._owner = None
        self._owner_t = 0
        self._stage = None  # (tree id, stage dir, manifest size) since begin
        self._entry = None  # (file number, path, size, sha256) of the file being put
        self._zs = None  # [stream id, decoder, feed, file of its last put, that file done]
        self._reset_at = None
        self._wdt = machine.WDT(timeout=8000) if hasattr(machine, "WDT") else None
        self._t0 = ticks_ms()
        t = appdir.get(self.app, "trial")
        t = t[:-7] if t and t.endswith(" booted") else None
        self._trial = t if t != appdir.get(self.app, "current") else None  # the trial this boot runs

    # ------------------------------------------------------------ timers

    def poll(self):
        """node.on_poll: feed the watchdog, reset when one is due, give up a trial past its deadline."""
        if self._wdt is not None:
            self._wdt.feed()
        now = ticks_ms()
        if self._reset_at is not None and ticks_diff(now, self._reset_at) >= 0:
            self._bye()
            _reset()
        if self._trial and ticks_diff(now, self._t0) >= self.deadline_s * 1000:
            self._fail(self._trial, "not confirmed in %d s" % self.deadline_s)
            self._bye()
            _reset()

    def _bye(self):
        # a serial link's peer (the bridge) then writes nothing into the console while the board boots
        bye = getattr(self.node.transport, "bye", None)
        if bye is not None:
            bye()

    def _fail(self, tree, reason, trace=""):
        appdir.put(self.app, "failed", "%s\n%s\n%s" % (tree, reason, trace))
        appdir.drop(self.app, "trial")
        self._trial = None

    def _reboot(self, yes):
        if yes:
            self._reset_at = ticks_add(ticks_ms(), _RESET_MS)

    # ------------------------------------------------------------ who may call

    def _allow(self, claim=True):
        env = self.node.current
        if env is None:
            return  # the application itself
        src = env.src
        signing = self.node.auth._own is not None
        if (signing and (env.sig is None or self.trusted is None)) or (
                self.trusted is not None and src not in self.trusted):
            raise UpdateError("not_trusted", "%s does not take updates from %s%s" % (
                self.node.name, src, " unsigned" if signing and env.sig is None else ""))
        if not claim:
            return
        now = ticks_ms()
        if self._owner not in (None, src) and ticks_diff(now, self._owner_t) < _BUSY_MS:
            raise UpdateError("busy", "%s is updating %s; retry in 10 s" % (self._owner, self.node.name))
        self._owner = src
        self._owner_t = now

    def _busy(self):
        env = self.node.current
        src = env.src if env is not None else None
        return self._owner not in (None, src) and ticks_diff(ticks_ms(), self._owner_t) < _BUSY_MS

    # ------------------------------------------------------------ methods

    def status(self):
        self._allow(False)
        failed = appdir.get(self.app, "failed")
        if failed is not None:
            a = (failed + "\n\n").split("\n")
            failed = {"tree": a[0], "reason": a[1], "trace": a[2]}
        try:
            st = os.statvfs(self.root or ".")
            free = st[1] * st[4]
        except (AttributeError, OSError):
            free = None
        a = self.app
        return {"current": appdir.get(a, "current"), "previous": appdir.get(a, "previous"),
                "trial": appdir.get(a, "trial"),
                "failed": failed, "mpy": getattr(sys.implementation, "_mpy", 0), "platform": sys.platform,
                "z": self.z, "chunk": self.chunk, "free": free, "busy": self._busy()}

    def begin(self, tree, size):
        self._allow()
        if len(tree) != 16 or size < len(_HEADER):
            raise UpdateError("bad_manifest", "tree %r of a %d-byte manifest is no tree id" % (tree, size))
        cur = appdir.get(self.app, "current")
        if cur and cur.split(".")[0] == tree and self._whole(cur, tree):
            self._owner = None  # nothing to stage: another host may update at once
            return {"up_to_date": True}
        stage = tree + ".1" if cur == tree else tree
        self._stage = (tree, stage, size)
        self._entry = self._zs = None
        d = self.app + stage
        _mkdirs(d)
        self._prune(stage)
        m = d + "/" + _NEW
        have = _size(m)
        if have == size and not self._manifest_ok(m, tree):
            have = -1
        if have > size or have == -1:
            _rm(m)
            have = 0
        if have < size:
            return {"stage": stage, "manifest": have}
        return {"stage": stage, "need": self._need(d, m)}

    def _whole(self, dirname, tree):
        """Whether app/<dirname> holds tree `tree`: its manifest's hash, every file re-hashed, none extra."""
        d = self.app + dirname
        m = d + "/" + _MANIFEST
        try:
            if _hash(m, self._buf)[:16] != tree:
                return False
            n = 0
            for path, size, sha in _entries(m):
                n += 1
                if _size(d + "/" + path) != size or _hash(d + "/" + path, self._buf) != sha:
                    return False
            return sum(1 for _ in _files(d)) == n + 1
        except (OSError, ValueError, IndexError):
            return False

    def _prune(self, keep):
        """Remove every tree but current, previous, the running trial and `keep`."""
        a = self.app
        trial = (appdir.get(a, "trial") or "").split(" ")[0]
        names = [keep, appdir.get(a, "current"), appdir.get(a, "previous"), trial]
        for name in os.listdir(self.app[:-1]):
            if name not in names and _is_dir(self.app + name):
                _rm(self.app + name)

    def _manifest_ok(self, m, tree):
        try:
            if _hash(m, self._buf)[:16] != tree:
                return False
            with open(m) as f:
                if f.readline() != _HEADER:
                    return False
            last = ""
            for path, size, sha in _entries(m):
                if not _safe(path) or path <= last or size < 0 or len(sha) != 64 or path[:9] == _MANIFEST:
                    return False
                last = path
            return True
        except (OSError, ValueError, IndexError):
            return False

    def _need(self, d, m):
        """[[file, have], ...] of the files not staged whole (each kept, partial or copied from a tree)."""
        need = []
        held = 0
        a = self.app
        srcs = [a + t for t in (appdir.get(a, "current"), appdir.get(a, "previous")) if t]
        i = -1
        for path, size, sha in _entries(m):
            i += 1
            p = d + "/" + path
            have = _size(p)
            if have == size and _hash(p, self._buf) != sha or have > size:
                _rm(p)
                have = -1
            if have <= 0:
                for s in srcs:
                    q = s + "/" + path
                    if q != p and _size(q) == size and _hash(q, self._buf) == sha:
                        self._copy(q, p)
                        have = size
                        break
            if have >= 0:
                held += 1
            if have < size:
                need.append([i, max(have, 0)])
        if sum(1 for _ in _files(d)) > held + 1:
            self._remove_extra(d, m)
        return need

    def _copy(self, src, dst):
        i = dst.rfind("/")
        _mkdirs(dst[:i])
        buf = self._buf
        mv = memoryview(buf)
        with open(src, "rb") as f, open(dst, "wb") as g:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                g.write(mv[:n])

    def _remove_extra(self, d, m):
        for p in list(_files(d)):
            if p != _NEW and p != _MANIFEST and not any(e[0] == p for e in _entries(m)):
                _rm(d + "/" + p)

    def _file(self, f):
        """(path on flash, size, sha256 or the tree id) of file `f` (-1: the manifest)."""
        st = self._stage
        if st is None:
            raise UpdateError("out_of_order", "no update begun since %s started: call begin" % self.node.name,
                              {"file": f, "have": None})
        d = self.app + st[1] + "/"
        if f < 0:
            return d + _NEW, st[2], st[0]
        e = self._entry
        if e is None or e[0] != f:
            if _size(d + _NEW) != st[2]:
                raise UpdateError("out_of_order", "the manifest has not arrived",
                                  {"file": -1, "have": max(0, _size(d + _NEW))})
            e = None
            i = 0
            for path, size, sha in _entries(d + _NEW):
                if i == f:
                    e = self._entry = (f, d + path, size, sha)
                    break
                i += 1
            if e is None:
                raise UpdateError("not_found", "the manifest has no file %d" % f)
        return e[1], e[2], e[3]

    def put(self, f, o, d, z=0, s=False, n=-1):
        self._allow()
        p, size, sha = self._file(f)
        have = _size(p)
        if have < 0 and size == 0:  # an empty file: no put will write it, this one creates it
            _mkdirs(p[: p.rfind("/")])
            open(p, "wb").close()
        have = max(have, 0)
        if o < have or have == size:
            return self._have(have, size)  # a resend: what it carried is here
        zs = self._zs
        if z and s:
            zs = self._zs = None
        if z and zs is None and not s or z and zs is not None and zs[0] != z:
            self._zs = None
            raise UpdateError("out_of_order", "put of deflate stream %d that this board is not decoding" % z,
                              {"file": f, "have": have})
        if o > have or (z and zs is not None and zs[3] != f and not (o == 0 and zs[4])):
            self._zs = None
            raise UpdateError("out_of_order", "put at byte %d of file %d, which has %d" % (o, f, have),
                              {"file": f, "have": have})
        if not z:
            n = len(d)
        if n < 0 or o + n > size:
            raise UpdateError("out_of_order", "put of %d bytes past the end of file %d (%d bytes)"
                              % (n, f, size), {"file": f, "have": have})
        if have == 0 and f >= 0:
            _mkdirs(p[: p.rfind("/")])
        try:
            with open(p, "ab") as out:
                if z:
                    self._inflate(z, s, f, d, n, out)
                else:
                    out.write(d)
        except OSError as e:
            self._zs = None
            if e.args and e.args[0] == 28:
                raise UpdateError("no_space", "%s has no room for %s" % (self.node.name, p)) from None
            raise
        except ValueError:
            self._zs = None
            _rm(p)
            raise UpdateError("out_of_order", "deflate stream %d did not give %d bytes for file %d"
                              % (z, n, f), {"file": f, "have": 0}) from None
        have = o + n
        if have == size:
            if f < 0 and not self._manifest_ok(p, sha):
                _rm(p)
                raise UpdateError("bad_manifest", "what arrived is no spoolbus manifest of tree %s" % sha)
            if f >= 0 and _hash(p, self._buf) != sha:
                _rm(p)
                self._zs = None
                raise UpdateError("hash_mismatch", "file %d arrived with another sha256: send it again" % f,
                                  {"file": f})
            if self._zs is not None:
                self._zs[4] = True
        return self._have(have, size)

    def _have(self, have, size):
        return {"have": have, "done": True} if have == size else {"have": have}

    def _inflate(self, z, s, f, d, n, out):
        zs = self._zs
        if zs is None:
            if z < 0 or self.z == 0:
                raise ValueError from None
            if deflate:
                feed = _Feed()
                zs = [z, deflate.DeflateIO(feed, deflate.RAW, self.z), feed, f, False]
            else:
                import zlib

                zs = [z, zlib.decompressobj(-self.z), None, f, False]
            self._zs = zs
        zs[3] = f
        zs[4] = False
        try:
            if zs[2] is None:
                data = zs[1].decompress(d)
                if len(data) != n:
                    raise ValueError from None
                out.write(data)
                return
            zs[2].add(d)
            buf = self._buf
            mv = memoryview(buf)
            left = n
            while left:
                k = zs[1].readinto(mv[: min(left, len(buf))])
                if not k:
                    raise ValueError from None
                out.write(mv[:k])
                left -= k
        except Exception as e:  # noqa: BLE001 - a corrupt stream (zlib.error, OSError EINVAL) ends the stream
            if isinstance(e, OSError) and e.args and e.args[0] == 28:
                raise
            raise ValueError from None

    def commit(self, tree, reboot=True):
        self._allow()
        st = self._stage
        if st is None or st[0] != tree:
            raise UpdateError("incomplete", "tree %s was not begun since %s started: call begin" % (tree,
                                                                                                   self.node.name))
        d = self.app + st[1]
        m = d + "/" + _NEW
        if _size(m) != st[2] or not self._manifest_ok(m, tree):
            raise UpdateError("incomplete", "the manifest of tree %s has not arrived" % tree)
        need = self._need(d, m)
        if need:
            raise UpdateError("incomplete", "%d files of tree %s have not arrived" % (len(need), tree),
                              {"need": need[:16]})
        os.rename(m, d + "/" + _MANIFEST)
        appdir.put(self.app, "trial", st[1])
        self._stage = self._entry = self._zs = self._owner = None
        self._reboot(reboot)
        return {"trial": st[1]}

    def health(self):
        self._allow(False)
        cur = appdir.get(self.app, "current")
        trial = self._trial
        if trial is None:
            return {"current": cur, "confirmed": appdir.get(self.app, "trial") is None}
        if self.node.stats["hellos"] == 0 or (self.healthy is not None and not self.healthy()):
            return {"current": cur, "confirmed": False}
        if cur and cur != trial:
            appdir.put(self.app, "previous", cur)
        appdir.put(self.app, "current", trial)
        appdir.drop(self.app, "trial")
        self._trial = None
        self._prune(trial)
        return {"current": trial, "confirmed": True}

    def rollback(self, reboot=True):
        self._allow()
        prev = appdir.get(self.app, "previous")
        if prev is None or not _is_dir(self.app + prev):
            raise UpdateError("no_previous", "%s keeps no previous tree to go back to" % self.node.name)
        cur = appdir.get(self.app, "current")
        appdir.put(self.app, "current", prev)
        if cur:
            appdir.put(self.app, "previous", cur)
        appdir.drop(self.app, "trial")
        self._trial = None
        self._reboot(reboot)
        return {"current": prev}

    def read(self, path, o, n):
        self._allow(False)
        if not _safe(path):
            raise UpdateError("bad_path", "%r is not a path under the deploy root" % path)
        p = self.root + path
        size = _size(p)
        if size < 0 or _is_dir(p):
            raise UpdateError("not_found", "%s has no file %s" % (self.node.name, path))
        with open(p, "rb") as f:
            f.seek(max(o, 0))
            data = f.read(max(0, min(n, self.chunk)))
        return {"d": data, "size": size}


def _wbits():
    """The deflate window: 2 KB (11 bits), smaller where the free heap is short."""
    gc.collect()
    z = 11
    free = gc.mem_free() if hasattr(gc, "mem_free") else 1 << 20
    while z > 9 and free < 16 << z:
        z -= 1
    return z


def _reset():
    """A hard reset where a watchdog may run (only that stops it), else a soft one; SystemExit on CPython."""
    if machine is not None and hasattr(machine, "WDT"):
        machine.reset()
    if machine is not None and hasattr(machine, "soft_reset"):
        machine.soft_reset()
    raise SystemExit


def serve(node, root="", deadline_s=60, healthy=None, trusted=None):
    """Serve `update` on `node` and run its timers in node.on_poll; returns the Updater."""
    u = Updater(node, root, deadline_s, healthy, trusted)
    node.serve(SERVICE, u)
    node.on_poll = u.poll
    return u
