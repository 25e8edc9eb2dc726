"""Transports: the I/O edge of spoolbus (spool, serial, mqtt, loopback).

Each offers send(dst, data), recv(timeout_ms) -> bytes or None, and close().
"""
