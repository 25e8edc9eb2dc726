"""Deploy an application and the spoolbus runtime to a MicroPython board: compile, copy what changed, switch.

Guarantees: the board runs either the old tree or the complete, hash-verified new one. Files go to a
new tree `app/<id>`; one rename of `app/current` (the name the boot loader reads) is the switch, so a
link cut or a power cut at any moment before it leaves the old code running, and a later deploy
resumes from the files that arrived intact.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import serial

from spoolbus_host.paths import MICROPYTHON_BUILD, RUNTIME
from spoolbus_host.progress import Progress

PROJECT_MPY_CROSS = MICROPYTHON_BUILD / "mpy-cross"
MANIFEST_NAME = ".manifest"
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
_CHUNK = 2048  # bytes of file data a line (base64); one acknowledgement a line keeps any UART buffer safe
_LINE_TIMEOUT = 5.0  # seconds without a reply line before the board counts as gone

# The boot loader the deploy writes to the board's root: it puts the tree `app/current` names first on
# sys.path and imports the application's `main` from it. It never changes during a deploy.
LOADER = """# Written by `spoolbus deploy`: runs the application tree that %(root)sapp/current names.
import sys
try:
    _tree = "%(root)sapp/" + open("%(root)sapp/current").read().strip()
except OSError:
    _tree = None
if _tree:
    sys.path.insert(0, _tree)
    import main
"""


def loader(root: str = "") -> bytes:
    """The boot loader for a board whose deploy root is `root` ("" = the working directory)."""
    return (LOADER % {"root": root.rstrip("/") + "/" if root else ""}).encode()

# The agent the bootstrap (below) runs in the raw REPL: a line protocol with base64 data (no control bytes,
# so neither a tty nor a port's Ctrl-C handling can touch it), one reply line per request.
# A line holding Ctrl-C (0x03) ends it, so a new deploy can always take over after a cut link.
AGENT = """
import os,sys,binascii,hashlib,gc
try:
    import io,deflate;_B=io.IOBase
    gc.collect();_z=10  # the window of one deflate stream for every file: up to an 8th of the free heap
    while _z<15 and 16<<_z<gc.mem_free():_z+=1
    while _z>10:  # and half the largest free block: an application's objects leave the heap in pieces
        try:bytearray(2<<_z);break
        except MemoryError:_z-=1
except ImportError:
    _z=0;_B=object
class _R(_B):
    # The wire bytes of the puts: each adds n bytes in chunk lines, the first read before the file is
    # opened. A chunk is acknowledged (K: send the next) when the writer starts on it, the last one by
    # the put's reply. Compressed, the bytes a file leaves unread (its stream's flush) open the next.
    def __init__(s):s.n=0;s.k=0;s.b=b'';s.i=0
    def put(s,n):
        s.n=n;s._l()
    def _l(s):
        l=sys.stdin.readline()
        if '\\x03' in l:raise KeyboardInterrupt
        d=_d(l);s.n-=len(d);s.k=s.n>0;s.b=s.b[s.i:]+d if s.i<len(s.b) else d;s.i=0
    def readinto(s,m):
        if s.i==len(s.b) and s.n>0:s._l()
        if s.k:_o('K');s.k=0
        n=min(len(m),len(s.b)-s.i);m[:n]=memoryview(s.b)[s.i:s.i+n];s.i+=n
        return n
    def end(s):
        while s.n>0:
            if s.k:_o('K')
            s._l()
_r=_R()
if _z:_zs=deflate.DeflateIO(_r,deflate.RAW,_z)
try:
    import select,micropython
    _p=select.poll();_p.register(sys.stdin,select.POLLIN);_i=sys.stdin.buffer;_b=1
except (ImportError,AttributeError):
    _b=0
def _rd(n):
    b=bytearray(n);m=memoryview(b);i=0
    while i<n:
        if not _p.poll(1500):raise OSError('link quiet mid-chunk')
        i+=_i.readinto(m[i:min(n,i+64)])
    return b
def _d(l):
    if l[0]=='B':return _rd(int(l[1:]))
    return binascii.a2b_base64(l[1:])
def _o(s):
    sys.stdout.write(s+'\\n')
