"""`spoolbus flash --board NAME`: write MicroPython firmware to a board, or boot a QEMU one (see flash.py).

ESP32 family: --image firmware.bin --port PORT (esptool). Raspberry Pi Pico: --image firmware.uf2
(copied to the RPI-RP2 drive, or --drive DIR). QEMU: builds the firmware, boots it, prints its port and
runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import threading

from spoolbus_host.boards import methods
from spoolbus_host.boards.flash import FlashError, boot_qemu, flash
from spoolbus_host.cli import options
from spoolbus_host.progress import Progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flash", help="write MicroPython to a board (esptool, UF2), or boot a QEMU board")
    p.add_argument("--board", required=True, help="board profile: esp32, rp2-pico, qemu-mps2-an385")
    p.add_argument("--image", help="firmware image: firmware.bin (ESP32) or firmware.uf2 (Pico)")
    p.add_argument("--port", help="ESP32: the board's serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--drive", help="Pico: the mounted RPI-RP2 drive (default: found by its INFO_UF2.TXT)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)



_fail = functools.partial(options.fail, "flash")


def run(args: argparse.Namespace) -> int:
    if args.image and os.path.isdir(args.image):
        return _fail(f"--image {args.image} is a directory; give the firmware file (firmware.bin or .uf2)")
    try:
        profile = methods.read(args.board)
        if profile["flash"]["method"] == "qemu":
            return _run_qemu(args)
        result = flash(profile, image=args.image, port=args.port, drive=args.drive)
    except (FlashError, methods.ProfileError) as e:
        return _fail(str(e))
    print(json.dumps(result.__dict__) if args.json else result.summary())
    return 0


def _run_qemu(args: argparse.Namespace) -> int:
    """Boot the QEMU board and keep it running until Ctrl-C or SIGTERM; then stop it."""
    from spoolbus_host.boards.firmware import FirmwareBuildError

    try:
        board = boot_qemu(args.board, log=None if args.json else Progress("flash").step)
    except FirmwareBuildError as e:
        return _fail(f"firmware build failed: {e}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    info = {"board": args.board, "port": board.port, "firmware": board.firmware, "pid": board.proc.pid,
            "seconds": round(board.seconds, 2)}
    if args.json:
        print(json.dumps(info), flush=True)
    else:
        print(f"{args.board}: booted {board.firmware} in {board.seconds:.1f} s; its UART is {board.port} "
              "(spoolbus deploy --port ...); Ctrl-C stops it", flush=True)
    try:
        while not stop.is_set() and board.proc.poll() is None:
            stop.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0
