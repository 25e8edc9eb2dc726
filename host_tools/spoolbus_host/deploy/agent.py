"""The host side of the deploy agent: starts deploy/board/agent.py in a board's raw REPL and speaks its
line protocol (hash, manifest, get, put, copy, list, remove, rename), one reply line a request.

The agent travels once (deflated where the board can inflate) and stays on the board for the next
deploy; every file written is checked by its hash in the reply, and a cut link leaves the board's old
tree running. A request the board refuses, or a silence, raises DeployError.
"""

from __future__ import annotations

import binascii
import hashlib
import zlib
from collections.abc import Callable

import serial

from spoolbus_host.deploy import rawrepl
from spoolbus_host.deploy.build import DeployError, board_source

_CHUNK = 2048  # bytes of file data a line (base64); one acknowledgement a line keeps any UART buffer safe
_LINE_TIMEOUT = 5.0  # seconds without a reply line before the board counts as gone

AGENT = board_source("agent")
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


class Agent:
    """The deploy agent running in the board's raw REPL, over pyserial.

    The raw REPL is driven by deploy/rawrepl.py rather than through mpremote, which a deploy would
    otherwise have to import (bench/bench_deploy.py times a deploy against `mpremote cp -r`).
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
            rawrepl.enter(self.serial, timeout)
            rawrepl.paste(self.serial, (_BOOTSTRAP % (_AGENT_SHA.encode(), self.cached, _WBITS)).encode())
            self.serial.timeout = _LINE_TIMEOUT
            hello = self._line()
            self.from_cache = not hello.startswith("SBD-NONE")
            if not self.from_cache:
                wire = _deflate(AGENT.encode()) if hello == "SBD-NONE 1" else AGENT.encode()
                self._send(binascii.b2a_base64(wire, newline=False).decode())
                hello = self._line()
        except (rawrepl.ReplError, serial.SerialException, OSError) as e:
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
            rawrepl.leave(self.serial, reset)
        except rawrepl.ReplError as e:
            raise DeployError(f"{self.port}: {e}") from None
        finally:
            self.serial.close()
