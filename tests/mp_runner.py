"""Run the portable test files under MicroPython, which has no pytest.

Usage: micropython tests/mp_runner.py DIR [NAME_SUBSTRING]. Runs every test_* function of every
test_*.py file in DIR; prints each failure with its traceback and a closing count line.
"""

import os
import sys


def _dirname(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else "."


def main(argv):
    test_dir = argv[1] if len(argv) > 1 else "tests/portable"
    pattern = argv[2] if len(argv) > 2 else ""
    root = _dirname(_dirname(argv[0])) if "/" in argv[0] else ".."
    for p in (test_dir, root + "/runtime"):
        if p not in sys.path:
            sys.path.insert(0, p)
    import mpcompat

    passed = failed = not_run = 0
    for fname in sorted(os.listdir(test_dir)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        modname = fname[:-3]
        module = __import__(modname)
        names = sorted(n for n in dir(module) if n.startswith("test_") and pattern in modname + "." + n)
        for name in names:
            fn = getattr(module, name)
            if not callable(fn):
                continue
            try:
                fn()
                passed += 1
            except mpcompat.NotOnMicroPython as e:
                not_run += 1
                print("NOT RUN ON MICROPYTHON %s.%s: %s" % (modname, name, e))
            except Exception as e:  # noqa: BLE001 - a runner reports every failure
                failed += 1
                print("FAILED %s.%s" % (modname, name))
                sys.print_exception(e)
        print("%s: %d tests" % (fname, len(names)))
    print("micropython: %d passed, %d failed, %d not run on MicroPython" % (passed, failed, not_run))
    return 1 if failed else 0


sys.exit(main(sys.argv))
