"""A real RabbitMQ cluster of MQTT brokers on loopback, for tests that take a broker node away.

RabbitMQ needs what mosquitto doesn't: each node is an Erlang VM with a node name, a distribution port
and its own data and log directories; the nodes find each other through an Erlang port mapper (epmd)
and trust each other through a shared cookie; the second and later nodes are joined to the first; and
MQTT is a plugin with its own listener. Everything here is private to the cluster's directory and to
127.0.0.1: its own HOME (for the cookie), its own epmd on a port of its own, no AMQP listener, so two
clusters (or a system RabbitMQ) on one machine do not meet. Sessions are quorum queues, replicated on
every node, so a client whose node died gets its session back from another node.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from spoolbus_host.mqtt.broker import free_port

SBIN = pathlib.Path("/usr/lib/rabbitmq/bin")  # rabbitmq-server here keeps our HOME; /usr/sbin's switches user
EPMD = shutil.which("epmd") or "/usr/bin/epmd"
INSTALL = "install it with scripts/setup.sh (Debian's rabbitmq-server)"
LOOPBACK_ONLY = "-kernel inet_dist_use_interface {127,0,0,1}"


class RabbitCluster:
    """`nodes` RabbitMQ nodes named rabbit1@localhost..., clustered, each with an MQTT listener.

    `addresses[i]` is node i's (host, port) for MQTT clients; `kill(i)` takes node i away as a crash
    would (SIGKILL, no will published), `restart(i)` brings it back into the cluster; `stop()` ends every
    process the cluster started. `start_seconds` is how long start() took.
    """

    def __init__(self, directory: pathlib.Path, nodes: int = 3):
        self.dir = pathlib.Path(directory)
        self.host = "127.0.0.1"
        self.names = [f"rabbit{i + 1}@localhost" for i in range(nodes)]
        self.addresses = [(self.host, free_port()) for _ in range(nodes)]
        self.start_seconds = 0.0
        self._epmd_port = free_port()
        self._dist_ports = [free_port() for _ in range(nodes)]
        self._epmd: subprocess.Popen | None = None
        self._procs: list[subprocess.Popen | None] = [None] * nodes
        self._log_offsets = [0] * nodes
        home = self.dir / "home"
        self._env = dict(os.environ, HOME=str(home), ERL_EPMD_PORT=str(self._epmd_port),
                         RABBITMQ_CTL_ERL_ARGS=LOOPBACK_ONLY, ERL_CRASH_DUMP=str(self.dir / "erl_crash.dump"),
                         # Any free port for the command-line tools' own Erlang node.
                         RABBITMQ_CTL_DIST_PORT_MIN="0", RABBITMQ_CTL_DIST_PORT_MAX="0",
                         RABBITMQ_CONF_ENV_FILE=str(self.dir / "rabbitmq-env.conf"))  # not /etc's
        for i in range(nodes):
            self._write_config(i)
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16))
            cookie.chmod(0o400)  # Erlang refuses a cookie that others can read

    def start(self, timeout: float = 60.0) -> RabbitCluster:
        """Boot every node at once, then join the others to the first (stop_app, join, start_app)."""
        if not (SBIN / "rabbitmq-server").exists():
            raise RuntimeError(f"RabbitMQ is not installed ({SBIN}/rabbitmq-server is missing): {INSTALL}")
        began = time.monotonic()
        self._epmd = subprocess.Popen([EPMD, "-port", str(self._epmd_port), "-address", "127.0.0.1"],
                                      env=self._env, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._await_listening(self._epmd_port, 5.0, "epmd")
            for i in range(len(self.names)):
                self._boot(i)
            with ThreadPoolExecutor(len(self.names)) as pool:
                list(pool.map(lambda i: self._await_startup(i, timeout), range(len(self.names))))
            for i in range(1, len(self.names)):
                for step in (["stop_app"], ["join_cluster", self.names[0]], ["start_app"]):
                    self.ctl(i, *step, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def kill(self, i: int) -> None:
        """SIGKILL node i: its shell wrapper, the Erlang VM and the VM's helpers (erl_child_setup and
        inet_gethost, each in a session of its own), all at once, as a crash of the machine would."""
        self._kill([i])

    def _kill(self, nodes: list[int]) -> None:
        """SIGKILL these nodes at once, then wait for all of them: a VM takes ~1.5 s to exit."""
        pids = []
        for i in nodes:
            proc = self._procs[i]
            if proc is not None:
                pids += _descendants(proc.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for i in nodes:
            if self._procs[i] is not None:
                self._procs[i].wait()
                self._procs[i] = None
        _await_gone(pids)

    def restart(self, i: int, timeout: float = 60.0) -> None:
        """Boot node i again: its data directory still names the cluster, so it rejoins by itself."""
        self.kill(i)
        self._boot(i)
        self._await_startup(i, timeout)

    def stop(self) -> None:
        self._kill(list(range(len(self._procs))))
        if self._epmd is not None:
            self._epmd.kill()
            self._epmd.wait()
            self._epmd = None

    def _log_excerpt(self, i: int, chars: int = 2500) -> str:
        """Node i's log since its last boot, from its first error on (the cause; what follows it is the
        report of a failed boot, then the shutdown)."""
        with open(self._node_dir(i) / "console.log", "rb") as log:
            log.seek(self._log_offsets[i])
            text = log.read().decode(errors="replace")
        first = text.find("[error]")
        return text[text.rfind("\n", 0, first) + 1:][:chars] if first >= 0 else text[-chars:]

    def _node_dir(self, i: int) -> pathlib.Path:
        return self.dir / f"rabbit{i + 1}"

    def _write_config(self, i: int) -> None:
        d = self._node_dir(i)
        d.mkdir(parents=True, exist_ok=True)
        (d / "rabbitmq.conf").write_text("\n".join([
            "listeners.tcp = none",  # MQTT clients only: no AMQP port to allocate
            f"mqtt.listeners.tcp.default = {self.host}:{self.addresses[i][1]}",
            "mqtt.allow_anonymous = true",
            "mqtt.durable_queue_type = quorum",  # sessions survive the death of the node that held them
            "mqtt.subscription_ttl = infinity",  # a session offline for a day is kept (the default drops it)
            "log.file = false",
            "log.console = true",  # into console.log, with whatever the VM prints before logging starts
            "log.console.use_colors = off",
            "",
        ]))
        (d / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")

    def _node_env(self, i: int) -> dict[str, str]:
        d = self._node_dir(i)
        return dict(self._env, RABBITMQ_NODENAME=self.names[i], RABBITMQ_DIST_PORT=str(self._dist_ports[i]),
                    RABBITMQ_MNESIA_BASE=str(d / "mnesia"), RABBITMQ_LOG_BASE=str(d / "log"),
                    RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"), ERL_CRASH_DUMP=str(d / "erl_crash.dump"),
                    RABBITMQ_ADVANCED_CONFIG_FILE=str(d / "advanced.config"),
                    RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
                    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=f"{LOOPBACK_ONLY} -start_epmd false")

    def _boot(self, i: int) -> None:
        with open(self._node_dir(i) / "console.log", "ab") as log:
            self._log_offsets[i] = log.tell()
            # Its own session, as mosquitto's: a Ctrl-C in the terminal goes to the program that owns
            # the cluster, which stops it.
            self._procs[i] = subprocess.Popen([str(SBIN / "rabbitmq-server")], env=self._node_env(i),
                                              stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                              start_new_session=True)

    def _await_startup(self, i: int, timeout: float) -> None:
        """Wait for node i to finish booting; what its log says if it died or did not boot in time.

        await_startup fails at once while the node is not yet known to epmd, so it is asked again."""
        deadline = time.monotonic() + timeout
        while True:
            ctl = subprocess.Popen([str(SBIN / "rabbitmqctl"), "-n", self.names[i], "await_startup",
                                    "--timeout", str(int(timeout))], env=self._env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            while ctl.poll() is None and self._alive(i) and time.monotonic() < deadline:
                time.sleep(0.1)
            if ctl.returncode == 0:
                return
            if ctl.returncode is None:
                ctl.kill()
            said = ctl.communicate()[0].decode(errors="replace").strip().splitlines()[-1:]
            if not self._alive(i) or time.monotonic() >= deadline:
                why = "exited" if not self._alive(i) else f"did not boot in {timeout:.0f} s ({said})"
                raise RuntimeError(f"RabbitMQ node {self.names[i]} {why}:\n{self._log_excerpt(i)}\n"
                                   f"fix: see {self._node_dir(i)}/console.log (eaddrinuse: a port was taken "
                                   "by another process, run again)")
            time.sleep(0.2)

    def _alive(self, i: int) -> bool:
        proc = self._procs[i]
        return proc is not None and proc.poll() is None

    def ctl(self, i: int, *args: str, timeout: float = 60.0) -> str:
        """rabbitmqctl on node i (e.g. "cluster_status", "list_queues"); its output."""
        r = subprocess.run([str(SBIN / "rabbitmqctl"), "-n", self.names[i], *args], env=self._env,
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.names[i]} failed: "
                               f"{(r.stdout + r.stderr).strip()}\n{self._log_excerpt(i)}")
        return r.stdout

    def _await_listening(self, port: int, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"{what} did not listen on {self.host}:{port} in {timeout:.0f} s")


def _descendants(root: int) -> list[int]:
    """root and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            pid, rest = stat.read_text().split(" ", 1)
            children.setdefault(int(rest.rsplit(")", 1)[1].split()[1]), []).append(int(pid))
    found = [root]
    for pid in found:
        found += children.get(pid, [])
    return found


def _await_gone(pids: list[int], timeout: float = 5.0) -> None:
    """Until every one of pids (SIGKILLed) has exited and been reaped."""
    deadline = time.monotonic() + timeout
    while left := [p for p in pids if pathlib.Path(f"/proc/{p}").exists()]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {left} still there {timeout:.0f} s after SIGKILL")
        time.sleep(0.02)
