"""What every app of the board scenario shares: its node on the spool, the stop file, reporting.

Usage of an app: APP.py ROOT; the spool lives in ROOT/spool, the app stops when ROOT/stop exists.
"""

import json
import os
import sys

from contracts import KEYS
from spoolbus import node
from spoolbus.transport.spool import SpoolTransport


def start(name, **kw):
    """This app's node (signed messages required) and the scenario's root directory."""
    root = sys.argv[1]
    nd = node.Node(name, SpoolTransport(root + "/spool", name), keys=KEYS, require=True, **kw)
    return nd, root


def stopped(root):
    try:
        os.stat(root + "/stop")
        return True
    except OSError:
        return False


def say(*words):
    """One line to stdout, flushed (the test reads it as it comes)."""
    print(" ".join(str(w) for w in words))
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()


def serve_until_stopped(nd, root, tick=None):
    """Say hello, then poll until the stop file appears, calling tick() between polls."""
    nd.hello()
    say("ready", nd.name)
    while not stopped(root):
        nd.poll(20)
        if tick is not None:
            tick()
    report(nd)


def report(nd, extra=None):
    out = {"stats": nd.stats}
    if extra:
        out.update(extra)
    say("done", nd.name, json.dumps(out))
