# Frozen into every spoolbus firmware: the portable package and the board's entry point.
# Used by host_tools/spoolbus_host/boards/firmware.py for the unix and the QEMU builds.
package("spoolbus", base_path="../runtime")
module("_boot.py")
module("main.py")
module("board_app.py")
