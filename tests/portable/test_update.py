"""The update service over a loopback pair, the trial-boot loader, and both under power cuts.

A host node calls the board's `update` service in one process; the loader runs as the board would run it
(its source with ROOT set to a temporary deploy root); trees' main.py record which tree ran in RAN. The
power-cut tests (MicroPython: littlefs and FAT on a RAM block device) cut after every write of a stage,
commit, trial boot and confirmation, and check that the next boot runs a whole tree, old or new.
"""

import binascii
import gc
import hashlib
import os
import sys
import time

from blockdev import RAMBlockDevice
from mpcompat import micropython_only, raises, temp_dir
from spoolbus import errors, node, update
from spoolbus.transport.loopback import Hub, Loopback

RAN = []  # the trees whose main.py ran, in order
_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
_LOADER = _HERE + "/../../host_tools/spoolbus_host/deploy/board/loader.py"

# Two files deflated as one stream with Z_SYNC_FLUSH after every put (raw deflate, 9 window bits), by
# CPython's zlib: (file, offset, bytes inflated, deflated bytes). MicroPython's unix port cannot deflate.
_A = b"".join(b"spoolbus line %d: x = %d\n" % (i, i * i) for i in range(60))
_B = b"".join(b"other %d\n" % (i % 7) for i in range(150))
_Z = [
    (0, 0, 500,
     "648f3b0a03310c44fb9c4247b0644b6b077299408ac0920d98853d7e0ac94546ed1b7de6cdef71eccf73d2fefebca8dc"
     "e9a20795dbfcc3ec98018be306b83a1e805b1c31e0ea5c14b839af38bfc557bcdf9d1bd619ce3bb6e790e5927497afa4"
     "9d50e6865fb82e3decc54b7ca009ab27228a8945a269678ba4a73fdd932aa9db88c4dce7070000ffff"),
    (0, 500, 500,
     "64cf510ac0300803d02bd9a8adbdffc506336310bf1f21c92fb096305359941819504a7be02d09dd86a01cfd836cd948"
     "954d9999d372664f51e6b6db52e38f5bcb355359943d326859062d72ffa8749d0769a55ef22401a9b43fba237548be47"
     "579122de850f000000ffff"),
    (0, 1000, 500,
     "64cfcb0dc0300c02d095f00727e9fe83f5102a55f6f909017f3a227aff951015d0c93eda23e5a255bd2b43b4b32fcc14"
     "9de8bf92971cce4e25321ba925728cae2d0a8c854794e8bf0811814e26aa9972d11a5d0cd11e0b99a2337e919702ce4e"
     "25b218a9f5bc000000ffff"),
    (0, 1500, 64,
     "8248199960d86501953236c370a12554cac4c2900b000000ffff"),
    (1, 0, 500,
     "ca2fc9482d523080d230be11943686d22650da144a9b8dea1bc2fa00000000ffff"),
    (1, 500, 500,
     "1ad537f2f401000000ffff"),
    (1, 1000, 200,
     "1a2efa00000000ffff"),
]


def _hex(data):
    return binascii.hexlify(hashlib.sha256(data).digest()).decode()


def _main(name, fail=False):
    src = "import test_update\ntest_update.RAN.append(%r)\n" % name
    return (src + "raise ValueError('broken at import')\n" if fail else src).encode()


class _Tree:
    """A deploy tree as the host builds it: files, manifest, tree id."""

    def __init__(self, files):
        self.files = files
        self.names = sorted(files)
        lines = ["spoolbus-manifest 1"]
        lines += ["%s %d %s" % (_hex(files[p]), len(files[p]), p) for p in self.names]
        self.manifest = ("\n".join(lines) + "\n").encode()
        self.id = _hex(self.manifest)[:16]


def _tree(name, fail=False, extra=b""):
    return _Tree({"main.py": _main(name, fail), "spoolbus/lib.py": b"x = %r\n" % name + extra * 40})


def _install(root, tree, dirname=None):
    """Put `tree` on the board as the serial deploy leaves it: app/<id>/, its .manifest, app/current."""
    d = root + "app/" + (dirname or tree.id)
    for p in tree.names + [".manifest"]:
        parts = (d + "/" + p).split("/")
        for i in range(1, len(parts)):
            try:
                os.mkdir("/".join(parts[:i]))
            except OSError:
                pass
        with open(d + "/" + p, "wb") as f:
            f.write(tree.files[p] if p != ".manifest" else tree.manifest)
    _write(root + "app/current", dirname or tree.id)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


