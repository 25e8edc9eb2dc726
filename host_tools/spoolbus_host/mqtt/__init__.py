"""MQTT on CPython: the spoolbus transport over paho-mqtt, and a real mosquitto on a free port.
"""
