"""spoolbus: versioned CBOR RPC between processes on boards and hosts.

The portable package: runs unchanged on MicroPython 1.22+ and CPython 3.10+, stdlib only.
"""

__version__ = "0.1.0"
