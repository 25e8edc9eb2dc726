"""Board entry point: a spoolbus node on the console serial link, serving the board's services.

Run after _boot.py on every (soft) reset of the QEMU board, and by `micropython -m main` on the unix
board. Never returns: the loop survives link events (host gone, host reconnected).
"""

import board_app

board_app.run()
