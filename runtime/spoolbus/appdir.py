"""The pointer files of a deploy root's app/ directory (current, previous, trial, failed).

Each is written whole to `<name>.new` and renamed over `<name>`, so a power cut leaves the old text or the
new. FAT's rename removes the target first: a reader takes a whole `<name>.new` when `<name>` is missing.
The update service and the boot loader share these rules; deploy/build.py copies this module's text into
the loader, which runs before any tree (and the spoolbus package in it) is importable.
"""

import os


def get(app, name):
    """A pointer file's text, or None; a `.new` left whole by a cut rename stands for a missing name."""
    for p in (app + name, app + name + ".new"):
        try:
            with open(p) as f:
                t = f.read().strip()
            if t:
                return t
        except OSError:
            pass
    return None


def put(app, name, text):
    with open(app + name + ".new", "w") as f:
        f.write(text)
    os.rename(app + name + ".new", app + name)


def drop(app, name):
    for p in (app + name + ".new", app + name):
        try:
            os.remove(p)
        except OSError:
            pass
