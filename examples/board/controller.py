"""Controller app: each round reads the sensor, logs the value (a call), notifies the change.

Usage: controller.py ROOT [ROUNDS]. Prints "call KEY ok" or "call KEY ERRORTYPE" for every logger call.
"""

import sys
import time

from app import report, say, start, stopped
from contracts import CONTROLLER, EVENT, LOGGER, SENSOR
from spoolbus import errors

rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 50
nd, root = start("controller", timeout=2.0)
state = {"round": 0, "value": None, "ok": 0, "failed": 0}
nd.serve(CONTROLLER, {"status": lambda: state})
sensor = nd.client("sensor", SENSOR)
logger = nd.client("logger", LOGGER)
nd.hello()
say("ready", nd.name)
for i in range(rounds):
    if stopped(root):
        break
    state["round"] = i
    try:
        value = sensor.call("read", {"channel": "t0"})
        state["value"] = value
    except errors.SpoolbusError as e:
        say("sensor", i, type(e).__name__)
        continue
    key = "r%d" % i
    try:
        logger.call("append", {"key": key, "value": value})
        state["ok"] += 1
        say("call", key, "ok")
    except errors.RemoteError as e:
        state["failed"] += 1
        say("call", key, e.type)
    except errors.SpoolbusError as e:
        state["failed"] += 1
        say("call", key, type(e).__name__)
    nd.notify(EVENT, {"round": i, "value": value})
    nd.poll(0)
    time.sleep(0.02)
say("rounds", state["round"] + 1)
while not stopped(root):
    nd.poll(20)
report(nd, {"state": state})
