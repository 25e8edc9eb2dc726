"""A real mosquitto broker on a free local port, for the demo, tests and benchmarks.

Start it with Broker(dir).start(); stop() and start() again keep the port and (with persistence) the
sessions, so a test can take the broker away and bring it back.
"""

from __future__ import annotations

import getpass
import pathlib
import shutil
import signal
import socket
import subprocess
import time

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One mosquitto process; `users` maps user names to passwords and turns anonymous access off."""

    def __init__(self, directory: pathlib.Path, users: dict[str, str] | None = None,
                 persistence: bool = False, port: int | None = None, extra: str = "",
                 tls: tuple[pathlib.Path, pathlib.Path, pathlib.Path] | None = None):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen | None = None
        # Started as root, mosquitto would drop to user "mosquitto" and lose access to this directory.
        lines = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}"]
        if users:
            pwfile = self.dir / "passwd"
            pwfile.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            pwfile.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(pwfile)], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [f"cafile {tls[0]}", f"certfile {tls[1]}", f"keyfile {tls[2]}"]
        if persistence:
            lines += ["persistence true", f"persistence_location {self.dir}/", "autosave_interval 1"]
        lines.append(extra)
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = self.dir / "mosquitto.log"

    def start(self, timeout: float = 5.0) -> Broker:
        with open(self.log, "ab") as log:
            # Its own session: a Ctrl-C in the terminal goes to the program that owns the broker, which
            # stops it when it is done with it (the demo, after its bridge said goodbye).
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection((self.host, self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence database and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
