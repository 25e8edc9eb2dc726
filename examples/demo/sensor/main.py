"""Sensor app (a spool board): serves sensor.read, and sensor.calibrate from release 1.1 on.

board_config (written by the demo's deploy) names the node, its spool, the bridge's gateway node, the
release and the peers to greet at start (their hello answers tell them this release's API version).
"""

import board_config as cfg
from contracts import sensor
from services import Sensor
from spoolbus.node import Node
from spoolbus.transport.spool import SpoolTransport

node = Node(cfg.NAME, SpoolTransport(cfg.SPOOL, cfg.NAME, gateway=cfg.GATEWAY))
node.serve(sensor(cfg.RELEASE), Sensor())
for peer in cfg.PEERS:
    node.hello(peer)
print("sensor", cfg.RELEASE, "serving as", cfg.NAME)
while True:
    node.poll(200)