class _Rig:
    """A board node serving update on `root` and a host node calling it, on one loopback hub."""

    def __init__(self, root, hosts=("host",), keys=None, **kw):
        self.hub = Hub()
        self.root = root
        self.board = node.Node("board", Loopback(self.hub, "board"), keys=keys)
        self.up = update.serve(self.board, root=root, **kw)
        self.hub.attach(self.board)
        self.hosts = {}
        for h in hosts:
            self.hosts[h] = node.Node(h, Loopback(self.hub, h), keys=keys)

    def call(self, method, host="host", **args):
        return self.hosts[host].call("board", "update." + method, args, timeout=5)

    def refused(self, method, host="host", **args):
        with raises(errors.RemoteError) as r:
            self.call(method, host, **args)
        return r.value

    def stage(self, tree, chunk=300, skip=()):
        """Begin, send the manifest and every file the board needs (raw puts of `chunk` bytes)."""
        r = self.call("begin", tree=tree.id, size=len(tree.manifest))
        if "manifest" in r:
            assert self.call("put", f=-1, o=r["manifest"], d=tree.manifest[r["manifest"]:])["done"]
            r = self.call("begin", tree=tree.id, size=len(tree.manifest))
        for f, have in r["need"]:
            if f in skip:
                continue
            data = tree.files[tree.names[f]]
            for o in range(have, len(data), chunk):
                r2 = self.call("put", f=f, o=o, d=data[o : o + chunk])
            assert r2["done"] and r2["have"] == len(data)
        return r


def _boot(root):
    """One boot: the loader's source with ROOT = root; returns the trees that ran, and whether it reset."""
    with open(_LOADER) as f:
        src = f.read().replace('ROOT = ""', "ROOT = %r" % root, 1)
    del RAN[:]
    path = list(sys.path)
    reset = False
    try:
        exec(src, {"__name__": "loader"})
    except SystemExit:
        reset = True
    finally:
        sys.path[:] = path
        sys.modules.pop("main", None)
    return list(RAN), reset


class _flash:
    """`with _flash() as root:` a temporary directory that stands for a board's flash, with its app/."""

    def __enter__(self):
        self._dir = temp_dir()
        root = self._dir.__enter__() + "/"
        os.mkdir(root + "app")
        return root

    def __exit__(self, *exc):
        return self._dir.__exit__(*exc)


# ------------------------------------------------------------ transfer


def test_raw_transfer_stages_every_file_and_commit_writes_the_trial():
    with _flash() as root:
        old = _tree("old")
        _install(root, old)
        rig = _Rig(root)
        st = rig.call("status")
        assert st["current"] == old.id and st["previous"] is None and st["trial"] is None
        assert st["failed"] is None and st["busy"] is False and st["chunk"] > 1000
        assert st["platform"] == sys.platform and isinstance(st["mpy"], int)
        new = _tree("new", extra=b"0123456789")
        assert rig.call("begin", tree=new.id, size=len(new.manifest)) == {"stage": new.id, "manifest": 0}
        r = rig.stage(new, chunk=100)
        assert r == {"stage": new.id, "need": [[0, 0], [1, 0]]}
        assert rig.call("commit", tree=new.id, reboot=False) == {"trial": new.id}
        assert _read(root + "app/trial") == new.id and _read(root + "app/current") == old.id
        assert _read(root + "app/" + new.id + "/.manifest") == new.manifest.decode()
        assert ".manifest.new" not in os.listdir(root + "app/" + new.id)
        assert rig.call("status")["trial"] == new.id


def test_an_empty_file_is_created_by_its_one_put_and_the_tree_commits():
    with _flash() as root:
        old = _tree("old")
        _install(root, old)
        rig = _Rig(root)
        files = dict(_tree("new").files)
        files["empty.txt"] = b""
        new = _Tree(files)
        r = rig.call("begin", tree=new.id, size=len(new.manifest))
        assert rig.call("put", f=-1, o=0, d=new.manifest)["done"]
        need = rig.call("begin", tree=new.id, size=len(new.manifest))["need"]
        for f, _ in need:
            data = new.files[new.names[f]]
            assert rig.call("put", f=f, o=0, d=data) == {"have": len(data), "done": True}
        assert r["stage"] == new.id and rig.call("commit", tree=new.id, reboot=False) == {"trial": new.id}
        assert os.stat(root + "app/" + new.id + "/empty.txt")[6] == 0


