"""A spool producer or consumer for the kill -9 trials; runs under CPython and MicroPython alike.

produce SPOOL LOG TAG: puts messages TAG.0, TAG.1, ... and appends each id to LOG only after put returned.
consume SPOOL LOG: claims, records each id once in the shared LOG (re-read before deciding), then acks.
"""

import sys
import time

from spoolbus import spool


def payload(tag):
    """200 bytes that say which message they are, so a consumer can tell a corrupt delivery."""
    return ((tag + b"|") * 40)[:200]


class _Seen:
    """The ids consumers already processed: the shared log, read incrementally."""

    def __init__(self, log):
        self.log = log
        self.ids = set()
        self.offset = 0

    def refresh(self):
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        for line in data[:end].split(b"\n"):
            if line:
                self.ids.add(line)
        self.offset += end


def consume(path, log, drain=False):
    s = spool.Spool(path)
    seen = _Seen(log)
    open(log, "ab").close()
    seen.refresh()
    out = open(log, "ab")
    n = 0
    while True:
        m = s.claim()
        if m is None:
            if drain:
                return n
            time.sleep(0.001)
            continue
        data = m[1]
        tag = data[: data.find(b"|")]
        if data != payload(tag):
            tag = b"BAD " + m[0].encode()
        if tag not in seen.ids:
            seen.refresh()  # another consumer may have processed it before it died
        if tag not in seen.ids:
            out.write(tag + b"\n")
            out.flush()
            seen.ids.add(tag)
            n += 1
        s.ack(m[0])


def produce(path, log, tag):
    s = spool.Spool(path)
    out = open(log, "ab")
    i = 0
    while True:
        t = b"%s.%d" % (tag, i)
        s.put(payload(t))
        out.write(t + b"\n")
        out.flush()
        i += 1


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4].encode())
    else:
        consume(sys.argv[2], sys.argv[3])
