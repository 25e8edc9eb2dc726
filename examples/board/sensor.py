"""Sensor app: serves sensor.read (a simulated temperature) and sensor.calibrate (API 1.1)."""

from app import serve_until_stopped, start
from contracts import SENSOR
from services import Sensor

nd, root = start("sensor")
nd.serve(SENSOR, Sensor())
serve_until_stopped(nd, root)
