"""The sensor's and the logger's service objects, shared by the board scenario and the demo's boards.

Plain classes on purpose: MicroPython runs them on the boards, CPython in tests.
"""


class Sensor:
    """sensor.read: a simulated temperature; sensor.calibrate (API 1.1): an offset added to it."""

    def __init__(self):
        self.reads = 0
        self.offset = 0.0

    def read(self, channel):
        self.reads += 1
        return 20.0 + (self.reads % 10) * 0.5 + self.offset

    def calibrate(self, offset):
        self.offset = offset
        return True


class Logger:
    """logger.append: a line "KEY VALUE" in the file at `path` a call; logger.count; `heard` counts events."""

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
