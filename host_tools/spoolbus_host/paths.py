"""Where things are in the spoolbus checkout the host tools run from (an editable install).

Board profiles, firmware manifests, the runtime's sources and the MicroPython build cache are read
from the repository itself, so one definition of its layout serves every room.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "runtime" / "spoolbus"
BOARDS = REPO / "boards"
FIRMWARE = REPO / "firmware"
EXAMPLES = REPO / "examples"
CACHE = REPO / ".cache"
MICROPYTHON_BUILD = CACHE / "micropython-1.25.0" / "bin"
