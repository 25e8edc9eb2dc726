"""Logger app: serves logger.append (one line per call in ROOT/log.txt) and logger.count; hears events."""

from app import serve_until_stopped, start
from contracts import EVENT, LOGGER


class Logger:
    def __init__(self, path):
        self.path = path
        self.lines = 0
        self.events = 0

    def append(self, key, value):
        with open(self.path, "a") as f:
            f.write("%s %s\n" % (key, value))
        self.lines += 1
        return self.lines

    def count(self):
        return self.lines

    def heard(self, event, body, src):
        self.events += 1


nd, root = start("logger")
log = Logger(root + "/log.txt")
nd.serve(LOGGER, log)
nd.subscribe(EVENT, log.heard)
serve_until_stopped(nd, root)
