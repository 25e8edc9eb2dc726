"""The spool transport delivers through inbox directories, in order, and nodes talk over it."""

import os

from mpcompat import raises, remove_tree, tmpdir
from spoolbus import contract, errors, node
from spoolbus.spool import SpoolFull
from spoolbus.transport.spool import SpoolTransport

COUNTER = contract.Service("counter", "1.0").method("add", ("n", int, 1))


class Counter:
    def __init__(self):
        self.total = 0

    def add(self, n=1):
        self.total += n
        return self.total


def test_send_puts_into_the_destination_inbox_and_recv_takes_in_order():
    root = tmpdir()
    try:
        a = SpoolTransport(root, "a")
        b = SpoolTransport(root, "b")
        for i in range(5):
            a.send("b", ("m%d" % i).encode())
        assert [b.recv() for _ in range(6)] == [b"m0", b"m1", b"m2", b"m3", b"m4", None]
        assert sorted(a.peers()) == ["b"] and sorted(b.peers()) == ["a"]
    finally:
        remove_tree(root)


def test_messages_wait_for_a_node_that_has_not_started():
    root = tmpdir()
    try:
        SpoolTransport(root, "a").send("late", b"hello")
        assert SpoolTransport(root, "late").recv() == b"hello"
    finally:
        remove_tree(root)


def test_recv_waits_up_to_its_timeout():
    root = tmpdir()
    try:
        a = SpoolTransport(root, "a")
        t0 = node._ticks_ms()
        assert a.recv(30) is None
        assert node._ticks_diff(node._ticks_ms(), t0) >= 30
    finally:
        remove_tree(root)


def test_full_inbox_and_bad_names_are_errors():
    root = tmpdir()
    try:
        a = SpoolTransport(root, "a", max_messages=2)
        a.send("b", b"1")
        a.send("b", b"2")
        with raises(SpoolFull):
            a.send("b", b"3")
        for bad in ("../etc", "a/b/c", "a~b", "/a", "a/", "a/.b", "", ".hidden", 7):
            with raises(ValueError):
                a.send(bad, b"x")
        for bad in ("two/sl/ashes", "tilde~", "a/../b"):
            with raises(ValueError):
                SpoolTransport(root, bad)
        with raises(ValueError):
            SpoolTransport(root, "a", gateway="bad~gateway")
    finally:
        remove_tree(root)


def test_nodes_call_cast_and_hello_over_the_spool():
    root = tmpdir()
    try:
        srv = node.Node("srv", SpoolTransport(root, "srv"))
        impl = Counter()
        srv.serve(COUNTER, impl)
        cli = node.Node("cli", SpoolTransport(root, "cli"))
        assert cli.hello() == 1
        srv.poll(0)
        cli.poll(0)
        assert cli.peer_version("srv", "counter") == "1.0"
        ticket = cli.send_call("srv", "counter.add", {"n": 5})
        assert not cli.ready(ticket)
        srv.poll(0)
        cli.poll(0)
        assert cli.ready(ticket) and cli.result(ticket) == 5
        cli.client("srv", COUNTER).cast("add")
        srv.poll(0)
        assert impl.total == 6
        bad = node.Node("bad", SpoolTransport(root, "bad"))
        srv.transport.send("srv", b"\x00garbage")
        ticket = bad.send_call("srv", "counter.add", {"n": "x"})
        srv.poll(0)
        bad.poll(0)
        with raises(errors.RemoteError) as r:
            bad.result(ticket)
        assert r.value.type == "invalid_arguments"
        assert srv.stats["malformed"] == 1 and impl.total == 6
    finally:
        remove_tree(root)


def test_a_bridge_device_name_maps_to_a_tilde_inbox_and_back():
    root = tmpdir()
    try:
        sensor = SpoolTransport(root, "B/sensor")
        SpoolTransport(root, "B/_bridge")
        sensor.send("B/_bridge", b"up")
        assert sorted(os.listdir(root)) == ["B~_bridge", "B~sensor"]
        assert sensor.peers() == ["B/_bridge"] and sensor.has_inbox("B/_bridge")
        assert not sensor.has_inbox("B/thermo")
        assert SpoolTransport(root, "B/_bridge").recv() == b"up"
    finally:
        remove_tree(root)


def test_without_a_gateway_a_send_makes_the_missing_inbox():
    root = tmpdir()
    try:
        SpoolTransport(root, "B/sensor").send("C/thermo", b"waits")
        assert SpoolTransport(root, "C/thermo").recv() == b"waits"
    finally:
        remove_tree(root)


def test_with_a_gateway_a_message_for_a_node_without_inbox_goes_to_the_gateway():
    root = tmpdir()
    try:
        bridge = SpoolTransport(root, "B/_bridge")
        sensor = SpoolTransport(root, "B/sensor", gateway="B/_bridge")
        sensor.send("C/thermo", b"far")
        assert not sensor.has_inbox("C/thermo") and bridge.recv() == b"far"
        logger = SpoolTransport(root, "B/logger")
        sensor.send("B/logger", b"near")  # has an inbox here: straight to it, not through the gateway
        assert logger.recv() == b"near" and bridge.recv() is None
        sensor.send("B/late", b"1")  # no inbox yet: gateway; once it has one, straight to it
        late = SpoolTransport(root, "B/late")
        sensor.send("B/late", b"2")
        assert bridge.recv() == b"1" and late.recv() == b"2" and late.recv() is None
    finally:
        remove_tree(root)


def test_a_device_node_calls_another_through_a_shared_spool():
    root = tmpdir()
    try:
        srv = node.Node("B/srv", SpoolTransport(root, "B/srv", gateway="B/_bridge"))
        impl = Counter()
        srv.serve(COUNTER, impl)
        cli = node.Node("B/cli", SpoolTransport(root, "B/cli", gateway="B/_bridge"))
        ticket = cli.send_call("B/srv", "counter.add", {"n": 2})
        srv.poll(0)
        cli.poll(0)
        assert cli.result(ticket) == 2
    finally:
        remove_tree(root)
