"""Deployable board entry: run what `spoolbus deploy` put on the board, else leave the REPL free.

firmware/main.py serves board_app on the console with Ctrl-C off, so no deploy can reach the REPL. This
entry runs the deployed loader (/flash/main.py on the QEMU board) if there is one; the frozen runtime
and board_app stay importable, so an application deploys as a few small modules (docs/demo.md). The
stock firmware (firmware/stock/) freezes this entry too: there /flash/main.py is what the user put on
the board beside the packages mip installed, as a stock port runs its filesystem's main.py.
"""

import os

try:
    os.stat("/flash/main.py")
    _deployed = True
except OSError:
    _deployed = False
if _deployed:
    exec(open("/flash/main.py").read())