def test_files_equal_in_the_current_tree_are_copied_on_the_board():
    with _flash() as root:
        old = _tree("old")
        _install(root, old)
        new = _Tree({"main.py": _main("new"), "spoolbus/lib.py": old.files["spoolbus/lib.py"]})
        rig = _Rig(root)
        assert rig.stage(new)["need"] == [[0, 0]]
        assert _read(root + "app/" + new.id + "/spoolbus/lib.py") == old.files["spoolbus/lib.py"].decode()
        assert rig.call("commit", tree=new.id, reboot=False) == {"trial": new.id}


def test_compressed_puts_inflate_one_stream_across_files():
    with _flash() as root:
        rig = _Rig(root)
        assert rig.call("status")["z"] >= 9
        t = _Tree({"a.py": _A, "b.txt": _B})
        r = rig.stage(t, skip=(0, 1))
        assert r["need"] == [[0, 0], [1, 0]]
        for i, (f, o, n, z) in enumerate(_Z):
            got = rig.call("put", f=f, o=o, d=binascii.unhexlify(z), z=7, s=i == 0, n=n)
            assert got["have"] == o + n
        assert _read(root + "app/" + t.id + "/a.py") == _A.decode()
        assert rig.call("commit", tree=t.id, reboot=False) == {"trial": t.id}


def test_a_compressed_put_out_of_its_stream_is_refused_and_ends_the_stream():
    with _flash() as root:
        rig = _Rig(root)
        t = _Tree({"a.py": _A, "b.txt": _B})
        rig.stage(t, skip=(0, 1))
        z = [(f, o, n, binascii.unhexlify(x)) for f, o, n, x in _Z]
        e = rig.refused("put", f=0, o=0, d=z[0][3], z=7, n=500)  # not the start of a stream it decodes
        assert e.type == "out_of_order" and e.details == {"file": 0, "have": 0}
        assert rig.call("put", f=0, o=0, d=z[0][3], z=7, s=True, n=500) == {"have": 500}
        e = rig.refused("put", f=0, o=1000, d=z[2][3], z=7, n=500)  # put 1 was lost
        assert e.details == {"file": 0, "have": 500}
        assert rig.refused("put", f=0, o=500, d=z[1][3], z=7, n=500).type == "out_of_order"  # stream ended
        assert rig.refused("put", f=0, o=500, d=z[1][3], z=8, n=500).type == "out_of_order"
        assert rig.call("put", f=0, o=0, d=z[0][3], z=9, s=True, n=500) == {"have": 500}  # a resend
        assert rig.board.stats["internal_errors"] == 0


def test_compressed_puts_of_a_stream_deflated_here():
    try:
        from zlib import compressobj
    except ImportError:
        return  # MicroPython's unix port cannot deflate: the fixture above covers its inflate
    with _flash() as root:
        rig = _Rig(root)
        z = rig.call("status")["z"]
        t = _Tree({"a.bin": os.urandom(3000) + _A * 4, "b.py": _B * 3})
        rig.stage(t, skip=(0, 1))
        c = compressobj(9, 8, -z)
        first = True
        for f in (0, 1):
            data = t.files[t.names[f]]
            for o in range(0, len(data), 1500):
                piece = data[o : o + 1500]
                zd = c.compress(piece) + c.flush(2)  # Z_SYNC_FLUSH
                r = rig.call("put", f=f, o=o, d=zd, z=1, s=first, n=len(piece))
                first = False
            assert r == {"have": len(data), "done": True}
        assert rig.call("commit", tree=t.id, reboot=False) == {"trial": t.id}


