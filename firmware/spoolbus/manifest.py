# The portable package as every spoolbus firmware freezes it: the protocol layers and the transports
# that need no network. Optional features add their modules (firmware/features/NAME/manifest.py);
# tests/host/test_boards.py checks that each module of runtime/spoolbus/ is frozen by one of them.
package(
    "spoolbus",
    files=[
        "__init__.py", "errors.py", "crc.py", "cbor.py", "frame.py", "wire.py", "auth.py", "contract.py",
        "proc.py", "lock.py", "spool.py", "node.py", "client.py", "update.py", "appdir.py", "names.py",
        "transport/__init__.py", "transport/loopback.py", "transport/serial.py", "transport/spool.py",
    ],
    base_path="../../runtime",
)
