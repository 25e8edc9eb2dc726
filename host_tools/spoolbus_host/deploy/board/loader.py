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
_A = ROOT + "app/"


def _get(name):
    # a pointer file's text; a whole `.new` that a cut rename left stands for a missing name
    for p in (_A + name, _A + name + ".new"):
        try:
            with open(p) as f:
                t = f.read().strip()
            if t:
                return t
        except OSError:
            pass
    return None


def _put(name, text):
    with open(_A + name + ".new", "w") as f:
        f.write(text)
    os.rename(_A + name + ".new", _A + name)


def _del(name):
    for p in (_A + name + ".new", _A + name):
        try:
            os.remove(p)
        except OSError:
            pass


def _trace(e):
    import io

    buf = io.StringIO()
    if hasattr(sys, "print_exception"):
        sys.print_exception(e, buf)
    else:
        import traceback

        traceback.print_exception(type(e), e, e.__traceback__, file=buf)
    last = ""
    for line in buf.getvalue().split("\n"):
        if 'File "' in line:
            last = line.strip()
    return last


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
    _put("trial", tree + " booted")
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
        _put("failed", tree + "\n" + type(e).__name__ + ": " + str(e) + "\n" + _trace(e))
        _del("trial")
        _reset()


_cur = _get("current")
_t = _get("trial")
if _t:
    _d = _t.split(" ")[0]
    if _d == _cur:
        _del("trial")
    elif _t.endswith(" booted"):
        _put("failed", _d + "\nnot confirmed before the next boot\n")
        _del("trial")
    else:
        try:
            os.stat(_A + _d + "/.manifest")
        except OSError:
            _d = None
            _del("trial")
        if _d:
            _cur = None
            _trial(_d)
if _cur:
    _boot(_cur)
else:
    kbd_intr(3)
