"""MicroPython code that runs on a board: the deploy agent and the boot loader, sent as text by deploy/."""
