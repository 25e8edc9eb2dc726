"""A MicroPython unix-port process running a test script with the spoolbus runtime on its path.

The script talks to the test through lines: it prints results, the test writes commands to stdin.
"""

from __future__ import annotations

import os
import pathlib
import select
import selectors
import subprocess
import textwrap
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
MICROPYTHON = os.environ.get("SPOOLBUS_MICROPYTHON", str(ROOT / ".cache/micropython-1.25.0/bin/micropython"))
MPY_CROSS = os.environ.get("SPOOLBUS_MPY_CROSS", str(pathlib.Path(MICROPYTHON).with_name("mpy-cross")))


def compile_mpy(dest: pathlib.Path, *modules: str) -> str:
    """mpy-cross the given runtime modules ("errors", "transport/mqtt", ...) into dest; returns dest."""
    for rel in ("__init__", *modules):
        out = dest / "spoolbus" / f"{rel}.mpy"
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([MPY_CROSS, "-o", str(out), "-s", f"spoolbus/{rel}.py",
                        str(ROOT / "runtime" / "spoolbus" / f"{rel}.py")],
                       check=True)
    return str(dest)


class MicroPython:
    def __init__(self, tmp_path: pathlib.Path, script: str, *args: object, heap: str | None = None,
                 path: str | None = None):
        """`heap`: -X heapsize (e.g. "48k"); `path`: MICROPYPATH (default: the runtime sources)."""
        script_file = tmp_path / f"mp_{id(self)}.py"
        script_file.write_text(textwrap.dedent(script))
        cmd = [MICROPYTHON] + (["-X", f"heapsize={heap}"] if heap else []) + [str(script_file)]
        env = dict(os.environ, MICROPYPATH=path or f"{ROOT}/runtime:.frozen")
        self.proc = subprocess.Popen(cmd + [str(a) for a in args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self._pending = b""
        self.output: list[str] = []

    def line(self, timeout: float = 10.0) -> str:
        """The next line the script printed (raises AssertionError with its output on timeout/exit)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(left):
                raise AssertionError(f"no line from MicroPython in {timeout} s; output: {self.output}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"MicroPython exited ({self.proc.wait()}); output: {self.output}"
                                     f" {self._pending!r}")
            self._pending += chunk
        text, _, self._pending = self._pending.partition(b"\n")
        self.output.append(text.decode(errors="replace"))
        return self.output[-1]

    def expect(self, prefix: str, timeout: float = 10.0) -> str:
        """Read lines until one starts with `prefix`; return the rest of it."""
        while True:
            got = self.line(timeout)
            if got.startswith(prefix):
                return got[len(prefix):].strip()

    def send(self, text: str) -> None:
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = 10.0) -> int:
        rc = self.proc.wait(timeout)
        rest = self.proc.stdout.read()
        if rest:
            self.output.extend(rest.decode(errors="replace").splitlines())
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class PipePort:
    """The host end of a device's serial line: the device process's stdin and stdout (looked up on each
    read, so that a subclass may start the process again)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def read_into(self, buf: bytearray, timeout_ms: int) -> int:
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], timeout_ms / 1000)[0]:
            return 0
        data = os.read(fd, len(buf))
        buf[: len(data)] = data
        return len(data)

    def write(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
