"""The little of pytest the portable tests need, working under CPython and MicroPython alike."""

import os
import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"


class NotOnMicroPython(Exception):
    """Raised by a cpython_only test under MicroPython; the runner reports it, never hides it."""


class raises:
    """Context manager: the block must raise `exc_type`; the exception is kept in `.value`."""

    def __init__(self, exc_type):
        self.exc_type = exc_type
        self.value = None

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            raise AssertionError("did not raise " + self.exc_type.__name__)
        if not issubclass(et, self.exc_type):
            return False
        self.value = ev
        return True


def cpython_only(reason):
    """Mark a test that cannot run on MicroPython, with the reason the runner prints."""

    def mark(fn):
        if not IS_MICROPYTHON:
            return fn

        def skipped(*args):
            raise NotOnMicroPython(reason)

        return skipped

    return mark


def micropython_only(reason):
    """Mark a test that needs MicroPython (its vfs module); pytest reports it as skipped, with the reason."""

    def mark(fn):
        if IS_MICROPYTHON:
            return fn

        def skipped(*args):
            import pytest

            pytest.skip("MicroPython only: " + reason)

        skipped.__name__ = fn.__name__
        return skipped

    return mark


_counter = [0]


def tmpdir(prefix="spoolbus-test"):
    """A fresh empty directory under /tmp; remove it with remove_tree."""
    while True:
        _counter[0] += 1
        path = "/tmp/%s-%d-%d" % (prefix, os.getpid() if hasattr(os, "getpid") else 0, _counter[0])
        try:
            os.mkdir(path)
            return path
        except OSError:
            remove_tree(path)


def remove_tree(path):
    """rm -rf that needs only os.ilistdir/listdir, stat, remove and rmdir."""
    try:
        mode = os.stat(path)[0]
    except OSError:
        return
    if mode & 0x4000:
        for name in os.listdir(path):
            remove_tree(path + "/" + name)
        os.rmdir(path)
    else:
        os.remove(path)


class temp_dir:
    """`with temp_dir() as d:` a fresh directory from tmpdir(), removed afterwards whatever happens."""

    def __init__(self, prefix="spoolbus-test"):
        self.prefix = prefix

    def __enter__(self):
        self.path = tmpdir(self.prefix)
        return self.path

    def __exit__(self, et, ev, tb):
        remove_tree(self.path)
        return False
