"""Logger app (a spool board): logger.append writes a line to log.txt on the board; hears the controller."""

import board_config as cfg
from contracts import EVENT, LOGGER
from spoolbus.node import Node
from spoolbus.transport.spool import SpoolTransport


class Logger:
    def __init__(self, path):
        self.path = path
        self.lines = 0
        self.events = 0

    def append(self, key, value):
        with open(self.path, "a") as f:
            f.write(key + " " + str(value) + "\n")
        self.lines += 1
        return self.lines

    def count(self):
        return {"lines": self.lines, "events": self.events}

    def heard(self, event, body, src):
        self.events += 1


node = Node(cfg.NAME, SpoolTransport(cfg.SPOOL, cfg.NAME, gateway=cfg.GATEWAY))
log = Logger("log.txt")
node.serve(LOGGER, log)
node.subscribe(EVENT, log.heard)
for peer in cfg.PEERS:
    node.hello(peer)
print("logger serving as", cfg.NAME)
while True:
    node.poll(200)
