"""Sensor app: serves sensor.read (a simulated temperature) and sensor.calibrate (API 1.1)."""

from app import serve_until_stopped, start
from contracts import SENSOR


class Sensor:
    def __init__(self):
        self.reads = 0
        self.offset = 0.0

    def read(self, channel):
        self.reads += 1
        return 20.0 + (self.reads % 10) * 0.5 + self.offset

    def calibrate(self, offset):
        self.offset = offset
        return True


nd, root = start("sensor")
nd.serve(SENSOR, Sensor())
serve_until_stopped(nd, root)
