"""The gateway: the devices on one host's links federated into an MQTT broker.

`gateway` runs the links and the uplink, `config` reads its TOML settings, `registry` is its
SQLite record of the devices it has seen.
"""