def test_a_cut_transfer_resumes_where_it_stopped_on_a_new_boot():
    with _flash() as root:
        new = _tree("new", extra=b"abcdefgh")
        rig = _Rig(root)
        rig.call("begin", tree=new.id, size=len(new.manifest))
        rig.call("put", f=-1, o=0, d=new.manifest[:50])
        rig = _Rig(root)  # the board restarted (or the host did): a new Updater on the same files
        assert rig.call("begin", tree=new.id, size=len(new.manifest))["manifest"] == 50
        rig.call("put", f=-1, o=50, d=new.manifest[50:])
        r = rig.call("begin", tree=new.id, size=len(new.manifest))
        lib = new.files["spoolbus/lib.py"]
        rig.call("put", f=1, o=0, d=lib[:100])
        rig = _Rig(root)
        r = rig.call("begin", tree=new.id, size=len(new.manifest))
        assert r["need"] == [[0, 0], [1, 100]]
        assert rig.call("put", f=1, o=0, d=lib[:100]) == {"have": 100}  # a resend: answered, not written
        rig.stage(new)
        assert rig.call("commit", tree=new.id, reboot=False)["trial"] == new.id


def test_begin_of_the_running_tree_is_up_to_date_unless_it_is_damaged():
    with _flash() as root:
        t = _tree("t")
        _install(root, t)
        rig = _Rig(root)
        assert rig.call("begin", tree=t.id, size=len(t.manifest)) == {"up_to_date": True}
        _write(root + "app/" + t.id + "/spoolbus/lib.py", "damaged")
        r = rig.call("begin", tree=t.id, size=len(t.manifest))
        assert r == {"stage": t.id + ".1", "manifest": 0}


# ------------------------------------------------------------ refusals


def test_refusals_are_typed_and_leave_the_files_as_they_were():
    with _flash() as root:
        rig = _Rig(root, hosts=("host", "other"))
        t = _tree("t")
        assert rig.refused("put", f=0, o=0, d=b"x").type == "out_of_order"  # nothing begun
        rig.call("begin", tree=t.id, size=len(t.manifest) + 1)
        assert rig.refused("put", f=-1, o=0, d=t.manifest + b"\n").type == "bad_manifest"  # not tree t's
        rig.call("put", f=-1, o=0, d=t.manifest[:10])
        bad = rig.refused("put", f=-1, o=20, d=b"x")
        assert bad.type == "out_of_order" and bad.details == {"file": -1, "have": 10}
        junk = b"not a manifest at all\n"
        fake = _hex(junk)[:16]
        rig.call("begin", tree=fake, size=len(junk))
        assert rig.refused("put", f=-1, o=0, d=junk).type == "bad_manifest"
        rig.stage(t, skip=(0, 1))
        assert rig.refused("put", f=0, o=5, d=b"abc").details == {"file": 0, "have": 0}
        assert rig.refused("put", f=0, o=0, d=b"x" * 500).type == "out_of_order"  # past the end
        data = t.files["main.py"]
        wrong = rig.refused("put", f=0, o=0, d=data[:-1] + b"?")
        assert wrong.type == "hash_mismatch" and wrong.details == {"file": 0}
        assert rig.call("put", f=0, o=0, d=data) == {"have": len(data), "done": True}
        assert rig.refused("commit", tree=t.id).type == "incomplete"
        assert rig.refused("begin", "other", tree=t.id, size=len(t.manifest)).type == "busy"
        assert rig.call("status", "other")["busy"] is True and rig.call("status")["busy"] is False
        assert rig.refused("rollback").type == "no_previous"
        assert rig.refused("read", path="../etc/passwd", o=0, n=10).type == "bad_path"
        assert rig.refused("read", path="/etc/passwd", o=0, n=10).type == "bad_path"
        assert rig.refused("read", path="app/nothing", o=0, n=10).type == "not_found"
        _write(root + "log.txt", "0123456789")
        assert rig.call("read", path="log.txt", o=3, n=4) == {"d": b"3456", "size": 10}
        assert rig.refused("put", f=7, o=0, d=b"x").type == "not_found"
        assert rig.board.stats["internal_errors"] == 0


def test_a_signing_board_takes_updates_only_signed_from_a_trusted_node():
    keys = {"board": b"k-board", "host": b"k-host"}
    with _flash() as root:
        rig = _Rig(root, keys=keys)
        e = rig.refused("status")
        assert e.type == "not_trusted"
        rig = _Rig(root, hosts=("host", "stranger"), keys=keys, trusted=["host"])
        assert rig.call("status")["current"] is None
        rig.hosts["stranger"].auth._own = None  # no key of its own: it sends unsigned
        assert rig.refused("status", "stranger").type == "not_trusted"


