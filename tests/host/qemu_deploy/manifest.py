# The QEMU board of the deploy tests: the firmware's _boot.py (littlefs RAM disk at /flash) and the
# deployable entry point, which runs what `spoolbus deploy` put there. No spoolbus frozen in: the deploy
# brings the runtime (the deployable variant in firmware/deployable/ freezes it).
module("_boot.py", base_path="../../../firmware")
module("main.py", base_path="../../../firmware/deployable")
