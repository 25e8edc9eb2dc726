"""The boot loader `spoolbus deploy` writes as main.py at the deploy root: runs the tree app/current names.

MicroPython code, read as text by deploy/build.py, which sets ROOT to the deploy root ("" is the working
directory). It puts that tree first on sys.path and imports the application's `main` from it; a deploy
never changes it, so a cut deploy leaves it and the old tree running.
"""
import sys

ROOT = ""
try:
    _tree = ROOT + "app/" + open(ROOT + "app/current").read().strip()
except OSError:
    _tree = None
if _tree:
    sys.path.insert(0, _tree)
    import main  # noqa: F401