# ------------------------------------------------------------ trial boot, confirmation, rollback


def _committed(root, fail=False, reboot=False):
    """The board at `root` runs tree "old", with tree "new" staged and committed: (old, new, rig)."""
    old, new = _tree("old"), _tree("new", fail=fail)
    _install(root, old)
    rig = _Rig(root)
    rig.stage(new)
    rig.call("commit", tree=new.id, reboot=reboot)
    return old, new, rig


def test_a_committed_tree_boots_once_on_trial_and_is_confirmed_by_health():
    with _flash() as root:
        old, new, _ = _committed(root)
        os.mkdir(root + "app/stale")
        assert _boot(root) == (["new"], False)
        assert _read(root + "app/trial") == new.id + " booted"
        rig = _Rig(root)
        assert rig.call("health") == {"current": old.id, "confirmed": False}  # no hello answered yet
        rig.hosts["host"].hello("board")
        rig.board.poll(0)
        rig.hosts["host"].poll(0)
        assert rig.call("health") == {"current": new.id, "confirmed": True}
        assert _read(root + "app/current") == new.id and _read(root + "app/previous") == old.id
        assert sorted(os.listdir(root + "app")) == sorted([new.id, old.id, "current", "previous"])
        assert _boot(root) == (["new"], False)


def test_an_unhealthy_trial_is_not_confirmed():
    with _flash() as root:
        old, new, _ = _committed(root)
        _boot(root)
        rig = _Rig(root, healthy=lambda: False)
        rig.board.stats["hellos"] = 1
        assert rig.call("health") == {"current": old.id, "confirmed": False}


def test_a_trial_that_raises_at_import_is_recorded_and_the_board_goes_back():
    with _flash() as root:
        old, new, _ = _committed(root, fail=True)
        assert _boot(root) == (["new"], True)
        failed = _read(root + "app/failed").split("\n")
        assert failed[0] == new.id and failed[1] == "ValueError: broken at import" and 'File "' in failed[2]
        assert _read(root + "app/trial") is None
        assert _boot(root) == (["old"], False)
        f = _Rig(root).call("status")["failed"]
        assert f["tree"] == new.id and f["reason"] == "ValueError: broken at import"


def test_a_trial_never_confirmed_is_given_up_on_the_next_boot():
    with _flash() as root:
        old, new, _ = _committed(root)
        assert _boot(root) == (["new"], False)
        assert _boot(root) == (["old"], False)
        assert _read(root + "app/failed") == new.id + "\nnot confirmed before the next boot\n"
        assert _read(root + "app/trial") is None and _read(root + "app/current") == old.id


def test_a_trial_past_its_deadline_is_given_up_and_the_board_resets():
    with _flash() as root:
        old, new, _ = _committed(root)
        _boot(root)
        rig = _Rig(root, deadline_s=0)
        with raises(SystemExit):
            rig.up.poll()
        assert _read(root + "app/failed").split("\n")[1] == "not confirmed in 0 s"
        assert _boot(root) == (["old"], False)


def test_commit_and_rollback_reset_after_their_reply():
    with _flash() as root:
        old, new, rig = _committed(root, reboot=True)
        rig.up.poll()  # the reply went out; the reset waits
        time.sleep(0.25)
        with raises(SystemExit):
            rig.up.poll()
        _boot(root)
        rig = _Rig(root)
        rig.board.stats["hellos"] = 1
        rig.call("health")
        assert rig.call("rollback") == {"current": old.id}
        assert _read(root + "app/current") == old.id and _read(root + "app/previous") == new.id
        time.sleep(0.25)
        with raises(SystemExit):
            rig.up.poll()
        assert _boot(root) == (["old"], False)


def test_a_confirmation_cut_after_its_commit_point_is_finished_by_the_loader():
    with _flash() as root:
        old, new, _ = _committed(root)
        _boot(root)
        _write(root + "app/previous", old.id)
        _write(root + "app/current", new.id)  # the power went before app/trial was removed
        assert _boot(root) == (["new"], False)
        assert _read(root + "app/trial") is None


# ------------------------------------------------------------ power cuts (MicroPython's vfs)

_MOUNT = "/ota-cut"


