"""The `spoolbus` command: `main` dispatches, one module per subcommand, and the checked options
they share (`options`, and `mqtt_options` for the commands on the broker).

Nothing outside this folder imports it; it imports any room it needs, and each subcommand's
module only when that subcommand runs.
"""
