"""The fleet rollout tests' board application: the `app` service at the API version its release says, and
the update service, on the link the board's own device file names.

One tree serves every device of a fleet, so what differs from board to board lives outside it: the
device file `device.json` at the deploy root (written once, when the board is set up) names the node,
its link and the deploy root. The release's `release.py` (written by tests/host/fleet_rig.py) holds
`V` (what `app.version` answers) and `API`, the version of the `app` service: API 1.1 adds `app.tree`.
Every boot appends the booted tree's directory name to `boots.log` at the root: the tests count boots.
"""

import micropython

micropython.kbd_intr(-1)  # first: on a console that carries frames, a 0x03 byte is data, not Ctrl-C
import json  # noqa: E402
import sys  # noqa: E402

_TREE = sys.path[0]  # the loader put ROOT + "app/<tree>" first
_ROOT = _TREE[: _TREE.rfind("app/")]
with open(_ROOT + "device.json") as _f:
    dev = json.load(_f)
with open(_ROOT + "boots.log", "a") as _f:
    _f.write(_TREE[len(_ROOT) + 4 :] + "\n")

import release  # noqa: E402 - a broken release raises here, after the boot was counted
from spoolbus import contract, update  # noqa: E402
from spoolbus.node import Node  # noqa: E402

APP = contract.Service("app", release.API)
APP.method("version")
APP.method("echo", ("data", None))
if APP.minor >= 1:
    APP.method("tree", since="1.1")


class App:
    def version(self):
        return release.V

    def echo(self, data):
        return data

    def tree(self):
        return _TREE[len(_ROOT) + 4 :]


def link():
    if dev["link"] == "serial":
        from spoolbus.transport.serial import SerialTransport, StreamPort

        t = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name=dev["name"],
                            max_frame=1024)
        t.open()
        return t
    from spoolbus.transport.spool import SpoolTransport

    # poll_ms: a dozen boards polling their inboxes share the machine's cores
    return SpoolTransport(dev["spool"], dev["name"], gateway=dev["gateway"], poll_ms=5)


node = Node(dev["name"], link(), clock=False, dedup_size=8)
node.serve(APP, App())
update.serve(node, root=_ROOT, deadline_s=30)
if dev["link"] != "serial":  # the console of a serial board carries frames
    print("fleet app " + _TREE + " up")
while True:
    node.poll(1000)  # a link event or a frame too large for the heap costs that frame only
