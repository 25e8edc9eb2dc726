"""The `spoolbus` command: `main` dispatches, one module per subcommand, nothing else.

Nothing outside this folder imports it; it imports any room it needs, and each subcommand's
module only when that subcommand runs.
"""
