"""The demo's services: a sensor (release 1.0, then 1.1 adds calibrate), a logger and a controller.

Deployed with every demo application (MicroPython) and imported by the host (CPython): one definition.
"""

from spoolbus.contract import Service

EVENT = "control.changed"  # the controller's notification, heard by the logger and the host


def sensor(release="1.1"):
    """The sensor's contract as served by `release`: 1.0 reads; 1.1 also calibrates."""
    s = Service("sensor", release)
    s.method("read", ("channel", str))
    if release != "1.0":
        s.method("calibrate", ("offset", float), since="1.1")
    return s


LOGGER = Service("logger", "1.0")
LOGGER.method("append", ("key", str), ("value", float))
LOGGER.method("count")

CONTROLLER = Service("controller", "1.0")
CONTROLLER.method("status")
