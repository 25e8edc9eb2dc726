"""Processes on this machine as Linux's /proc shows them, for the owners of locks and spool claims.

Without /proc (a board, CPython off Linux) read() is None and callers fall back on leases or boot nonces.
"""


def read(path):
    """The text of a small file (/proc/..., /etc/machine-id), or None if it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def fields(stat):
    """The fields of a /proc/PID/stat text after the command name: [0] is the state, [19] the start time."""
    return stat[stat.rfind(")") + 2 :].split()


def alive(pid, start=None):
    """Whether process `pid` runs (not a zombie) and, given its `start` time, is that one: no reused pid."""
    s = read("/proc/%s/stat" % pid)
    if not s:
        return False
    f = fields(s)
    return f[0] not in ("Z", "X") and (start is None or f[19] == start)
