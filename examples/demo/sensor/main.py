"""Sensor app (a spool board): sensor.read, sensor.calibrate from release 1.1 on, and the update service.

One tree for every sensor of the fleet: `release` (in the tree) says which API version its code serves;
`board_config` (on the board's flash, outside the tree) names the node, its spool, the bridge's gateway
node and the peers to greet at start (their hello answers tell them this release's API version).
"""

import board_config as cfg
from contracts import sensor
from release import RELEASE
from services import Sensor
from spoolbus import update
from spoolbus.node import Node
from spoolbus.transport.spool import SpoolTransport

node = Node(cfg.NAME, SpoolTransport(cfg.SPOOL, cfg.NAME, gateway=cfg.GATEWAY))
node.serve(sensor(RELEASE), Sensor())
update.serve(node, root="", deadline_s=30)  # a tree on trial is confirmed by update.health, or given up
for peer in cfg.PEERS:
    node.hello(peer)
print("sensor", RELEASE, "serving as", cfg.NAME)
while True:
    node.poll(200)
