"""The contracts and demo keys of the board scenario: a sensor, a controller, a logger and a host.

Shared by every app (MicroPython or CPython); real deployments load per-node keys from a file.
"""

from spoolbus.contract import Service

SENSOR = Service("sensor", "1.1")
SENSOR.method("read", ("channel", str))
SENSOR.method("calibrate", ("offset", float), since="1.1")

LOGGER = Service("logger", "1.0")
LOGGER.method("append", ("key", str), ("value", float))
LOGGER.method("count")

CONTROLLER = Service("controller", "1.0")
CONTROLLER.method("status")

EVENT = "control.changed"

KEYS = {
    "sensor": b"demo key of the sensor",
    "controller": b"demo key of the controller",
    "logger": b"demo key of the logger",
    "host": b"demo key of the host",
}
