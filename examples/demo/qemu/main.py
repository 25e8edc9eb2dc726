"""QEMU board app: the firmware's frozen board_app (services board and spool) under the name in board_config.

Only this file and board_config travel over the emulated UART: the runtime is frozen into the firmware.
"""

import board_app

board_app.run()
