"""Logger app (a spool board): logger.append writes a line to log.txt on the board; hears the controller."""

import board_config as cfg
from contracts import EVENT, LOGGER
from services import Logger
from spoolbus.node import Node
from spoolbus.transport.spool import SpoolTransport

node = Node(cfg.NAME, SpoolTransport(cfg.SPOOL, cfg.NAME, gateway=cfg.GATEWAY))
log = Logger("log.txt")
node.serve(LOGGER, log)
node.subscribe(EVENT, log.heard)
for peer in cfg.PEERS:
    node.hello(peer)
print("logger serving as", cfg.NAME)
while True:
    node.poll(200)
