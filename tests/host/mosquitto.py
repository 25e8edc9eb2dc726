"""The tests' name for spoolbus_host.broker: a real mosquitto on a free port, and a scripted one."""

from spoolbus_host.broker import MOSQUITTO, Broker, ScriptedBroker, free_port, make_certs

__all__ = ["MOSQUITTO", "Broker", "ScriptedBroker", "free_port", "make_certs"]
