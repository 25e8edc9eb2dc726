"""Two bridges on one mosquitto, each with a MicroPython device on a serial link (pipes): calls cross."""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import textwrap
import threading
import time

import pytest
from mosquitto import Broker, free_port
from mpproc import MICROPYTHON, ROOT, PipePort
from spoolbus import errors, wire
from spoolbus.transport.serial import SerialTransport
from spoolbus_host.bridge.gateway import Bridge

DEVICE = """
import sys, time
from spoolbus import contract, errors
from spoolbus.node import Node
from spoolbus.transport.serial import UP, SerialTransport, StreamPort
NAME = sys.argv[1]
THERMO = contract.Service("thermo", "1.0")
THERMO.method("read", ("sensor", str))

class Thermo:
    def read(self, sensor):
        return {"sensor": sensor, "at": NAME}

link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name=NAME)
# A call sent before the link is up may be lost on the way; it is resent with the same id (at most once).
node = Node(NAME, link, retry_s=0.5)
node.serve(THERMO, Thermo())
link.open()
greeted = False
targets = sys.argv[2:]
while True:
    try:
        node.poll(50)
        if not greeted and link.state == UP:
            node.hello(NAME.split("/")[0])  # to the bridge: it records the services in its registry
            greeted = True
        while targets:
            got = node.call(targets[0], "thermo.read", {"sensor": NAME}, timeout=4, retries=6)
            sys.stderr.write("CALLED %s %s %s\\n" % (targets[0], got["at"], got["sensor"]))
            targets.pop(0)
    except errors.LinkError:
        pass
    except errors.Timeout:
        sys.stderr.write("TIMEOUT %s\\n" % targets[0])
"""


