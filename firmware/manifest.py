# Frozen into every spoolbus firmware: the portable package and the board's entry point; the features
# a profile names are added by host_tools/spoolbus_host/boards/firmware.py (the unix and QEMU builds).
include("spoolbus/manifest.py")
module("_boot.py")
module("main.py")
module("board_app.py")
