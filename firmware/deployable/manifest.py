# The deployable firmware (variant "deployable" of firmware.ensure_built): the runtime, the board's boot
# (littlefs RAM disk at /flash) and board_app frozen in, and an entry that runs the deployed application.
include("../spoolbus/manifest.py")
module("_boot.py", base_path="..")
module("board_app.py", base_path="..")
module("main.py")
