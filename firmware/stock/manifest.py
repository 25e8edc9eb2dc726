# The stock firmware (variant "stock" of firmware.ensure_built): a MicroPython with no spoolbus frozen in,
# as a board fresh from micropython.org; only the board's boot (littlefs RAM disk at /flash) and an entry
# that runs /flash/main.py. `mip install` puts spoolbus into /flash/lib (docs/deploy.md, "Installing
# with mip").
module("_boot.py", base_path="..")
module("main.py", base_path="../deployable")  # the same entry: run /flash/main.py if there is one
