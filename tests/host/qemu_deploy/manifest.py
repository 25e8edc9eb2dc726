# The QEMU board of the deploy tests: the firmware's _boot.py (littlefs RAM disk at /flash) and an entry
# point that runs what `spoolbus deploy` put there. No spoolbus frozen in: the deploy brings the runtime.
module("_boot.py", base_path="../../../firmware")
module("main.py")
