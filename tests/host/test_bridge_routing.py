"""The bridge's routing decisions on plain envelopes: no broker, no link, no process."""

from spoolbus import wire
from spoolbus_host.bridge import routing
from spoolbus_host.bridge.routing import DELIVER, DROP, HOLD, LOCAL, OUTBOX, RECORD, UPLINK, Route

LINKS = {"sensor": 1024, "thermo": 4096}  # the local devices and the largest message each link takes


def env(kind=wire.CALL, src="A/sensor", dst="A/thermo"):
    return wire.Envelope(kind=kind, id=5, src=src, dst=dst, method="thermo.read", version="1.0", body={})


def out(e, size=100, speaks_as=lambda src: src == "A/sensor", uplink_free=True, queued=0, quota=10):
    return routing.from_device("A", "spoolbus", e, size, speaks_as, LINKS.get, uplink_free, queued, quota)


def test_a_message_to_a_local_device_stays_local_with_or_without_the_uplink():
    assert out(env()) == Route(LOCAL, "local", "thermo")
    assert out(env(dst="thermo"), uplink_free=False) == Route(LOCAL, "local", "thermo")


def test_a_message_for_another_bridge_is_published_or_spooled_within_the_quota():
    assert out(env(dst="B/x")) == Route(UPLINK, "uplink", "spoolbus/B/x/inbox")
    assert out(env(dst="B/x"), uplink_free=False) == Route(OUTBOX, "spooled", "spoolbus/B/x/inbox")
    assert out(env(dst="B/x"), uplink_free=False, queued=10) == Route(DROP, "quota")


def test_a_hello_to_the_bridge_is_recorded_not_forwarded():
    for dst in ("A", "A/_bridge"):
        assert out(env(kind=wire.HELLO, dst=dst)) == Route(RECORD, "hellos")


def test_each_refusal_has_its_counter_and_error_type():
    cases = [
        (out(env(src="A/thermo")), "spoofed", routing.WRONG_SOURCE),
        (out(env(dst="A/ghost")), "bad_destination", routing.UNREACHABLE),
        (out(env(dst="a/b/c")), "bad_destination", routing.UNREACHABLE),
        (out(env(dst="A/sensor"), size=2000), "too_large", routing.TOO_LARGE),  # its link takes 1024
    ]
    for route, counter, kind in cases:
        assert (route.action, route.counter, route.error[0]) == (DROP, counter, kind), route


def test_only_a_refused_call_gets_an_error_reply_from_the_node_it_called():
    route = out(env(dst="A/ghost"))
    reply = routing.refusal(env(dst="A/ghost"), route.error, 9, "A")
    assert (reply.kind, reply.src, reply.dst, reply.reply_to, reply.body["type"]) == (
        wire.ERROR, "A/ghost", "A/sensor", 5, "unreachable")
    wire.decode(wire.encode(reply))  # a valid envelope
    assert routing.refusal(env(kind=wire.CAST, dst="A/ghost"), route.error, 9, "A") is None


def test_inbox_topics_name_the_device_of_this_bridge_only():
    assert routing.device_of("A", "spoolbus", "spoolbus/A/thermo/inbox") == "thermo"
    for topic in ("spoolbus/B/thermo/inbox", "spoolbus/A/thermo/status", "spoolbus/A//inbox",
                  "other/A/thermo/inbox", "spoolbus/A/thermo/inbox/x", "spoolbus/AB/thermo/inbox"):
        assert routing.device_of("A", "spoolbus", topic) is None, topic


def inbound(device="thermo", decoded=True, size=100, held=0, newer_wire=False):
    e = env(src="B/x", dst="A/thermo") if decoded else None
    return routing.from_broker("A", device, e, size, 4096, LINKS.get, held, newer_wire)


def test_from_the_broker_a_message_is_delivered_or_held_behind_what_waits():
    assert inbound() == Route(DELIVER, "delivered", "thermo")
    assert inbound(held=3) == Route(HOLD, "held", "thermo")
    assert inbound(decoded=False, newer_wire=True) == Route(DELIVER, "delivered", "thermo")


def test_from_the_broker_bad_input_is_dropped_with_its_counter():
    assert inbound(device=None) == Route(DROP, "bad_topic")
    assert inbound(decoded=False).counter == "malformed_in"
    assert inbound(size=5000).error[0] == routing.TOO_LARGE and inbound(size=5000).counter == "oversized_in"
    assert inbound(device="ghost").counter == "unroutable_in"
    assert inbound(device="sensor", size=2000).counter == "too_large"


def test_every_counter_is_declared_once():
    assert len(set(routing.COUNTERS)) == len(routing.COUNTERS)
    assert set(routing.ERRORS) <= set(routing.COUNTERS)
