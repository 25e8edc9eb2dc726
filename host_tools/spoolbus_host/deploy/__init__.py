"""Code onto boards: a MicroPython board over its serial port, a Linux board as a systemd service.

Either way the board runs the old tree or the complete new one: one rename is the switch.
"""
