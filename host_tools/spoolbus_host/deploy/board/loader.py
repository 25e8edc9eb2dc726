"""The boot loader `spoolbus deploy` writes as main.py at the deploy root: runs the tree app/current names,
or a committed tree once on trial (docs/deploy.md, "The loader: trial boot").

MicroPython code (it also runs on CPython, for tests), read as text by deploy/build.py, which sets ROOT to
the deploy root ("" is the working directory). It puts the tree first on sys.path and imports the
application's `main` from it. A trial that raises is recorded in app/failed and the board resets into
app/current; a trial the loader finds already booted never confirmed, and is given up the same way.
"""

import os
import sys

try:
    from micropython import kbd_intr
except ImportError:  # CPython

    def kbd_intr(c):
        pass


# Ctrl-C is off while the loader works: a console that carries frames (a bridge's keepalives, a host's
# calls) may hold a 0x03 byte during the boot, and it must not stop the loader between two writes. It is on
# again for the application, which turns it off first thing if its console carries frames.
kbd_intr(-1)
ROOT = ""
from spoolbus.appdir import drop, get, put  # noqa: E402 - deploy/build.py puts appdir.py's text here

_A = ROOT + "app/"


def _where(e):
    # the innermost 'File "...", line N' of e's traceback, for the one line app/failed keeps of it
    if hasattr(sys, "print_exception"):
        import io

        buf = io.StringIO()
        sys.print_exception(e, buf)
        return ([x.strip() for x in buf.getvalue().split("\n") if 'File "' in x] or [""])[-1]
    tb = e.__traceback__  # CPython, in tests
    while tb.tb_next:
        tb = tb.tb_next
    return 'File "%s", line %d' % (tb.tb_frame.f_code.co_filename, tb.tb_lineno)


def _reset():
    # a hard reset where a watchdog may run (only that stops it), else a soft one; SystemExit on CPython
    try:
        import machine
    except ImportError:
        raise SystemExit from None
    if hasattr(machine, "WDT"):
        machine.reset()
    machine.soft_reset()


def _boot(tree):
    sys.path.insert(0, _A + tree)
    kbd_intr(3)
    import main  # noqa: F401


def _trial(tree):
    put(_A, "trial", tree + " booted")
    try:
        import machine

        if hasattr(machine, "WDT"):
            machine.WDT(timeout=8000)
    except ImportError:
        pass
    try:
        _boot(tree)
    except Exception as e:  # noqa: BLE001 - any error of the trial sends the board back to app/current
        kbd_intr(-1)
        put(_A, "failed", tree + "\n" + type(e).__name__ + ": " + str(e) + "\n" + _where(e))
        drop(_A, "trial")
        _reset()


_cur = get(_A, "current")
_t = get(_A, "trial")
if _t:
    _d = _t.split(" ")[0]
    if _d == _cur:
        drop(_A, "trial")
    elif _t.endswith(" booted"):
        put(_A, "failed", _d + "\nnot confirmed before the next boot\n")
        drop(_A, "trial")
    else:
        try:
            os.stat(_A + _d + "/.manifest")
        except OSError:
            _d = None
            drop(_A, "trial")
        if _d:
            _cur = None
            _trial(_d)
if _cur:
    _boot(_cur)
else:
    kbd_intr(3)