def device(tmp_path, bridge: str, name: str, *targets: str) -> tuple[subprocess.Popen, SerialTransport]:
    # One script per device: rewriting a shared one could truncate it under a device still starting.
    script = tmp_path / f"device-{bridge}-{name}.py"
    script.write_text(textwrap.dedent(DEVICE))
    proc = subprocess.Popen([MICROPYTHON, str(script), f"{bridge}/{name}", *targets], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen"))
    link = SerialTransport(PipePort(proc), name=bridge)
    link.open()
    return proc, link


def reports(proc: subprocess.Popen, want: int, timeout: float = 20) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    fd = proc.stderr.fileno()
    buf = b""
    while len(lines) < want and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines += [d.decode() for d in done if d.startswith((b"CALLED", b"TIMEOUT", b"Traceback"))
                      or b"Error" in d]
    return lines


@pytest.fixture
def running(tmp_path):
    bridges: list[Bridge] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(b: Bridge) -> Bridge:
        bridges.append(b)
        t = threading.Thread(target=b.run, args=(stop,), daemon=True)
        t.start()
        threads.append(t)
        return b

    yield start
    stop.set()
    for t in threads:
        t.join(5)
    for b in bridges:
        b.close()


def test_a_device_on_bridge_a_calls_a_device_on_bridge_b_through_the_broker(tmp_path, mosquitto, running):
    a = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox-a"))
    b = Bridge("B", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox-b"))
    thermo, thermo_link = device(tmp_path, "B", "thermo")
    b.attach("thermo", thermo_link)
    running(b)
    deadline = time.monotonic() + 10
    while not (a.uplink and b.uplink) and time.monotonic() < deadline:
        time.sleep(0.02)
    sensor, sensor_link = device(tmp_path, "A", "sensor", "B/thermo", "A/sensor")
    a.attach("sensor", sensor_link)
    running(a)
    got = reports(sensor, 2)
    assert got == ["CALLED B/thermo B/thermo A/sensor", "CALLED A/sensor A/sensor A/sensor"], (
        got, dict(a.stats), dict(b.stats), a.online, b.online, a.uplink, b.uplink,
        f"thermo exit status {thermo.poll()}")  # what to look at if not
    deadline = time.monotonic() + 2
    while a.stats["local"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # the bridge thread counts right after it delivers
    assert a.stats["uplink"] >= 1 and a.stats["local"] >= 2  # the self-call never left bridge A
    assert b.online == {"thermo"} and a.online == {"sensor"}


def test_calls_cross_two_mosquitto_brokers_joined_by_a_mosquitto_bridge(tmp_path, running):
    east = Broker(tmp_path / "east").start()
    west = Broker(tmp_path / "west", extra="\n".join([
        "connection east", f"address 127.0.0.1:{east.port}", "topic spoolbus/# both 1",
        "cleansession false", "restart_timeout 1"])).start()
    try:
        deadline = time.monotonic() + 10
        while "Connecting bridge" not in west.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        a = Bridge("A", "127.0.0.1", west.port, str(tmp_path / "outbox-a"))
        b = Bridge("B", "127.0.0.1", east.port, str(tmp_path / "outbox-b"))
        thermo, thermo_link = device(tmp_path, "B", "thermo")
        b.attach("thermo", thermo_link)
        running(b)
        while not (a.uplink and b.uplink) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the brokers' bridge carries B's subscription over
        sensor, sensor_link = device(tmp_path, "A", "sensor", "B/thermo")
        a.attach("sensor", sensor_link)
        running(a)
        assert reports(sensor, 1) == ["CALLED B/thermo B/thermo A/sensor"]
        deadline = time.monotonic() + 2
        while b.stats["uplink"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # B counts its reply right after publishing it
        assert a.stats["uplink"] >= 1 and b.stats["uplink"] >= 1
    finally:
        west.stop()
        east.stop()


def test_a_restarted_bridge_forwards_what_its_predecessor_left_in_the_outbox(tmp_path):
    port = free_port()
    first = Bridge("A", "127.0.0.1", port, str(tmp_path / "outbox"))  # no broker yet: all goes to the outbox
    link = _Fake()
    first.attach("dev", link)
    link.inbox += [cast("A/dev", "B/sink", i) for i in range(10)]
    first.step(0)
    assert first.backlog == 10
    first.client.loop_stop()  # the process dies here: nothing is closed or flushed
    broker = Broker(tmp_path / "broker", port=port).start()
    sub, got = sink_subscriber(port)
    second = Bridge("A", "127.0.0.1", port, str(tmp_path / "outbox"))
    try:
        assert second.backlog == 10
        deadline = time.monotonic() + 10
        while (len(got) < 10 or second.backlog) and time.monotonic() < deadline:
            second.step(10)  # the outbox is acked as the PUBACKs come, maybe after the subscriber got all
        assert got == list(range(10)) and second.backlog == 0
    finally:
        sub.loop_stop()
        second.close()
        broker.stop()


def test_devices_on_one_bridge_reach_each_other_with_the_broker_down(tmp_path, mosquitto, running):
    a = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox"))
    mosquitto.stop()
    thermo, thermo_link = device(tmp_path, "A", "thermo")
    a.attach("thermo", thermo_link)
    sensor, sensor_link = device(tmp_path, "A", "sensor", "A/thermo")
    a.attach("sensor", sensor_link)
    running(a)
    assert reports(sensor, 1) == ["CALLED A/thermo A/thermo A/sensor"]
    assert wait_for(lambda: a.stats["local"] == 2, 5)  # counted just after the reply was handed over
    assert a.stats["uplink"] == 0 and a.stats["spooled"] == 0


def test_a_device_cannot_speak_as_another(tmp_path, mosquitto, running):
    a = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox"))
    link = _Fake()
    a.attach("honest", link)
    forged = wire.encode(wire.Envelope(kind=wire.CAST, id=1, src="A/other", dst="B/x", method="s.m",
                                       version="1.0", body={}))
    link.inbox += [forged, b"\xffgarbage"]
    a.step(0)
    assert a.stats["spoofed"] == 1 and a.stats["malformed"] == 1 and a.stats["uplink"] == 0
    a.close()


def test_a_flooding_device_does_not_starve_the_others(tmp_path, mosquitto, caplog):
    a = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox"))
    flood, quiet, sink = _Fake(), _Fake(), _Fake()
    a.attach("flood", flood)
    a.attach("quiet", quiet)
    a.attach("sink", sink)
    junk = wire.encode(wire.Envelope(kind=wire.CAST, id=1, src="A/flood", dst="A/nowhere", method="s.m",
                                     version="1.0", body={}))
    flood.inbox += [junk] * 5000
    quiet.inbox.append(wire.encode(wire.Envelope(kind=wire.CAST, id=1, src="A/quiet", dst="A/sink",
                                                 method="s.m", version="1.0", body={"hi": 1})))
    with caplog.at_level(logging.WARNING, logger="spoolbus.bridge"):
        a.step(0)
        a.step(0)
    assert len(sink.sent) == 1 and len(flood.inbox) == 5000 - 32
    assert a.stats["throttled"] == 2  # once a pass, logged once a minute
    assert [r.getMessage() for r in caplog.records if "throttled" in r.getMessage()] == [
        "A/flood: sends more than 16 messages a pass: throttled (logged once a minute)"]
    a.close()


def test_a_device_with_a_key_must_sign_what_it_sends(tmp_path, mosquitto):
    from spoolbus import auth

    a = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox"), keys={"A/keyed": b"k1"})
    keyed, sink = _Fake(), _Fake()
    a.attach("keyed", keyed)
    a.attach("sink", sink)

    def env(counter: int, key: bytes | None) -> bytes:
        e = wire.Envelope(kind=wire.CAST, id=counter, src="A/keyed", dst="A/sink", method="s.m",
                          version="1.0", body={}, seq=[7, counter])
        if key:
            auth.Auth("A/keyed", {"A/keyed": key}).sign(e)
        return wire.encode(e)

    keyed.inbox += [env(1, None), env(2, b"wrong"), env(3, b"k1"), env(3, b"k1")]
    a.step(0)
    assert (a.stats["unsigned"], a.stats["forged"], a.stats["replayed"], a.stats["local"]) == (1, 1, 1, 1)
    assert len(sink.sent) == 1
    a.close()


def test_messages_wait_in_the_outbox_while_the_broker_is_down_and_go_in_order(tmp_path, mosquitto):
    a = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox"))
    link = _Fake()
    a.attach("dev", link)
    deadline = time.monotonic() + 5
    while not a.uplink and time.monotonic() < deadline:
        time.sleep(0.02)
    mosquitto.stop()
    while a.uplink and time.monotonic() < deadline + 5:
        time.sleep(0.02)
    link.inbox += [cast("A/dev", "B/sink", i) for i in range(20)]
    a.step(0)
    a.step(0)
    assert a.stats["spooled"] == 20 and len(a.outbox) == 20 == a.backlog
    mosquitto.start()
    sub, got = sink_subscriber(mosquitto.port)
    time.sleep(0.3)
    deadline = time.monotonic() + 15
    while (len(got) < 20 or a.backlog) and time.monotonic() < deadline:
        a.step(10)
    sub.loop_stop()
    a.close()
    assert got == list(range(20)) and a.stats["forwarded"] == 20 and len(a.outbox) == 0 == a.backlog


class _Fake:
    """A link whose device is the test: `inbox` is what the device sends, `sent` what it received."""

    def __init__(self):
        self.inbox: list[bytes] = []
        self.sent: list[bytes] = []
        self.down = False

    def send(self, dst, data):
        if self.down:
            raise errors.LinkDown("the test took the link down")
        self.sent.append(data)

    def recv(self, timeout_ms=0):
        return self.inbox.pop(0) if self.inbox else None

    def close(self):
        pass


def test_spoolbus_bridge_command_serves_a_device_on_a_pty(tmp_path, mosquitto):
    import signal
    import sys
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)  # no echo: the device must not read its own frames back
    script = tmp_path / "device.py"
    script.write_text(textwrap.dedent(DEVICE))
    env = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen")
    dev = subprocess.Popen([MICROPYTHON, str(script), "G/thermo"], stdin=master, stdout=master,
                           stderr=subprocess.PIPE, env=env)
    broker = f"127.0.0.1:{mosquitto.port}"
    bridge = subprocess.Popen([sys.executable, "-m", "spoolbus_host.cli", "bridge", "G", "--serial",
                               f"thermo={os.ttyname(slave)}", "--outbox", str(tmp_path / "outbox"),
                               "--broker", broker, "--json",
                               "--registry", str(tmp_path / "reg.db")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        reply = None
        deadline = time.monotonic() + 20
        while reply is None and time.monotonic() < deadline:
            r = subprocess.run([sys.executable, "-m", "spoolbus_host.cli", "call", "G/thermo", "thermo.read",
                                "sensor=cli", "--broker", broker, "--json", "--timeout", "2"],
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                reply = json.loads(r.stdout)["reply"]
        assert reply == {"sensor": "cli", "at": "G/thermo"}
        bridge.send_signal(signal.SIGTERM)
        out, err = bridge.communicate(timeout=10)
        assert bridge.returncode == 0, err
        counters = json.loads(out.splitlines()[-1])
        assert counters["uplink"] >= 1 and counters["hellos"] == 1
        devices = [sys.executable, "-m", "spoolbus_host.cli", "devices", "--db"]
        r = subprocess.run([*devices, str(tmp_path / "reg.db"), "--json"], capture_output=True, text=True)
        [row] = json.loads(r.stdout)
        assert (row["node"], row["bridge"], row["link"]) == ("G/thermo", "G", os.ttyname(slave))
        assert row["services"] == {"thermo": "1.0"} and row["online"] is False  # the bridge has stopped
        r = subprocess.run([*devices, str(tmp_path / "no.db")], capture_output=True, text=True)
        assert r.returncode == 2 and "cannot open registry" in r.stderr
        r = subprocess.run([sys.executable, "-m", "spoolbus_host.cli", "bridge", "G", "--outbox",
                            str(tmp_path / "o2"), "--broker", broker], capture_output=True, text=True)
        assert r.returncode == 2 and "--serial DEVICE=PORT" in r.stderr
    finally:
        bridge.kill()
        dev.kill()
        dev.wait()
        os.close(master)
        os.close(slave)


# Issue 7 asks for 30 s; the suite uses 3 s to stay fast: SPOOLBUS_OUTAGE_S=30 runs the long one.
OUTAGE_S = float(os.environ.get("SPOOLBUS_OUTAGE_S", "3"))

COUNTER = """
import sys, time
from spoolbus import contract, errors
from spoolbus.node import Node
from spoolbus.transport.serial import SerialTransport, StreamPort
NAME = sys.argv[1]
LOG = contract.Service("log", "1.0")
LOG.method("add", ("seq", int))

class Log:
    seen = []
    def add(self, seq):
        self.seen.append(seq)
        return len(self.seen)

link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name=NAME)
node = Node(NAME, link, retries=200, retry_s=0.5)
impl = Log()
node.serve(LOG, impl)
link.open()
target = sys.argv[2] if len(sys.argv) > 2 else None
seq = 0
while True:
    try:
        node.poll(20)
        if target and seq < 40:
            node.call(target, "log.add", {"seq": seq}, timeout=120)
            seq += 1
            sys.stderr.write("DONE %d\\n" % seq)
        elif not target and len(impl.seen) >= 40:
            sys.stderr.write("SEEN %s\\n" % ",".join(str(s) for s in impl.seen))
            impl.seen = []
    except errors.LinkError:
        pass
    except errors.Timeout:
        sys.stderr.write("TIMEOUT %d\\n" % seq)
"""


def test_calls_through_a_broker_outage_complete_once_each_and_in_order(tmp_path, mosquitto, running):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox-a"))
    b = Bridge("B", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox-b"))
    env = dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen")
    plan = ((tmp_path / "b", b, "log", ()), (tmp_path / "a", a, "caller", ("B/log",)))
    for tmp, bridge, name, args in plan:
        script = tmp / "device.py"
        script.write_text(textwrap.dedent(COUNTER))
        proc = subprocess.Popen([MICROPYTHON, str(script), f"{bridge.name}/{name}", *args], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        link = SerialTransport(PipePort(proc), name=bridge.name)
        link.open()
        bridge.attach(name, link)
        if name == "log":
            log_proc = proc
            running(bridge)
            deadline = time.monotonic() + 10
            while not bridge.uplink and time.monotonic() < deadline:
                time.sleep(0.02)
        else:
            caller = proc
            running(bridge)
    fd = caller.stderr.fileno()
    buf = b""
    deadline = time.monotonic() + 10
    while b"DONE 10\n" not in buf and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            buf += os.read(fd, 4096)
    assert b"DONE 10\n" in buf, buf
    mosquitto.stop()  # mid-traffic: both bridges spool, the caller's node retries
    time.sleep(OUTAGE_S)
    mosquitto.start()
    seen = reports_seen(log_proc, 60 + OUTAGE_S)
    assert seen == list(range(40)), seen  # each call executed once, in order
    assert a.stats["spooled"] + b.stats["spooled"] >= 1


def reports_seen(proc: subprocess.Popen, timeout: float) -> list[int]:
    fd = proc.stderr.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while b"SEEN" not in buf and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            buf += os.read(fd, 65536)
    line = next((ln for ln in buf.split(b"\n") if ln.startswith(b"SEEN ")), b"")
    return [int(x) for x in line[5:].split(b",")] if line else [buf.decode(errors="replace")[-500:]]


SPOOL_DEVICE = """
import sys
from spoolbus import contract, errors
from spoolbus.node import Node
from spoolbus.transport.spool import SpoolTransport
ROOT, NAME = sys.argv[1], sys.argv[2]
GATEWAY = NAME.split("/")[0] + "/_bridge"
THERMO = contract.Service("thermo", "1.0")
THERMO.method("read", ("sensor", str))

class Thermo:
    def read(self, sensor):
        return {"sensor": sensor, "at": NAME}

node = Node(NAME, SpoolTransport(ROOT, NAME, gateway=GATEWAY, poll_ms=5))
node.serve(THERMO, Thermo())
node.hello(GATEWAY)
targets = sys.argv[3:]
while True:
    try:
        node.poll(50)
        while targets:
            got = node.call(targets[0], "thermo.read", {"sensor": NAME}, timeout=4, retries=6)
            sys.stderr.write("CALLED %s %s %s\\n" % (targets[0], got["at"], got["sensor"]))
            targets.pop(0)
    except errors.Timeout:
        sys.stderr.write("TIMEOUT %s\\n" % targets[0])
"""


def spool_device(tmp_path, root, name: str, *targets: str) -> subprocess.Popen:
    """A MicroPython process: node `name` on spool directory `root`, its bridge as gateway."""
    script = tmp_path / f"spool_device-{name.replace('/', '-')}.py"  # one each: see device()
    script.write_text(textwrap.dedent(SPOOL_DEVICE))
    return subprocess.Popen([MICROPYTHON, str(script), str(root), name, *targets], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen"))


def wait_for(check, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)
    return check()


@pytest.fixture
def processes():
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def test_spool_devices_on_bridge_a_call_a_spool_device_on_bridge_b_through_the_broker(
        tmp_path, mosquitto, running, processes):
    a = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox-a"))
    b = Bridge("B", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox-b"))
    a.attach_spool(str(tmp_path / "spool-a"))
    b.attach_spool(str(tmp_path / "spool-b"))
    running(a)
    running(b)
    processes.append(spool_device(tmp_path, tmp_path / "spool-b", "B/thermo"))
    assert wait_for(lambda: a.uplink and b.uplink and b.stats["hellos"] == 1)
    one = spool_device(tmp_path, tmp_path / "spool-a", "A/one", "B/thermo", "A/two")
    two = spool_device(tmp_path, tmp_path / "spool-a", "A/two", "B/thermo")
    processes += [one, two]
    assert reports(one, 2) == ["CALLED B/thermo B/thermo A/one", "CALLED A/two A/two A/one"]
    assert reports(two, 1) == ["CALLED B/thermo B/thermo A/two"]
    assert wait_for(lambda: b.stats["uplink"] >= 2)  # the replies, counted right after publishing
    assert a.stats["uplink"] == 2 and a.stats["spoofed"] == b.stats["spoofed"] == 0
    assert a.online == {"one", "two"} and b.online == {"thermo"}
    assert a.links["one"].spool.root == str(tmp_path / "spool-a")


def test_a_spool_device_and_a_serial_device_talk_locally_with_the_broker_down(
        tmp_path, mosquitto, running, processes):
    from spoolbus_host.bridge.registry import Registry

    a = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox"),
               registry=Registry(str(tmp_path / "reg.db")))
    mosquitto.stop()
    a.attach_spool(str(tmp_path / "spool"))
    processes.append(spool_device(tmp_path, tmp_path / "spool", "A/spooled", "A/serial"))
    serial_proc, serial_link = device(tmp_path, "A", "serial", "A/spooled")
    processes.append(serial_proc)
    a.attach("serial", serial_link)
    running(a)
    assert reports(processes[0], 1) == ["CALLED A/serial A/serial A/spooled"]
    assert reports(serial_proc, 1) == ["CALLED A/spooled A/spooled A/serial"]
    assert wait_for(lambda: a.stats["local"] >= 4)
    assert a.stats["uplink"] == 0 and a.stats["spooled"] == 0 and a.stats["hellos"] == 2
    rows = {r["node"]: r for r in a.registry.devices()}
    assert rows["A/spooled"]["link"] == str(tmp_path / "spool") and rows["A/spooled"]["online"]
    assert rows["A/spooled"]["services"] == {"thermo": "1.0"}
    assert rows["A/spooled"]["firmware"].startswith("micropython 1.25.0 (")  # from the hello


FORGER = """
import sys
from spoolbus import errors, wire
from spoolbus.transport.spool import SpoolTransport
link = SpoolTransport(sys.argv[1], "A/evil", gateway="A/_bridge")
for i, src in enumerate(sys.argv[2:]):
    link.send("A/sink", wire.encode(wire.Envelope(kind=wire.CAST, id=i + 1, src=src, dst="A/sink",
                                                  method="s.m", version="1.0", body={"i": i})))
"""


def test_a_spool_process_cannot_speak_as_a_device_of_another_link(tmp_path):
    a = Bridge("A", "127.0.0.1", free_port(), str(tmp_path / "outbox"))  # no broker: all is local
    try:
        a.attach_spool(str(tmp_path / "spool"))
        a.attach_spool(str(tmp_path / "other"))
        from spoolbus.transport.spool import SpoolTransport

        SpoolTransport(str(tmp_path / "other"), "A/elsewhere")
        sink = _Fake()
        a.attach("sink", sink)
        script = tmp_path / "forger.py"
        script.write_text(textwrap.dedent(FORGER))
        claims = ["A/sink", "A/elsewhere", "B/thermo", "A/ghost", "A/_bridge", "A/evil"]
        subprocess.run([MICROPYTHON, str(script), str(tmp_path / "spool"), *claims], check=True, timeout=20,
                       env=dict(os.environ, MICROPYPATH=f"{ROOT}/runtime:.frozen"))
        a.step(0)
        assert a.stats["spoofed"] == 5 and a.stats["local"] == 1
        assert [wire.decode(m).src for m in sink.sent] == ["A/evil"]
        assert a.online == {"evil"}
    finally:
        a.close()


def cast(src: str, dst: str, i: int) -> bytes:
    return wire.encode(wire.Envelope(kind=wire.CAST, id=i + 1, src=src, dst=dst, method="s.m", version="1.0",
                                     body={"i": i}))


def sink_subscriber(port: int) -> tuple[object, list[int]]:
    """A started paho subscriber to B/sink's inbox, and the list that gets the "i" of each message's body."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[int] = []
    sub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    sub.on_message = lambda c, u, m: got.append(wire.decode(m.payload).body["i"])
    sub.connect("127.0.0.1", port)
    sub.subscribe("spoolbus/B/sink/inbox", 1)
    sub.loop_start()
    return sub, got


def publisher(port: int):
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    pub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    return pub


def test_bad_input_from_the_broker_is_logged_counted_and_dropped(tmp_path, mosquitto, caplog):
    a = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox"), max_message=1024)
    dev = _Fake()
    a.attach("dev", dev)
    assert wait_for(lambda: a.uplink)
    a.client.subscribe("spoolbus/A/+/junk", 1)  # as a session left from an older configuration would
    pub = publisher(mosquitto.port)
    with caplog.at_level(logging.WARNING, logger="spoolbus.bridge"):
        for topic, payload in [("spoolbus/A/dev/inbox", b"\xffnot cbor"),
                               ("spoolbus/A/dev/inbox", cast("B/x", "A/dev", 0) + b"\x00" * 2000),
                               ("spoolbus/A//inbox", cast("B/x", "A/", 0)),
                               ("spoolbus/A/dev/junk", cast("B/x", "A/dev", 0)),
                               ("spoolbus/A/ghost/inbox", cast("B/x", "A/ghost", 0)),
                               ("spoolbus/A/dev/inbox", cast("B/x", "A/dev", 7))]:
            pub.publish(topic, payload, qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while not dev.sent and time.monotonic() < deadline:
            a.step(5)
    pub.loop_stop()
    a.close()
    assert [wire.decode(m).body for m in dev.sent] == [{"i": 7}]  # the bridge kept serving
    counts = {k: a.stats[k] for k in ("malformed_in", "oversized_in", "bad_topic", "unroutable_in")}
    assert counts == {"malformed_in": 1, "oversized_in": 1, "bad_topic": 2, "unroutable_in": 1}
    logged = " | ".join(r.getMessage() for r in caplog.records)
    for says in ("malformed message on spoolbus/A/dev/inbox", "more than 1024", "'spoolbus/A//inbox' dropped",
                 "'spoolbus/A/dev/junk' dropped: not spoolbus/A/<device>/inbox", "no such device"):
        assert says in logged


def test_a_message_the_link_cannot_take_is_held_and_written_when_it_can(tmp_path, mosquitto):
    first = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox"))
    dev = _Fake()
    dev.down = True
    first.attach("dev", dev)
    assert wait_for(lambda: first.uplink)
    pub = publisher(mosquitto.port)
    for i in range(5):
        pub.publish("spoolbus/A/dev/inbox", cast("B/x", "A/dev", i), qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 10
    while first.held["dev"] < 5 and time.monotonic() < deadline:
        first.step(5)
    assert first.held["dev"] == 5 and first.stats["link_send_failed"] >= 1  # acked: now the bridge's
    time.sleep(0.5)  # paho sends the PUBACKs (before that the broker would deliver again: QoS 1)
    first.client.loop_stop()  # the bridge dies here; what it acknowledged is in <outbox>.held/dev
    second = Bridge("A", "127.0.0.1", mosquitto.port, str(tmp_path / "outbox"))
    second.attach("dev", dev)
    try:
        assert second.held["dev"] == 5
        deadline = time.monotonic() + 10
        while len(dev.sent) < 5 and time.monotonic() < deadline:
            second.step(5)
            dev.down = time.monotonic() < deadline - 9.5  # up again after half a second
        assert [wire.decode(m).body["i"] for m in dev.sent] == list(range(5))  # each once, in order
        assert second.held["dev"] == 0
    finally:
        pub.loop_stop()
        second.close()


ACL = ROOT / "examples" / "mosquitto" / "spoolbus.acl"
USERS = {"gw": "pgw", "A": "pa", "B": "pb", "host": "ph", "monitor": "pm"}


def watcher(port: int, ca, topics: str = "spoolbus/#"):
    """A plain paho subscriber (user monitor, TLS): returns (client, {topic: last payload})."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    last: dict[str, bytes] = {}
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    c.username_pw_set("monitor", "pm")
    c.tls_set(ca_certs=str(ca))
    c.on_message = lambda cl, u, m: last.__setitem__(m.topic, m.payload)
    c.connect("127.0.0.1", port)
    c.subscribe(topics, 1)
    c.loop_start()
    return c, last


def test_spoolbus_bridge_with_a_password_tls_and_the_example_acl(tmp_path, processes):
    import signal
    import sys

    from mosquitto import make_certs

    ca, cert, key = make_certs(tmp_path / "certs")
    broker = Broker(tmp_path / "secure", users=USERS, tls=(ca, cert, key), extra=f"acl_file {ACL}").start()
    conf = tmp_path / "bridge.toml"
    conf.write_text(f'name = "gw"\nbroker = "127.0.0.1:{broker.port}"\nuser = "gw"\npassword = "pgw"\n'
                    f'outbox = "{tmp_path / "outbox"}"\nspools = ["{tmp_path / "spool"}"]\n'
                    f'[tls]\nca = "{ca}"\n')
    bridge = subprocess.Popen([sys.executable, "-m", "spoolbus_host.cli", "bridge", "--config", str(conf)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch, last = watcher(broker.port, ca)
    try:
        processes.append(spool_device(tmp_path, tmp_path / "spool", "gw/thermo"))
        assert wait_for(lambda: last.get("spoolbus/gw/thermo/status") == b"online"), bridge.stderr
        # The device's status may come first: the bridge publishes its own once its subscription is acked.
        assert wait_for(lambda: last.get("spoolbus/gw/_bridge/status") == b"online"), last
        call = [sys.executable, "-m", "spoolbus_host.cli", "call", "gw/thermo", "thermo.read", "sensor=cli",
                "--broker", f"127.0.0.1:{broker.port}", "--user", "host", "--password", "ph", "--ca", str(ca),
                "--json", "--timeout", "5"]
        r = subprocess.run(call, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["reply"] == {"sensor": "cli", "at": "gw/thermo"}
        r = subprocess.run([a if a != "ph" else "wrong" for a in call], capture_output=True, text=True)
        assert r.returncode == 3  # the broker refuses a wrong password
        bridge.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker publishes the bridge's last will
        assert wait_for(lambda: last.get("spoolbus/gw/_bridge/status") == b"offline")
        watch.loop_stop()
        fresh, retained = watcher(broker.port, ca, "spoolbus/gw/+/status")  # what a newcomer reads
        assert wait_for(lambda: len(retained) == 2, 5)
        assert retained == {"spoolbus/gw/_bridge/status": b"offline", "spoolbus/gw/thermo/status": b"online"}
        fresh.loop_stop()
    finally:
        bridge.kill()
        bridge.wait()
        watch.loop_stop()
        broker.stop()


def test_under_the_example_acl_a_bridge_serves_its_devices_but_cannot_publish_as_another(tmp_path):
    from mosquitto import make_certs

    ca, cert, key = make_certs(tmp_path / "certs")
    broker = Broker(tmp_path / "secure", users=USERS, tls=(ca, cert, key), extra=f"acl_file {ACL}").start()
    tls = {"ca_certs": str(ca)}
    a = Bridge("A", "127.0.0.1", broker.port, str(tmp_path / "oa"), user="A", password="pa", tls=tls)
    b = Bridge("B", "127.0.0.1", broker.port, str(tmp_path / "ob"), user="B", password="pb", tls=tls)
    dev, sink = _Fake(), _Fake()
    a.attach("dev", dev)
    b.attach("sink", sink)
    watch, last = watcher(broker.port, ca)
    try:
        assert wait_for(lambda: a.uplink and b.uplink)
        dev.inbox.append(cast("A/dev", "B/sink", 0))
        sink.inbox.append(cast("B/sink", "A/dev", 1))
        deadline = time.monotonic() + 10
        while not (dev.sent and sink.sent) and time.monotonic() < deadline:
            a.step(5)
            b.step(5)
        assert [wire.decode(m).body for m in sink.sent + dev.sent] == [{"i": 0}, {"i": 1}]
        forged = [("spoolbus/B/sink/status", b"offline"), ("spoolbus/B/_bridge/status", b"offline"),
                  ("spoolbus/B/sink/events/alarm", b"forged")]
        for topic, payload in forged:
            a.client.publish(topic, payload, qos=1).wait_for_publish(5)  # acknowledged, then dropped
        a.client.publish("spoolbus/A/dev/events/alarm", b"own", qos=1).wait_for_publish(5)
        assert wait_for(lambda: "spoolbus/A/dev/events/alarm" in last, 5)
        assert last["spoolbus/B/sink/status"] == last["spoolbus/B/_bridge/status"] == b"online"
        assert "spoolbus/B/sink/events/alarm" not in last
        assert last["spoolbus/A/dev/status"] == last["spoolbus/A/_bridge/status"] == b"online"
    finally:
        watch.loop_stop()
        a.close()
        b.close()
        broker.stop()


def test_a_device_over_its_outbox_quota_loses_its_own_messages_not_the_others_room(tmp_path, caplog):
    a = Bridge("A", "127.0.0.1", free_port(), str(tmp_path / "outbox"), outbox_messages=100, device_quota=10)
    flood, quiet = _Fake(), _Fake()
    a.attach("flood", flood)
    a.attach("quiet", quiet)
    try:
        flood.inbox += [cast("A/flood", "B/sink", i) for i in range(30)]
        quiet.inbox += [cast("A/quiet", "B/sink", i) for i in range(5)]
        with caplog.at_level(logging.WARNING, logger="spoolbus.bridge"):
            for _ in range(3):
                a.step(0)  # no broker: everything for B goes to the outbox
        assert (a.stats["spooled"], a.stats["quota"], a.backlog) == (15, 20, 15)
        assert a.outbox.queued == {"flood": 10, "quiet": 5}
        quota_lines = [r.getMessage() for r in caplog.records if "quota" in r.getMessage()]
        assert quota_lines == ["A/flood: has 10 messages in the outbox, its quota: more are dropped "
                               "(logged once a minute)"]
    finally:
        a.close()
