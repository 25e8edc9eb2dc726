"""Host app (CPython): subscribes to the controller's events, reads, calibrates and counts meanwhile.

Usage: python host.py ROOT. Prints a summary line "done host {...}" when ROOT/stop appears.
"""

import time

from app import report, say, start, stopped
from contracts import CONTROLLER, EVENT, LOGGER, SENSOR
from spoolbus import errors

nd, root = start("host", timeout=2.0)
events = []
nd.subscribe(EVENT, lambda ev, body, src: events.append(body["round"]))
nd.hello()
say("ready", nd.name)
sensor = nd.client("sensor", SENSOR)
calls = {"ok": 0}
calibrated = False
while not stopped(root):
    nd.poll(50)
    for dst, svc, method in (("sensor", SENSOR, "read"), ("logger", LOGGER, "count"),
                             ("controller", CONTROLLER, "status")):
        if stopped(root):
            break
        try:
            nd.client(dst, svc).call(method, {"channel": "t1"} if method == "read" else {})
            calls["ok"] += 1
        except errors.SpoolbusError as e:
            k = "%s.%s %s" % (dst, method, type(e).__name__)
            calls[k] = calls.get(k, 0) + 1
    if not calibrated and sensor.can_send_version("1.1"):
        sensor.cast("calibrate", {"offset": 0.25})
        calibrated = True
    time.sleep(0.05)
report(nd, {"events": len(events), "calls": calls, "calibrated": calibrated})