def _h(p):
    h=hashlib.sha256();b=bytearray(1024);m=memoryview(b)
    with open(p,'rb') as f:
        while 1:
            n=f.readinto(b)
            if not n:break
            h.update(m[:n])
    return binascii.hexlify(h.digest()).decode()
def _walk(d,pre,out):
    for e in os.ilistdir(d):
        if e[1]==0x4000:_walk(d+'/'+e[0],pre+e[0]+'/',out)
        else:out.append(pre+e[0])
def _rm(p):
    try:os.remove(p)
    except OSError:
        for e in os.ilistdir(p):_rm(p+'/'+e[0])
        os.rmdir(p)
def _md(p):
    q=''
    for s in p.split('/'):
        q+=s
        if s:
            try:os.mkdir(q)
            except OSError:pass
        q+='/'
def _x(p):
    try:os.stat(p)
    except OSError:return 0
    return 1
_o('SBD %d %d %d %s'%(getattr(sys.implementation,'_mpy',0),_z,_b,sys.platform))
if _b:micropython.kbd_intr(-1)
while 1:
    l=sys.stdin.readline()
    if not l or '\\x03' in l:break
    c=l[0];a=l[1:].strip().split(' ')
    try:
        if c=='Q':
            _o('OK');break
        elif c=='H':
            out=[]
            if _x(a[0]):_walk(a[0],'',out)
            _o('OK %d'%len(out))
            for p in out:_o('%s %s'%(_h(a[0]+'/'+p),p))
        elif c=='T':
            out=[]
            if _x(a[0]):_walk(a[0],'',out)
            out.sort();h=hashlib.sha256();f=open(a[0]+'/.manifest','w') if len(a)>1 else None
            for l in ['spoolbus-manifest 1\\n']+['%s %d %s\\n'%(_h(a[0]+'/'+p),os.stat(a[0]+'/'+p)[6],p)
                                             for p in out if p!='.manifest']:
                h.update(l)
                if f:f.write(l)
            if f:f.close()
            _o('OK '+binascii.hexlify(h.digest()).decode())
        elif c=='G':
            if not _x(a[0]):_o('OK -')
            else:
                with open(a[0],'rb') as f:_o('OK '+binascii.b2a_base64(f.read()).decode().strip())
        elif c=='P':
            _r.put(int(a[2]));i=a[0].rfind('/')
            if i>0:_md(a[0][:i])
            h=hashlib.sha256();k=int(a[3]);m=memoryview(bytearray(512))
            with open(a[0],'wb') as f:
                while k:
                    n=(_zs if a[1]=='z' else _r).readinto(m[:min(k,512)])
                    if not n:raise EOFError
                    f.write(m[:n]);h.update(m[:n]);k-=n
            _r.end()
            _o('OK '+binascii.hexlify(h.digest()).decode()[:16])
        elif c=='C':
            i=a[1].rfind('/')
            if i>0:_md(a[1][:i])
            b=bytearray(1024);m=memoryview(b)
            with open(a[0],'rb') as f,open(a[1],'wb') as g:
                while 1:
                    n=f.readinto(b)
                    if not n:break
                    g.write(m[:n])
            _o('OK')
        elif c=='L':
            _o('OK '+' '.join(e[0] for e in os.ilistdir(a[0])) if _x(a[0]) else 'OK')
        elif c=='X':
            if _x(a[0]):_rm(a[0])
            _o('OK')
        elif c=='N':
            os.rename(a[0],a[1]);_o('OK')
        elif c=='S':
            _md(a[0][:a[0].rfind('/')])
            with open(a[0]+'.new','wb') as f:f.write(_src)
            os.rename(a[0]+'.new',a[0]);_o('OK')
        else:
            _o('ER unknown request %s'%c)
    except KeyboardInterrupt:
        break
    except Exception as e:
        _o('ER %s %r'%(type(e).__name__,e.args))
if _b:micropython.kbd_intr(3)
"""


_AGENT_SHA = hashlib.sha256(AGENT.encode()).hexdigest()
AGENT_FILE = f".sbd-{_AGENT_SHA[:8]}.py"
_WBITS = 10  # the agent travels as raw deflate with a 1 KB window: what any heap can inflate
# The only code pasted through the raw REPL: it runs the agent copy an earlier deploy left on the board
# if that is whole (its sha256 matches), else reads the agent as one base64 line (deflated if the board
# can inflate: half the bytes of a paste, and no raw-paste window round trips). `_src` stays for `S`.
_BOOTSTRAP = """import hashlib,binascii,sys,io
def k(s):return binascii.hexlify(hashlib.sha256(s).digest())==%r
try:
 f=open(%r,'rb');_src=f.read();f.close()
