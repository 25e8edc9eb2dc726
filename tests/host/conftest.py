"""Fixtures for the host tests: real processes started and stopped by the test."""

import shutil

import pytest
from mosquitto import Broker
from spoolbus_host import paths
from spoolbus_host.mqtt.rabbit import RabbitCluster


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


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """A snapshot of the runtime: the tests compare builds, and the checkout may change under them."""
    snap = tmp_path_factory.mktemp("runtime") / "spoolbus"
    shutil.copytree(paths.RUNTIME, snap, ignore=shutil.ignore_patterns("__pycache__"))
    return snap


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory):
    """Three RabbitMQ nodes clustered on loopback, each with an MQTT listener (addresses[i]), started
    once (~20 s) for the session: a test that kills a node restarts it before it ends."""
    cluster = RabbitCluster(tmp_path_factory.mktemp("rabbit")).start()
    yield cluster
    cluster.stop()
