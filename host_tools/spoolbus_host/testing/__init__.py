"""What tests use: the hardware-in-the-loop pytest plugin (`hil`) and a fault-injecting serial
line (`faultproxy`). Imported only by tests and benchmarks.
"""
