"""QEMU board entry for the deploy tests: run the deployed loader (/flash/main.py) if there is one.

firmware/main.py serves a node on the console with Ctrl-C off, so nothing can reach the REPL to deploy;
this entry leaves the REPL reachable, as the stock firmware of an ESP32 or a Pico does.
"""

import os

try:
    os.stat("/flash/main.py")
    _deployed = True
except OSError:
    _deployed = False
if _deployed:
    exec(open("/flash/main.py").read())