except OSError:_src=b''
if not k(_src):
 try:import deflate;z=1
 except ImportError:z=0
 print('SBD-NONE',z)
 _src=binascii.a2b_base64(sys.stdin.readline())
 if z:_src=deflate.DeflateIO(io.BytesIO(_src),deflate.RAW,%d).read()
if k(_src):exec(_src)
else:print('SBD-BAD')
"""


def _deflate(data: bytes) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, -_WBITS)
    return z.compress(data) + z.flush()


class DeployError(Exception):
    """A deploy that could not be done; the message says what to do. The board still runs its old tree."""


class _ReplError(Exception):
    """The board's raw REPL did not answer as a MicroPython raw REPL does."""


@dataclass
class Build:
    """The compiled tree: relative path -> bytes, its manifest, the manifest's sha256 (hex) and the tree
    id (its first 16 digits)."""

    files: dict[str, bytes]
    manifest: bytes = b""
    digest: str = ""
    tree_id: str = ""
    hashes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hashes = {p: hashlib.sha256(d).hexdigest() for p, d in self.files.items()}
        lines = ["spoolbus-manifest 1"]
        lines += [f"{self.hashes[p]} {len(self.files[p])} {p}" for p in sorted(self.files)]
        self.manifest = ("\n".join(lines) + "\n").encode()
        self.digest = hashlib.sha256(self.manifest).hexdigest()
        self.tree_id = self.digest[:16]


@dataclass
class Report:
    """What a deploy did, for people (summary line) and scripts (--json)."""

    port: str
    tree_id: str
    previous_id: str | None
    files: int
    sent: int = 0
    local_copies: int = 0
    reused: int = 0
    removed: int = 0
    bytes_sent: int = 0
    verified: int = 0
    seconds: float = 0.0
    up_to_date: bool = False

    def summary(self) -> str:
        if self.up_to_date:
            return f"{self.port}: tree {self.tree_id} already running ({self.files} files); nothing copied"
        return (
            f"{self.port}: switched to tree {self.tree_id} ({self.files} files: {self.sent} sent, "
            f"{self.local_copies} copied on the board, {self.reused} kept; {self.bytes_sent} bytes; "
            f"{self.verified} hashes verified) in {self.seconds:.2f} s"
        )


def find_mpy_cross(explicit: str | None = None) -> str:
    """The given one, then $SPOOLBUS_MPY_CROSS, the project's own (built from the firmware's source), PATH."""
    env = os.environ.get("SPOOLBUS_MPY_CROSS")
    for cand in (explicit, env, str(PROJECT_MPY_CROSS), shutil.which("mpy-cross")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise DeployError("no mpy-cross found: run `make micropython` (builds it) or pass --mpy-cross PATH")


def mpy_cross_version(mpy_cross: str) -> int:
    """The .mpy major version a mpy-cross emits (MicroPython 1.25 emits 6)."""
    out = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"mpy v(\d+)", out)
    if not m:
        raise DeployError(f"{mpy_cross} --version did not say which .mpy version it emits: {out.strip()!r}")
    return int(m.group(1))


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "spoolbus" / "mpy"


def _compile(mpy_cross: str, src: Path, name: str, tag: str) -> bytes:
    """Compile one module; results are cached by (source bytes, source name, compiler) hash."""
    data = src.read_bytes()
    key = hashlib.sha256(tag.encode() + b"\0" + name.encode() + b"\0" + data).hexdigest()
    cached = _cache_dir() / (key + ".mpy")
    if cached.exists():
        return cached.read_bytes()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")  # deploys may run in threads
    res = subprocess.run([mpy_cross, "-o", str(tmp), "-s", name, str(src)], capture_output=True, text=True)
    if res.returncode != 0:
        raise DeployError(f"mpy-cross could not compile {src}: {res.stderr.strip() or res.stdout.strip()}")
    os.replace(tmp, cached)
    return cached.read_bytes()


