"""The boot ROM of a MicroPython unix board: boot.py, main.py and a raw REPL on its console, as on a board.

Runs under the MicroPython unix port (whose own REPL has no raw mode), with the board's filesystem
as the working directory and a pty as its controlling terminal, so mpremote and `spoolbus deploy`
drive it exactly like an ESP32 or a QEMU board: Ctrl-C interrupts main.py (SIGINT from the tty),
Ctrl-A enters the raw REPL (with raw-paste flow control), Ctrl-D soft-resets.
"""

import os
import sys
import termios

import micropython

# Linux lflag bits: the tty turns Ctrl-C into SIGINT while the application runs (ISIG) without
# discarding the bytes queued behind it (NOFLSH), as a board's UART keeps them.
_ISIG = 0x1
_NOFLSH = 0x80
_WINDOW = 128  # raw-paste flow-control window, as a bare-metal port with a 256-byte stdin buffer.
_IN = sys.stdin.buffer
_OUT = sys.stdout.buffer
_BUILTIN_MODULES = set(sys.modules)
_PATH = [""] + sys.path[1:]  # the flash first, as on a port; not the directory of this ROM


_RAW = None
_RUN = None
_RUNNING = False  # boot.py or main.py runs (the tty turns 0x03 into SIGINT)


def _tty(isig):
    """Switch the console mode without flushing input (termios.setraw would: TCSAFLUSH)."""
    global _RAW, _RUN
    if _RAW is None:
        termios.setraw(0)
        _RAW = termios.tcgetattr(0)
        _RUN = termios.tcgetattr(0)
        _RUN[3] |= _ISIG | _NOFLSH
    termios.tcsetattr(0, termios.TCSANOW, _RUN if isig else _RAW)


def _w(data):
    _OUT.write(data)


class _Micropython:
    """`micropython` as the board's code sees it: the port's module, but kbd_intr(-1) also stops the tty
    turning 0x03 into SIGINT (and kbd_intr(3) starts it again), as on a board where Ctrl-C is only the
    UART's interrupt character. On the unix port alone, kbd_intr(-1) restores SIGINT's default action: a
    0x03 would end the board's process. kbd_intr is an instance attribute, so `from micropython import
    kbd_intr` works too."""

    def __getattr__(self, name):
        return getattr(micropython, name)


def _kbd_intr(c):
    micropython.kbd_intr(c)
    if _RUNNING:  # at the REPL the console stays raw: 0x03 is read as a key there
        _tty(c != -1)


_MICROPYTHON = _Micropython()
_MICROPYTHON.kbd_intr = _kbd_intr


def _run(path, g):
    """Run a boot file the way pyexec_file_if_exists does; errors are printed, never fatal. True if it
    ended in SystemExit (machine.soft_reset(), sys.exit()): the board soft-resets, as a port's main.c does
    on PYEXEC_FORCED_EXIT."""
    try:
        os.stat(path)
    except OSError:
        return False
    global _RUNNING
    _RUNNING = True
    _tty(True)
    try:
        try:
            with open(path) as f:
                src = f.read()
            exec(src, g)
        except KeyboardInterrupt:
            _w(b"KeyboardInterrupt\r\n")
        except SystemExit:
            return True
        except BaseException as e:  # noqa: B036 - a board prints every error of main.py and goes on
            sys.print_exception(e)
    except KeyboardInterrupt:  # a host sends Ctrl-C several times: a second one while the first is handled
        pass
    finally:
        _leave_app()
    return False


def _leave_app():
    """Back to the REPL's raw console; a Ctrl-C that lands meanwhile still belongs to the application."""
    global _RUNNING
    _RUNNING = False
    while True:
        try:
            _tty(False)
            return
        except KeyboardInterrupt:
            pass


def _soft_reset(raw):
    while True:
        # Ctrl-C interrupts again, as after a port's soft reset: an application's kbd_intr(-1) ends with
        # it (on the unix port that call restores SIGINT's default action: a 0x03 would end the board).
        micropython.kbd_intr(3)
        for name in list(sys.modules):
            if name not in _BUILTIN_MODULES:
                del sys.modules[name]
        sys.modules["micropython"] = _MICROPYTHON
        sys.path[:] = _PATH
        g = {"__name__": "__main__"}
        if not (_run("boot.py", g) or (not raw and _run("main.py", g))):
            return {"__name__": "__main__"}
        _w(b"soft reboot\r\n")


def _exec(src, g):
    """Execute one raw-REPL command; the host reads stdout, 0x04, the error text, 0x04."""
    try:
        exec(src, g)
        _w(b"\x04")
    except BaseException as e:  # noqa: B036 - the raw REPL reports every error to the host
        _w(b"\x04")
        sys.print_exception(e)
    _w(b"\x04")


def _raw_paste():
    """Receive source under raw-paste flow control (window of _WINDOW bytes, 0x01 = one more window)."""
    _w(b"R\x01" + bytes((_WINDOW & 0xFF, _WINDOW >> 8, 1)))
    src = bytearray()
    remain = _WINDOW
    while True:
        c = _IN.read(1)
        if not c or c == b"\x04" or c == b"\x03":
            _w(b"\x04")
            return bytes(src) if c == b"\x04" else None
        src += c
        remain -= 1
        if remain == 0:
            _w(b"\x01")
            remain = _WINDOW


def _keys():
    """The console's bytes one at a time, until it closes (the board is switched off)."""
    while True:
        c = _IN.read(1)
        if not c:
            return
        yield c


def _raw_repl(g):
    _w(b"raw REPL; CTRL-B to exit\r\n")
    while True:
        _w(b">")
        line = bytearray()
        for c in _keys():
            if c == b"\x01":
                if len(line) == 2 and line[0] == 5:
                    if line[1] != 65:
                        _w(b"R\x00")
                    else:
                        src = _raw_paste()
                        if src is not None:
                            _exec(src, g)
                    line = bytearray()
                    _w(b">")
                    continue
                _w(b"raw REPL; CTRL-B to exit\r\n")
                line = bytearray()
                _w(b">")
            elif c == b"\x02":
                _w(b"\r\n")
                return "friendly"
            elif c == b"\x03":
                line = bytearray()
            elif c == b"\x04":
                break
            else:
                line += c
        else:
            return None
        _w(b"OK")
        if not line:
            _w(b"\r\n")
            return "reset"
        _exec(bytes(line), g)


def _friendly_repl(g):
    _w(b"MicroPython on a unix board (spoolbus unix ROM)\r\n>>> ")
    line = bytearray()
    for c in _keys():
        if c == b"\x01":
            _w(b"\r\n")
            return "raw"
        if c == b"\x04":
            return "reset"
        if c == b"\x03":
            line = bytearray()
            _w(b"\r\n>>> ")
        elif c == b"\r" or c == b"\n":
            _w(b"\r\n")
            if line:
                _tty(True)
                try:
                    exec(bytes(line), g)
                except BaseException as e:  # noqa: B036 - a REPL prints every error
                    sys.print_exception(e)
                _tty(False)
            line = bytearray()
            _w(b">>> ")
        else:
            line += c
            _w(c)
    return None


def main():
    _tty(False)
    raw = False
    g = _soft_reset(raw)
    while True:
        nxt = _raw_repl(g) if raw else _friendly_repl(g)
        if nxt is None:
            return
        if nxt == "reset":
            _w(b"soft reboot\r\n")
            g = _soft_reset(raw)
        else:
            raw = nxt == "raw"


main()
