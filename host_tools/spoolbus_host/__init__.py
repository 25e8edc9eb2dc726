"""spoolbus host tools: CPython only (CLI, bridge, deploy/flash, HIL plugin).

Built on the portable `spoolbus` package; the portable package never imports this one.
"""
