"""One rule for bridge and device names on every transport: 1-64 of A-Z a-z 0-9 - _ (docs/protocol.md §7)."""

import os

from mpcompat import raises, remove_tree, tmpdir
from spoolbus.names import check_name
from spoolbus.transport.mqtt import base_topic, inbox_topic, status_topic
from spoolbus.transport.spool import SpoolTransport

GOOD = ("gw1", "sensor-1", "cli-4242", "rollout-4242-3", "_bridge", "B", "A_b-9", "x" * 64)
# '.' is a level separator on RabbitMQ's MQTT, '~' joins bridge~device in a spool directory,
# '/', '+', '#' are MQTT's separator and wildcards; the rest is outside the rule.
BAD = ("", "gw.1", ".hidden", "a~b", "a/b", "+", "a#", "two words", "x" * 65, "caf\u00e9", "tab\t", 7, None)


def test_check_name_returns_a_good_name_as_it_is():
    for name in GOOD:
        assert check_name(name) is name


def test_check_name_refuses_with_the_name_and_the_rule():
    for name in BAD:
        with raises(ValueError) as e:
            check_name(name)
        text = str(e.value)
        assert repr(name) in text and "1-64 of A-Z a-z 0-9 - _" in text, text
    with raises(ValueError) as e:
        check_name("gw.1")
    assert "RabbitMQ" in str(e.value)


def test_topics_are_built_only_from_good_names():
    assert base_topic("spoolbus", "gw1", "sensor-1") == "spoolbus/gw1/sensor-1"
    assert status_topic("site", "gw1", "_bridge") == "site/gw1/_bridge/status"
    for bad in ("gw.1", "a~b", ""):
        with raises(ValueError):
            base_topic("spoolbus", bad, "dev")
        with raises(ValueError):
            inbox_topic("spoolbus", "gw1", bad)
        with raises(ValueError):
            inbox_topic("spoolbus", "gw1", bad + "/dev")
    with raises(ValueError):
        inbox_topic("spoolbus", "gw1", "gw2/a/b")


def test_spool_nodes_follow_the_same_rule():
    root = tmpdir()
    try:
        SpoolTransport(root, "gw1/_bridge")
        t = SpoolTransport(root, "gw1/sensor-1", gateway="gw1/_bridge")
        for bad in ("gw.1/dev", "gw1/dev.2", "dev.2", "gw1~dev", "gw1/", "/dev"):
            with raises(ValueError) as e:
                SpoolTransport(root, bad)
            assert "1-64 of A-Z a-z 0-9 - _" in str(e.value)
            with raises(ValueError):
                t.send(bad, b"x")
            assert not t.has_inbox(bad)
        with raises(ValueError):
            SpoolTransport(root, "gw1/dev", gateway="gw1/_bridge.x")
        os.mkdir(root + "/gw1~dev.2")  # made by hand, or by an older spoolbus: not a node
        assert t.peers() == ["gw1/_bridge"]
    finally:
        remove_tree(root)
