"""`python -m spoolbus_host.cli`: the `spoolbus` command without its console script."""

import sys

from spoolbus_host.cli.main import main

sys.exit(main())
