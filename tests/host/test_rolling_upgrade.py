"""Rolling upgrade across processes: an old MicroPython server with a new CPython client, and a new
MicroPython server with an old client (API versions in the manner of oslo.messaging).
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest
from spoolbus import contract, errors, node
from spoolbus.transport.spool import SpoolTransport

ROOT = pathlib.Path(__file__).resolve().parents[2]
MICROPYTHON = os.environ.get("SPOOLBUS_MICROPYTHON", str(ROOT / ".cache/micropython-1.25.0/bin/micropython"))

SERVER = """
import sys
from spoolbus import contract, node
from spoolbus.transport.spool import SpoolTransport

new = sys.argv[2] == "new"
svc = contract.Service("sensor", "1.1" if new else "1.0")
if new:
    svc.method("read", ("channel", str), ("unit", str, "C", "1.1"))
    svc.method("calibrate", ("offset", float), since="1.1")
else:
    svc.method("read", ("channel", str))


class Sensor:
    def read(self, channel, unit="C"):
        return [channel, unit]

    def calibrate(self, offset):
        return offset


nd = node.Node("sensor", SpoolTransport(sys.argv[1], "sensor"))
nd.serve(svc, Sensor())
print("ready")
while True:
    nd.poll(50)
"""

OLD = contract.Service("sensor", "1.0").method("read", ("channel", str))
NEW = contract.Service("sensor", "1.1")
NEW.method("read", ("channel", str), ("unit", str, "C", "1.1"))
NEW.method("calibrate", ("offset", float), since="1.1")


@pytest.fixture
def server(tmp_path):
    procs = []

    def start(version: str) -> node.Node:
        script = tmp_path / "server.py"
        script.write_text(SERVER)
        p = subprocess.Popen([MICROPYTHON, str(script), str(tmp_path / "spool"), version], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=dict(os.environ, MICROPYPATH=f"{ROOT}/runtime"))
        procs.append(p)
        assert p.stdout.readline().strip() == "ready"
        return node.Node("host", SpoolTransport(str(tmp_path / "spool"), "host"), timeout=5)

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_new_client_talks_to_an_old_server_within_the_old_api(server):
    host = server("old")
    client = host.client("sensor", NEW)
    assert client.call("read", {"channel": "t0"}) == ["t0", "C"]  # needs only 1.0: sent as 1.0
    with pytest.raises(errors.RemoteError) as e:  # not told the server's version yet: the server refuses
        client.call("read", {"channel": "t0", "unit": "F"})
    assert e.value.type == "unsupported_version" and "1.0" in e.value.message
    assert host.hello("sensor") == 1
    host.poll(2000)
    assert host.peer_version("sensor", "sensor") == "1.0"
    assert client.can_send_version("1.0") and not client.can_send_version("1.1")
    with pytest.raises(errors.UnsupportedVersion):  # now refused before sending
        client.call("calibrate", {"offset": 0.5})
    capped = host.client("sensor", NEW, version_cap="1.0")
    with pytest.raises(errors.UnsupportedVersion):
        capped.call("read", {"channel": "t0", "unit": "F"})
    assert capped.call("read", {"channel": "t1"}) == ["t1", "C"]


def test_old_client_talks_to_a_new_server(server):
    host = server("new")
    client = host.client("sensor", OLD)
    assert client.call("read", {"channel": "t0"}) == ["t0", "C"]
    assert host.call("sensor", "sensor.read", {"channel": "t2"}, version="1.0") == ["t2", "C"]
    new_client = host.client("sensor", NEW)
    assert new_client.call("read", {"channel": "t3", "unit": "K"}) == ["t3", "K"]
    assert new_client.call("calibrate", {"offset": 2}) == 2.0
    with pytest.raises(errors.RemoteError) as e:
        host.call("sensor", "sensor.read", {"channel": "t0"}, version="2.0")
    assert e.value.type == "unsupported_version"
