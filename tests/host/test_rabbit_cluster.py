"""The MQTT behaviour of a three-node RabbitMQ cluster that spoolbus relies on, or must design around:
cross-node delivery, sessions that move to another node when theirs dies, retained messages that stay
on the node that took them, and no last will from a node that dies."""

from __future__ import annotations

import json
import queue
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from spoolbus_host.mqtt import rabbit


class Client:
    """A paho MQTT 3.1.1 client on one node; what it receives goes into `messages`."""

    def __init__(self, address: tuple[str, int], client_id: str, clean_session: bool = True,
                 will: str | None = None):
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.session_present: bool | None = None
        answered = threading.Event()
        self._subscribed = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                        protocol=paho.MQTTv311)
        if will:
            c.will_set(will, b"gone", qos=1)
        refused: list[object] = []

        def on_connect(client, userdata, flags, reason_code, properties):
            self.session_present = flags.session_present
            if reason_code.is_failure:
                refused.append(reason_code)
            answered.set()

        c.on_connect = on_connect
        c.on_disconnect = lambda *args: answered.set()
        c.on_subscribe = lambda *args: self._subscribed.set()
        c.on_message = lambda client, userdata, msg: self.messages.put(msg)
        c.connect(*address, keepalive=10)
        c.loop_start()
        if not answered.wait(10) or refused or self.session_present is None:
            c.loop_stop()
            raise ConnectionError(f"{client_id}: no CONNACK from {address} ({refused})")
        self.client = c

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, 1)
        assert self._subscribed.wait(10), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """QoS 1: returns once the broker has sent its PUBACK."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(20)
        assert info.is_published(), f"no PUBACK for {topic}"

    def received(self, timeout: float = 10.0) -> paho.MQTTMessage | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def abandon(self) -> None:
        """Stop the network thread without a DISCONNECT: its node died, and a reconnect to it once it
        is back would take the session away from the test."""
        self.client.loop_stop()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt():
    """Client(...) that is closed at the end of the test."""
    made: list[Client] = []

    def connect(*args, **kwargs) -> Client:
        made.append(Client(*args, **kwargs))
        return made[-1]

    yield connect
    for c in made:
        c.close()


def running_nodes(cluster, i: int) -> list[str]:
    return json.loads(cluster.ctl(i, "cluster_status", "--formatter", "json"))["running_nodes"]


def test_qos1_publish_on_one_node_reaches_a_subscriber_on_another(rabbit_cluster, mqtt):
    first, _, third = rabbit_cluster.addresses
    sub = mqtt(third, "cross-sub")
    sub.subscribe("cross/x")
    mqtt(first, "cross-pub").publish("cross/x", b"hello")
    msg = sub.received()
    assert (msg.topic, msg.payload, msg.qos) == ("cross/x", b"hello", 1)


def test_persistent_session_moves_to_another_node_when_its_node_is_killed(rabbit_cluster, mqtt):
    first, second, third = rabbit_cluster.addresses
    sub = mqtt(first, "mover", clean_session=False)
    sub.subscribe("move/#")
    pub = mqtt(second, "move-pub")
    pub.publish("move/x", b"before")
    assert sub.received().payload == b"before"
    queues = rabbit_cluster.ctl(0, "list_queues", "name", "type", "leader", "--formatter", "json")
    assert {"name": "mqtt-subscription-moverqos1", "type": "quorum",
            "leader": rabbit_cluster.names[0]} in json.loads(queues)

    killed = time.monotonic()
    rabbit_cluster.kill(0)
    try:
        sub.abandon()
        for k in range(5):  # kept by the session queue's replicas on the other two nodes
            pub.publish("move/x", b"m%d" % k)
        deadline = killed + 15
        while True:
            try:
                moved = mqtt(third, "mover", clean_session=False)
                break
            except ConnectionError:
                assert time.monotonic() < deadline, "the session did not come back on another node"
        assert moved.session_present
        payloads = [moved.received().payload for _ in range(5)]
        if payloads[0] == b"before":  # QoS 1 is at least once: an ack the dead node had not yet
            payloads = payloads[1:] + [moved.received().payload]  # replicated is lost with it
        assert payloads == [b"m%d" % k for k in range(5)]
    finally:
        rabbit_cluster.restart(0)

    # Back in the cluster by itself: its data directory names the cluster.
    assert sorted(running_nodes(rabbit_cluster, 1)) == sorted(rabbit_cluster.names)
    mqtt(first, "move-pub-again").publish("move/y", b"after")
    assert moved.received().payload == b"after"
    moved.close()
    mqtt(third, "mover", clean_session=True)  # ends the session: its queue is deleted


def test_retained_message_reaches_only_an_exact_subscription_on_the_node_that_took_it(rabbit_cluster,
                                                                                        mqtt):
    """RabbitMQ 3.10 keeps retained messages per node and looks them up by exact topic: presence
    cannot be read from retained statuses with a wildcard, nor on another node."""
    first, _, third = rabbit_cluster.addresses
    owner = mqtt(first, "retainer")
    owner.publish("keep/gw/dev", b"online", retain=True)
    subs = {}
    for node, address in (("same", first), ("other", third)):
        for pattern in ("keep/gw/dev", "keep/gw/+", "keep/#"):
            subs[node, pattern] = mqtt(address, f"keep-{node}-{len(pattern)}")
            subs[node, pattern].subscribe(pattern)
    time.sleep(1.0)
    got = {key: not c.messages.empty() for key, c in subs.items()}
    owner.publish("keep/gw/dev", b"", retain=True)  # clears it for the rest of the session
    assert got == {("same", "keep/gw/dev"): True, ("same", "keep/gw/+"): False, ("same", "keep/#"): False,
                   ("other", "keep/gw/dev"): False, ("other", "keep/gw/+"): False,
                   ("other", "keep/#"): False}


def test_a_killed_node_publishes_no_will_for_its_clients(rabbit_cluster, mqtt):
    first, second, third = rabbit_cluster.addresses
    watcher = mqtt(third, "will-watcher")
    watcher.subscribe("will/#")

    dropped = mqtt(first, "will-dropped", will="will/dropped")
    dropped.abandon()
    dropped.client.socket().close()  # the client's connection dies, its node lives: the will is sent
    assert watcher.received().topic == "will/dropped"

    mqtt(second, "will-orphan", will="will/orphan").abandon()
    rabbit_cluster.kill(1)
    try:
        assert watcher.received(3.0) is None
    finally:
        rabbit_cluster.restart(1)


def test_a_cluster_without_rabbitmq_installed_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(rabbit, "SBIN", tmp_path / "nowhere")
    with pytest.raises(RuntimeError, match="scripts/setup.sh"):
        rabbit.RabbitCluster(tmp_path / "cluster").start()
