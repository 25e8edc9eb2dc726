"""The OTA tests' board application: a node with the update service and a tiny service of its own.

`board_config` (written by tests/host/ota_rig.py into each release) says the node's name, its link
(the console, a spool directory or the broker) and how the update service is set up; `version.V` is
what `app.version` answers, so a test sees which tree runs.
"""

import board_config as cfg


def _console_raw():
    """Frames are binary: no byte may become a signal, so Ctrl-C is off (on the unix board its ROM then
    also stops the tty's ISIG, as on a board's UART)."""
    import micropython

    micropython.kbd_intr(-1)


if cfg.LINK == "serial":
    _console_raw()  # before the imports below: the bridge's frames may arrive while they load

import sys  # noqa: E402

import version  # noqa: E402
from spoolbus import contract, update  # noqa: E402
from spoolbus.node import Node  # noqa: E402

APP = contract.Service("app", "1.0")
APP.method("version")
APP.method("echo", ("data", None))


class App:
    def version(self):
        return version.V

    def echo(self, data):
        return data


def link():
    if cfg.LINK == "serial":
        from spoolbus.transport.serial import SerialTransport, StreamPort

        t = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name=cfg.NAME,
                            max_frame=cfg.MAX_FRAME)
        t.open()
        return t
    if cfg.LINK == "spool":
        from spoolbus.transport.spool import SpoolTransport

        return SpoolTransport(cfg.SPOOL, cfg.NAME, gateway=cfg.GATEWAY)
    from spoolbus.transport.mqtt import MQTTTransport
    from spoolbus.transport.mqtt_client import MQTTClient

    bridge, device = cfg.NAME.split("/")
    return MQTTTransport(MQTTClient(cfg.NAME, "127.0.0.1", cfg.BROKER_PORT, max_packet=4096), bridge, device)


node = Node(cfg.NAME, link(), keys=cfg.KEYS, clock=False, dedup_size=8)
node.serve(APP, App())
update.serve(node, root="", deadline_s=cfg.DEADLINE_S, healthy=lambda: cfg.HEALTHY, trusted=cfg.TRUSTED)
while True:
    node.poll(1000)  # a link event or a frame too large for the heap costs that frame only