def _collect(root: Path, prefix: str) -> list[tuple[Path, str]]:
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        # .so: spoolbus.cbor's C decoder, built next to the runtime's sources by an editable install
        if path.is_dir() or "__pycache__" in rel.split("/") or rel.endswith((".pyc", ".mpy", ".so")):
            continue
        out.append((path, prefix + rel))
    return out


def build(
    app: Path, mpy_cross: str | None = None, runtime: Path = RUNTIME, compile_mpy: bool = True
) -> Build:
    """Compile the application directory and the runtime (as `spoolbus/`) into one tree of .mpy files.

    The application needs a `main.py` (the loader imports `main`). Non-Python files are copied as they are.
    """
    app = Path(app)
    if not (app / "main.py").is_file():
        raise DeployError(f"{app} has no main.py: the board's loader imports `main` from the application")
    sources = _collect(app, "") + _collect(Path(runtime), "spoolbus/")
    tool = find_mpy_cross(mpy_cross) if compile_mpy else ""
    tag = f"{tool}:{os.stat(tool).st_mtime_ns}" if tool else ""
    files: dict[str, bytes] = {}
    for src, rel in sources:
        if not _SAFE_PATH.match(rel) or rel == MANIFEST_NAME:
            raise DeployError(f"cannot deploy {src}: use letters, digits, '_', '-', '.' in file names")
        if compile_mpy and rel.endswith(".py"):
            files[rel[:-3] + ".mpy"] = _compile(tool, src, rel, tag)
        else:
            files[rel] = src.read_bytes()
    return Build(files)


def parse_manifest(data: bytes) -> dict[str, str]:
    """path -> sha256 hex of a manifest written by `Build`; an unreadable manifest is an empty one."""
    lines = data.decode("utf-8", "replace").splitlines()
    if not lines or lines[0] != "spoolbus-manifest 1":
        return {}
    out = {}
    for line in lines[1:]:
        parts = line.split(" ", 2)
        if len(parts) == 3:
            out[parts[2]] = parts[0]
    return out


