"""Make the portable tests' helper module importable under pytest as it is under the MicroPython runner."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "portable"))
