"""Controller app (the serial board): each round reads the sensor, logs the value, notifies the change.

Its node speaks in frames over the console to the bridge, which routes its calls to the spool boards
locally (no broker in between). controller.status reports its rounds and any failed call by error type.
"""

import sys
import time

import board_config as cfg
import micropython
from contracts import CONTROLLER, EVENT, LOGGER, sensor
from spoolbus import errors
from spoolbus.node import Node
from spoolbus.transport.serial import UP, SerialTransport, StreamPort


def console_raw():
    """Frames are binary: no byte may become a signal, so Ctrl-C is off (on the unix board its ROM then
    also stops the tty's ISIG, as on a board's UART)."""
    micropython.kbd_intr(-1)


state = {"rounds": 0, "ok": 0, "failed": 0, "errors": {}, "value": None, "notified": 0}


def one_round(node, sensor_client, logger_client):
    i = state["rounds"]
    state["rounds"] = i + 1
    try:
        value = sensor_client.call("read", {"channel": "t0"})
        logger_client.call("append", {"key": "r" + str(i), "value": value})
    except errors.LinkError:
        raise
    except errors.SpoolbusError as e:
        state["failed"] += 1
        name = type(e).__name__
        state["errors"][name] = state["errors"].get(name, 0) + 1
        return
    state["ok"] += 1
    state["value"] = value
    state["notified"] += node.notify(EVENT, {"round": i, "value": value})


def run():
    console_raw()
    link = SerialTransport(StreamPort(sys.stdin.buffer, sys.stdout.buffer, sys.stdin), name=cfg.NAME)
    # Calls wait in a spool board's inbox while it restarts; a resend (same id) covers one lost mid-restart.
    node = Node(cfg.NAME, link, timeout=10.0, retries=4, retry_s=2.0, dedup_size=8)
    node.serve(CONTROLLER, {"status": lambda: state})
    sensor_client = node.client(cfg.SENSOR, sensor("1.0"))  # read only: any release serves it
    logger_client = node.client(cfg.LOGGER, LOGGER)
    link.open()
    greeted = False
    next_round = time.ticks_ms()
    while True:
        try:
            node.poll(20)
            if link.state != UP:
                greeted = False
                continue
            if not greeted:
                for peer in cfg.PEERS:
                    node.hello(peer)
                greeted = True
            if time.ticks_diff(time.ticks_ms(), next_round) >= 0:
                next_round = time.ticks_add(time.ticks_ms(), cfg.PERIOD_MS)
                one_round(node, sensor_client, logger_client)
        except errors.LinkError:
            greeted = False  # the bridge went away or came back: greet again once the link is up


run()
