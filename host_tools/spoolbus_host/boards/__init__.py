"""Board profiles (boards/NAME.toml), firmware builds and flashing, and the boards tests start
(a QEMU board, a MicroPython unix board on a pty).
"""
