"""Fixtures for the host tests: real processes started and stopped by the test."""

import pytest
from mosquitto import Broker


@pytest.fixture
def mosquitto(tmp_path):
    """An anonymous mosquitto broker on a free port, with persistence (stop()/start() keep sessions)."""
    broker = Broker(tmp_path / "mosquitto", persistence=True).start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_auth(tmp_path):
    """A mosquitto broker that accepts only user 'device' with password 's3cret'."""
    broker = Broker(tmp_path / "mosquitto-auth", users={"device": "s3cret"}).start()
    yield broker
    broker.stop()
