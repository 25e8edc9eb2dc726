"""`spoolbus call`, `cast` and `monitor` against a MicroPython node on a real mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys

import paho.mqtt.client as paho
import pytest
from mosquitto import free_port
from mpproc import MicroPython
from paho.mqtt.enums import CallbackAPIVersion

THERMO_NODE = """
import sys
from spoolbus import contract, node
from spoolbus.transport.mqtt_client import MQTTClient
from spoolbus.transport.mqtt import MQTTTransport
THERMO = contract.Service("thermo", "1.1")
THERMO.method("read", ("sensor", str), ("scale", float, 1.0))
THERMO.method("fail", ("why", str))
THERMO.method("set", ("value", float))

class Thermo:
    value = 21.5
    def read(self, sensor, scale=1.0):
        return {"sensor": sensor, "value": self.value * scale}
    def fail(self, why):
        raise ValueError("failed: " + why)
    def set(self, value):
        self.value = value

client = MQTTClient("gw/thermo", "127.0.0.1", int(sys.argv[1]), clean_session=False)
n = node.Node("gw/thermo", MQTTTransport(client, "gw", "thermo"))
n.serve(THERMO, Thermo())
print("serving")
while True:
    n.poll(100)
"""


def spoolbus(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spoolbus_host.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def thermo(tmp_path, mosquitto):
    mp = MicroPython(tmp_path, THERMO_NODE, mosquitto.port)
    mp.expect("serving")
    yield f"127.0.0.1:{mosquitto.port}"
    mp.kill()


def test_call_prints_the_reply(thermo):
    r = spoolbus("call", "gw/thermo", "thermo.read", "sensor=t1", "scale=2", "--broker", thermo, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"reply": {"sensor": "t1", "value": 43.0}}
    r = spoolbus("call", "gw/thermo", "thermo.read", "sensor=t2", "--broker", thermo)
    assert r.returncode == 0 and json.loads(r.stdout) == {"sensor": "t2", "value": 21.5}


def test_cast_then_call_sees_its_effect(thermo):
    r = spoolbus("cast", "gw/thermo", "thermo.set", "value=30.0", "--broker", thermo, "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"sent": True}
    r = spoolbus("call", "gw/thermo", "thermo.read", "sensor=t1", "--broker", thermo, "--json")
    assert json.loads(r.stdout)["reply"]["value"] == 30.0


def test_call_exit_codes_for_remote_error_bad_arguments_timeout_and_no_broker(thermo):
    r = spoolbus("call", "gw/thermo", "thermo.fail", "why=testing", "--broker", thermo, "--json")
    assert r.returncode == 1
    assert "failed: testing" in json.loads(r.stdout)["error"]["message"]
    r = spoolbus("call", "gw/thermo", "thermo.read", "oops", "--broker", thermo)
    assert r.returncode == 2 and "key=value" in r.stderr
    r = spoolbus("call", "thermo", "thermo.read", "--broker", thermo)
    assert r.returncode == 2 and "bridge/device" in r.stderr
    r = spoolbus("call", "gw/nobody", "thermo.read", "sensor=x", "--broker", thermo, "--timeout", "1")
    assert r.returncode == 4 and "no reply from gw/nobody" in r.stderr
    r = spoolbus("call", "gw/thermo", "thermo.read", "--broker", f"127.0.0.1:{free_port()}")
    assert r.returncode == 3 and "cannot connect" in r.stderr


def test_monitor_shows_calls_replies_status_and_bad_payloads_decoded(thermo):
    host, port = thermo.split(":")
    mon = subprocess.Popen([sys.executable, "-m", "spoolbus_host.cli", "monitor", "--broker", thermo,
                            "--json", "--count", "4", "--seconds", "20"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert mon.stderr.readline().strip() == "watching"
    r = spoolbus("call", "gw/thermo", "thermo.read", "sensor=m", "--broker", thermo)
    assert r.returncode == 0
    bad = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    bad.connect(host, int(port))
    bad.loop_start()
    bad.publish("spoolbus/gw/thermo/inbox", b"\xffnot cbor", 1).wait_for_publish(5)
    bad.loop_stop()
    bad.disconnect()
    out, err = mon.communicate(timeout=30)
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0] == {"topic": "spoolbus/gw/thermo/status", "node": "gw/thermo", "what": "status",
                        "status": "online"}  # retained: shown first
    envs = [d["envelope"] for d in lines if "envelope" in d]
    call = next(e for e in envs if e["kind"] == "call")
    reply = next(e for e in envs if e["kind"] == "reply")
    assert call["dst"] == "gw/thermo" and call["method"] == "thermo.read" and call["body"] == {"sensor": "m"}
    assert reply["reply_to"] == call["id"] and reply["body"] == {"sensor": "m", "value": 21.5}
    assert any(d.get("error", "").startswith("CBORDecodeError") for d in lines), lines
    assert mon.returncode == 0, err  # it stopped by itself after --count messages