def _whole(root, dirname):
    """Whether app/<dirname> holds every file of its .manifest, each with its sha256 and size."""
    d = root + "app/" + dirname
    with open(d + "/.manifest", "rb") as f:
        m = f.read()
    if _hex(m)[:16] != dirname.split(".")[0]:
        return False
    for line in m.decode().split("\n")[1:]:
        if line:
            sha, size, path = line.split(" ", 2)
            with open(d + "/" + path, "rb") as f:
                data = f.read()
            if len(data) != int(size) or _hex(data) != sha:
                return False
    return True


def _pointer(root, name):
    """A pointer file as the loader reads it (FAT's rename onto a name removes that name first: a cut between
    leaves only `<name>.new`, whole)."""
    for p in (root + "app/" + name, root + "app/" + name + ".new"):
        t = (_read(p) or "").strip()
        if t:
            return t
    return None


def _workload(old, new):
    root = _MOUNT + "/"
    rig = _Rig(root)
    rig.stage(new, chunk=200)
    rig.call("commit", tree=new.id, reboot=False)
    _boot(root)
    rig = _Rig(root)
    rig.board.stats["hellos"] = 1
    rig.call("health")


def _cut_run(fs, base, cut, old, new):
    import vfs

    bdev = RAMBlockDevice(512, 128)
    bdev.data[:] = base
    bdev.fail_after_writes = cut
    vfs.mount(fs(bdev), _MOUNT)
    try:
        _workload(old, new)
    except Exception:  # noqa: BLE001 - past the cut the filesystem sees its own writes vanish
        if bdev.writes <= cut:
            raise
    finally:
        gc.collect()  # files the cut left open are finalised now, while their writes go nowhere
        vfs.umount(_MOUNT)
    bdev.fail_after_writes = None
    vfs.mount(fs(bdev), _MOUNT)
    try:
        root = _MOUNT + "/"
        for _ in range(2):  # the boot after the cut, and the one after that
            ran, reset = _boot(root)
            assert len(ran) == 1 and ran[0] in ("old", "new"), "cut %d: booted %r" % (cut, ran)
            tid = old.id if ran[0] == "old" else new.id
            trial = (_pointer(root, "trial") or "").split(" ")[0]
            running = trial if trial == tid else _pointer(root, "current")
            assert running.split(".")[0] == tid and _whole(root, running), "cut %d: %s not whole" % (cut, tid)
    finally:
        vfs.umount(_MOUNT)
    return bdev.writes


@micropython_only("mounts FAT from MicroPython's vfs module")
def test_a_full_disk_refuses_the_put_with_no_space():
    import vfs

    bdev = RAMBlockDevice(512, 64)
    vfs.VfsFat.mkfs(bdev)
    vfs.mount(vfs.VfsFat(bdev), _MOUNT)
    try:
        root = _MOUNT + "/"
        os.mkdir(root + "app")
        rig = _Rig(root)
        t = _Tree({"big.bin": bytes(40000)})
        rig.stage(t, skip=(0,))
        o = 0
        with raises(errors.RemoteError) as e:
            while o < 40000:
                o = rig.call("put", f=0, o=o, d=bytes(2000))["have"]
        assert e.value.type == "no_space" and rig.call("status")["free"] < 2000
    finally:
        vfs.umount(_MOUNT)


def _every_cut(fs):
    import vfs

    old, new = _tree("old"), _tree("new", extra=b"0123456789abcdef")
    bdev = RAMBlockDevice(512, 128)
    fs.mkfs(bdev)
    vfs.mount(fs(bdev), _MOUNT)
    try:
        os.mkdir(_MOUNT + "/app")
        _install(_MOUNT + "/", old)
    finally:
        vfs.umount(_MOUNT)
    base = bytes(bdev.data)
    total = _cut_run(fs, base, 1 << 30, old, new)
    for cut in range(total + 1):
        _cut_run(fs, base, cut, old, new)
    print("OTA power cuts on %s: %d cut points checked" % (fs.__name__, total + 1))
    assert total > 20


@micropython_only("mounts littlefs from MicroPython's vfs module")
def test_power_cut_at_every_write_of_an_update_on_littlefs_boots_a_whole_tree():
    import vfs

    _every_cut(vfs.VfsLfs2)


@micropython_only("mounts FAT from MicroPython's vfs module")
def test_power_cut_at_every_write_of_an_update_on_fat_boots_a_whole_tree():
    import vfs

    _every_cut(vfs.VfsFat)