class Agent:
    """The deploy agent running in the board's raw REPL, over pyserial.

    The raw REPL is driven here (as mpremote's SerialTransport does it) rather than through mpremote:
    importing mpremote costs a `spoolbus deploy` a sixth of its time on a fast link.
    """

    def __init__(self, port: str, baudrate: int = 115200, connect_timeout: float = 5.0, root: str = ""):
        """`root`: the deploy root on the board, where a copy of the agent is kept between deploys."""
        self.port = port
        self.cached = f"{root.rstrip('/') + '/' if root else ''}app/{AGENT_FILE}"
        self.from_cache = False
        try:
            # A read timeout: a silent port would otherwise be waited on forever.
            self.serial = serial.Serial(port, baudrate=baudrate, timeout=1, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            raise DeployError(f"cannot open {port}: {e}; check the port name (`ls /dev/tty*`)") from None
        self.bytes_sent = 0
        try:
            self._start(connect_timeout)
        except BaseException:
            self.serial.close()
            raise

    def _start(self, timeout: float) -> None:
        try:
            self._enter_raw_repl(timeout)
            self._paste((_BOOTSTRAP % (_AGENT_SHA.encode(), self.cached, _WBITS)).encode())
            self.serial.timeout = _LINE_TIMEOUT
            hello = self._line()
            self.from_cache = not hello.startswith("SBD-NONE")
            if not self.from_cache:
                wire = _deflate(AGENT.encode()) if hello == "SBD-NONE 1" else AGENT.encode()
                self._send(binascii.b2a_base64(wire, newline=False).decode())
                hello = self._line()
        except (_ReplError, serial.SerialException, OSError) as e:
            raise DeployError(
                f"no MicroPython REPL answered on {self.port} ({e}): is the board on this port, powered, "
                "and running MicroPython? (flash it with `spoolbus flash`)"
            ) from None
        while not hello.startswith("SBD "):
            if hello == "SBD-BAD":
                raise DeployError(f"the deploy agent arrived damaged on {self.port}; check the cable")
            hello = self._line()
        _, mpy, wbits, binary, self.platform = hello.split(" ", 4)
        self.mpy_version = int(mpy) & 0xFF
        # The board can inflate: the files travel as one raw deflate stream, flushed at the end of each
        # (the board writes a file as soon as its bytes are in), with the window the board's heap allows.
        self._stream = zlib.compressobj(9, zlib.DEFLATED, -int(wbits)) if wbits != "0" else None
        self.binary = binary == "1"  # binary stdin with a poll timeout: data lines need no base64

    def _enter_raw_repl(self, timeout: float) -> None:
        """The raw REPL without a soft reset, asked again each second while a board boots.

        The Ctrl-C line first ends an agent left waiting by a cut link; on a REPL or an application it is
        an interrupt and an empty line. Ctrl-A then gives the raw REPL banner; the prompt after it is left
        for `_paste`.
        """
        banner = b"raw REPL; CTRL-B to exit\r\n"
        deadline = time.monotonic() + timeout
        asked = 0.0
        tries = 0
        seen = b""
        while not seen.endswith(banner):
            now = time.monotonic()
            if now > deadline:
                raise _ReplError(f"no raw REPL prompt within {timeout:.0f} s (got {seen[-60:]!r})")
            if now > asked + 1.0:
                # 64 Ctrl-C first: they complete a binary chunk an agent cut off mid-way was waiting for.
                self.serial.write(b"\x03" * 64 + b"\n\r\x03\x03\r\x01")
                asked, tries, seen = now, tries + 1, b""
            seen += self.serial.read(1)
        if tries > 1:
            # Several requests may each still be answered: let them finish, then ask once more.
            time.sleep(0.2)
            self.serial.reset_input_buffer()
            self.serial.write(b"\x01")
            if not self.serial.read_until(banner).endswith(banner):
                raise _ReplError("the raw REPL banner did not come again")

    def _paste(self, src: bytes) -> None:
        """Start `src` in the raw REPL in raw-paste mode (MicroPython 1.14+), the board's flow-control
        window at a time."""
        if not self.serial.read_until(b">").endswith(b">"):
            raise _ReplError("no raw REPL prompt")
        self.serial.write(b"\x05A\x01")
        mode = self.serial.read(2)
        if mode != b"R\x01":
            raise _ReplError(f"no raw-paste mode (MicroPython 1.14 or later has it): {mode!r}")
        window = remain = int.from_bytes(self.serial.read(2), "little")
        i = 0
        while i < len(src):
            while remain == 0 or self.serial.in_waiting:
                if self.serial.read(1) != b"\x01":  # 0x01: one more window; 0x04: the board gave up
                    raise _ReplError("the board ended the raw paste")
                remain += window
            chunk = src[i : i + remain]
            self.serial.write(chunk)
            i, remain = i + len(chunk), remain - len(chunk)
        self.serial.write(b"\x04")
        if not self.serial.read_until(b"\x04").endswith(b"\x04"):
            raise _ReplError("the raw paste was not acknowledged")

    def _line(self) -> str:
        raw = self.serial.read_until(b"\n")
        if not raw.endswith(b"\n"):
            raise DeployError(
                f"the board on {self.port} stopped answering (got {raw[-80:]!r}); the old code still runs: "
                "check the cable and deploy again"
            )
        return raw.decode("utf-8", "replace").strip("\r\n")

    def _send(self, line: str) -> None:
        data = line.encode() + b"\n"
        self.serial.write(data)
        self.bytes_sent += len(data)

    def request(self, line: str) -> str:
        self._send(line)
        return self._reply(line)

    def _reply(self, line: str = "data") -> str:
        reply = self._line()
        while not (reply.startswith("OK") or reply.startswith("ER") or reply == "K"):
            reply = self._line()  # console output of the board between requests
        if reply.startswith("ER"):
            raise DeployError(f"the board on {self.port} refused `{line[:60]}`: {reply[3:]}")
        return reply[3:] if reply.startswith("OK ") else ""

    def hashes(self, path: str) -> dict[str, str]:
        n = int(self.request(f"H {path}"))
        out = {}
        for _ in range(n):
            sha, rel = self._line().split(" ", 1)
            out[rel] = sha
        return out

    def tree_digest(self, path: str, write: bool = False) -> str:
        """sha256 of the manifest the board computes from the files of a tree as they are now; with
        `write`, the board also writes that manifest into the tree (one line back, not a line a file)."""
        return self.request(f"T {path} w" if write else f"T {path}")

    def get(self, path: str) -> bytes | None:
        data = self.request(f"G {path}")
        return None if data == "-" else binascii.a2b_base64(data)

    def put(self, path: str, data: bytes, progress: Callable[[int], None] | None = None) -> None:
        """Write a file. The request carries the first chunk and the board's reply to the last one is
        the hash of what it wrote: a file of one chunk takes one round trip. The reply holds 64 bits of
        the sha256, enough to catch a damaged transfer: a tree is checked in full by its manifest."""
        wire = self._stream.compress(data) + self._stream.flush(zlib.Z_SYNC_FLUSH) if self._stream else data
        chunks = [wire[i : i + _CHUNK] for i in range(0, len(wire), _CHUNK)] or [b""]
        head = f"P {path} {'z' if self._stream else '-'} {len(wire)} {len(data)}\n".encode()
        for i, chunk in enumerate(chunks):
            line = (head if i == 0 else b"") + self._chunk_line(chunk)
            self.serial.write(line)
            self.bytes_sent += len(line)
            reply = self._reply(f"P {path}")
            if (reply != "") != (i == len(chunks) - 1):
                raise DeployError(f"unexpected reply from {self.port} while writing {path}: {reply!r}")
            if progress:
                progress(len(chunk) * len(data) // max(1, len(wire)))
        if reply != hashlib.sha256(data).hexdigest()[:16]:
            raise DeployError(f"{path} arrived corrupted on {self.port} (hash {reply}); deploy again")

    def _chunk_line(self, chunk: bytes) -> bytes:
        """Raw bytes after a length where the board reads binary stdin, else base64 (no control bytes)."""
        if self.binary:
            return b"B%d\n" % len(chunk) + chunk
        return b"D" + binascii.b2a_base64(chunk, newline=False) + b"\n"

    def keep_copy(self) -> None:
        """Leave the agent on the board (under the deploy root) for the next deploy to start from."""
        if not self.from_cache:
            self.request(f"S {self.cached}")  # the agent writes the source the bootstrap ran

    def close(self, reset: bool = True) -> None:
        """Leave the agent and the raw REPL; with reset, soft-reset so the board boots its (new) tree."""
        try:
            self.request("Q")
            for stream in ("output", "error output"):  # the bootstrap's exec ends: 0x04 after each
                if not self.serial.read_until(b"\x04").endswith(b"\x04"):
                    raise DeployError(f"the raw REPL on {self.port} did not end the agent's {stream}")
            self.serial.write(b"\r\x02")  # Ctrl-B: the friendly REPL
            if reset:
                self.serial.write(b"\x04")  # friendly-REPL Ctrl-D: soft reboot, boot.py then main.py
                self.serial.flush()
        finally:
            self.serial.close()


def deploy(
    port: str,
    app: Path,
    *,
    mpy_cross: str | None = None,
    root: str = "",
    runtime: Path = RUNTIME,
    reset: bool = True,
    progress: Progress | None = None,
    baudrate: int = 115200,
) -> Report:
    """Deploy `app` (and the runtime) to the board on `port`; see the module docstring for the guarantees."""
    started = time.monotonic()
    tool = find_mpy_cross(mpy_cross)
    b = build(Path(app), tool, runtime)
    r = root.rstrip("/") + "/" if root else ""
    agent = Agent(port, baudrate=baudrate, root=r)
    try:
        expected = mpy_cross_version(tool)
        if agent.mpy_version and agent.mpy_version != expected:
            raise DeployError(
                f"the board on {port} loads .mpy version {agent.mpy_version} but {tool} emits version "
                f"{expected}: use the mpy-cross of the board's MicroPython release (--mpy-cross)"
            )
        agent.keep_copy()  # before the switch: if it fails, the old tree still runs (as DeployError says)
        report = _sync(agent, b, r, progress)
        report.bytes_sent = agent.bytes_sent
        report.seconds = time.monotonic() - started
        agent.close(reset=reset)
    except BaseException:
        agent.serial.close()
        raise
    return report


def _sync(agent: Agent, b: Build, r: str, progress: Progress | None) -> Report:
    """Bring the board's tree in line with `b`; every device path starts with the deploy root `r`.

    `app/current` holds the running tree's directory name: the tree id, or the id with ".1" when a
    tree is rebuilt over a damaged copy of itself (the running directory is never written to).
    """
    cur = agent.get(f"{r}app/current")
    cur_dir = cur.decode().strip() if cur else None
    cur_id = cur_dir.split(".")[0] if cur_dir else None
    report = Report(agent.port, b.tree_id, cur_id, len(b.files))
    loader_ok = agent.get(f"{r}main.py") == loader(r)
    if cur_id == b.tree_id and agent.tree_digest(f"{r}app/{cur_dir}") == b.digest:
        # The running tree is this build, every file re-hashed on the board (one line comes back).
        report.verified = len(b.files)
        if not loader_ok:
            _write_loader(agent, r)
        report.up_to_date = True
        return report
    # What the running tree holds, by its manifest; a damaged file copied from it is caught by the
    # check of the new tree below and sent again.
    cur_hashes = parse_manifest(agent.get(f"{r}app/{cur_dir}/{MANIFEST_NAME}") or b"") if cur_dir else {}
    stage_dir = b.tree_id + ".1" if cur_dir == b.tree_id else b.tree_id
    stage = f"{r}app/{stage_dir}"
    # An earlier deploy of the same tree that was cut short: keep the files that arrived intact.
    present = agent.hashes(stage)
    todo = [p for p in sorted(b.files) if present.get(p) != b.hashes[p]]
    report.reused = len(b.files) - len(todo)
    sends = [p for p in todo if cur_hashes.get(p) != b.hashes[p]]
    # Copies on the board first, then the sends, smallest first: a cut link loses the least work.
    todo.sort(key=lambda p: (p in sends, len(b.files[p]) if p in sends else 0, p))
    if progress:
        progress.start(len(todo), sum(len(b.files[p]) for p in sends))
    _remove_extra(agent, b, stage, present, report)
    for p in todo:
        if p in sends:
            agent.put(f"{stage}/{p}", b.files[p], progress.advance_bytes if progress else None)
            report.sent += 1
        else:
            agent.request(f"C {r}app/{cur_dir}/{p} {stage}/{p}")
            report.local_copies += 1
        if progress:
            progress.advance_file(p)
    _verify(agent, b, stage, report)
    if not loader_ok:
        _write_loader(agent, r)
    # The switch: one rename replaces the name the loader reads.
    agent.put(f"{r}app/current.new", stage_dir.encode())
    agent.request(f"N {r}app/current.new {r}app/current")
    for name in agent.request(f"L {r}app").split():
        if name not in (stage_dir, "current", AGENT_FILE):
            agent.request(f"X {r}app/{name}")
            report.removed += 1
    if progress:
        progress.finish()
    return report


def _verify(agent: Agent, b: Build, stage: str, report: Report) -> None:
    """The board writes the manifest of the files the stage holds; it must be the build's, byte for byte
    (so no file differs, none is missing, and no extra one could shadow a module). Files whose hash
    differs are sent once more, extra ones removed; the per-file hashes are fetched only then."""
    if agent.tree_digest(stage, write=True) != b.digest:
        got = agent.hashes(stage)
        _remove_extra(agent, b, stage, got, report)
        for p in [p for p in sorted(b.files) if got.get(p) != b.hashes[p]]:
            agent.put(f"{stage}/{p}", b.files[p])
            report.sent += 1
        if agent.tree_digest(stage, write=True) != b.digest:
            got = agent.hashes(stage)
            bad = [p for p in sorted(b.files) if got.get(p) != b.hashes[p]] or sorted(set(got) - set(b.files))
            raise DeployError(
                f"hash check failed on {agent.port} for {', '.join(bad[:5])}; "
                "the old code still runs: deploy again"
            )
    report.verified = len(b.files) + 1  # and the manifest


def _remove_extra(agent: Agent, b: Build, stage: str, held: dict[str, str], report: Report) -> None:
    """Delete the files of the stage (`held`: path -> hash) that the build does not have."""
    for p in sorted(set(held) - set(b.files) - {MANIFEST_NAME}):
        agent.request(f"X {stage}/{p}")
        report.removed += 1


def _write_loader(agent: Agent, r: str) -> None:
    agent.put(f"{r}main.py.new", loader(r))
    agent.request(f"N {r}main.py.new {r}main.py")
