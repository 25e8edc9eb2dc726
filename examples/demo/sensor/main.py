"""Sensor app (a spool board): serves sensor.read, and sensor.calibrate from release 1.1 on.

board_config (written by the demo's deploy) names the node, its spool, the bridge's gateway node, the
release and the peers to greet at start (their hello answers tell them this release's API version).
"""

import board_config as cfg
from contracts import sensor
from spoolbus.node import Node
from spoolbus.transport.spool import SpoolTransport


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


node = Node(cfg.NAME, SpoolTransport(cfg.SPOOL, cfg.NAME, gateway=cfg.GATEWAY))
node.serve(sensor(cfg.RELEASE), Sensor())
for peer in cfg.PEERS:
    node.hello(peer)
print("sensor", cfg.RELEASE, "serving as", cfg.NAME)
while True:
    node.poll(200)
