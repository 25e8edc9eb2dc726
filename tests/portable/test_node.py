"""Nodes call, cast, notify and hello over the loopback transport; bad messages are dropped and counted."""

import sys

from mpcompat import cpython_only, raises
from spoolbus import cbor, contract, errors, node, wire
from spoolbus.transport.loopback import Hub, Loopback
from spoolbus.transport.mqtt_client import MQTTRefused

THERMO = contract.Service("thermo", "1.3")
THERMO.method("read", ("sensor", str), ("unit", str, "C", "1.2"))
THERMO.method("fail", ("why", str))
THERMO.method("calibrate", ("offset", float), since="1.3")
THERMO.method("bad_reply")
THERMO.method("ask_back", ("dst", str))

THERMO_1_1 = contract.Service("thermo", "1.1")
THERMO_1_1.method("read", ("sensor", str))
THERMO_1_1.method("fail", ("why", str))
THERMO_1_1.method("bad_reply")
THERMO_1_1.method("ask_back", ("dst", str))

ECHO = contract.Service("echo", "1.0").method("echo", ("x", None))


class DetailedError(Exception):
    def __init__(self, msg, details):
        super().__init__(msg)
        self.details = details


class Thermo:
    def __init__(self, nd=None):
        self.node = nd
        self.reads = 0
        self.offset = 0.0

    def read(self, sensor, unit="C"):
        self.reads += 1
        return {"sensor": sensor, "value": 21.5 + self.offset, "unit": unit}

    def fail(self, why):
        raise DetailedError("it failed: " + why, {"why": why})

    def calibrate(self, offset):
        self.offset = offset
        return True

    def bad_reply(self):
        return object()

    def ask_back(self, dst):
        return self.node.call(dst, "echo.echo", {"x": "nested"}, timeout=1)


def _pair(server_contract=THERMO, attach_server=True, **kw):
    hub = Hub()
    srv = node.Node("srv", Loopback(hub, "srv"), **kw)
    cli = node.Node("cli", Loopback(hub, "cli"), **kw)
    impl = Thermo(srv)
    srv.serve(server_contract, impl)
    if attach_server:
        hub.attach(srv)
    hub.attach(cli)
    return hub, srv, cli, impl


def test_call_returns_the_reply_and_cast_runs_once_without_one():
    hub, srv, cli, impl = _pair()
    assert cli.call("srv", "thermo.read", {"sensor": "t1"}) == {"sensor": "t1", "value": 21.5, "unit": "C"}
    cli.cast("srv", "thermo.calibrate", {"offset": 1.0}, version="1.3")
    srv.poll(0)
    assert impl.offset == 1.0
    assert cli.call("srv", "thermo.read", {"sensor": "t1"})["value"] == 22.5
    assert srv.stats["calls_served"] == 2 and srv.stats["casts_served"] == 1
    assert hub.inboxes["cli"] == [] and hub.inboxes["srv"] == []


def test_handler_error_is_a_remote_error_with_type_message_details_and_no_traceback():
    hub, srv, cli, impl = _pair()
    with raises(errors.RemoteError) as r:
        cli.call("srv", "thermo.fail", {"why": "sensor unplugged"})
    e = r.value
    assert e.type == "DetailedError"
    assert e.message == "it failed: sensor unplugged"
    assert e.details == {"why": "sensor unplugged"}
    assert e.trace is None
    assert srv.stats["handler_errors"] == 1


def test_debug_flag_sends_the_traceback():
    hub, srv, cli, impl = _pair(debug=True)
    with raises(errors.RemoteError) as r:
        cli.call("srv", "thermo.fail", {"why": "x"})
    assert "it failed" in r.value.trace


def test_contract_breaks_come_back_as_typed_remote_errors():
    hub, srv, cli, impl = _pair()
    cases = (
        ("nosvc.read", {"sensor": "a"}, "1.0", "no_such_service"),
        ("thermo.write", {}, "1.0", "no_such_method"),
        ("thermo.read", {"sensor": 3}, "1.0", "invalid_arguments"),
        ("thermo.read", {}, "1.0", "invalid_arguments"),
        ("thermo.read", {"sensor": "a"}, "1.4", "unsupported_version"),
        ("thermo.read", {"sensor": "a"}, "2.0", "unsupported_version"),
        ("thermo.read", {"sensor": "a", "unit": "F"}, "1.0", "unsupported_version"),  # unit is 1.2
        ("thermo.calibrate", {"offset": 1.0}, "1.2", "unsupported_version"),  # calibrate is 1.3
        ("thermo.read", [1, 2], "1.0", "invalid_arguments"),
        ("thermo.bad_reply", {}, "1.0", "invalid_reply"),
    )
    for method, args, version, want in cases:
        with raises(errors.RemoteError) as r:
            cli.call("srv", method, args, version=version)
        assert r.value.type == want, (method, r.value)
    assert impl.reads == 0 and impl.offset == 0.0
    assert srv.stats["contract_errors"] == len(cases) - 1  # invalid_reply is the handler's reply
    assert cli.call("srv", "thermo.read", {"sensor": "a"})["sensor"] == "a"


def test_a_server_checks_a_call_against_the_version_it_declares_and_the_client_declares_what_it_needs():
    hub, srv, cli, impl = _pair()
    with raises(errors.RemoteError) as r:
        cli.call("srv", "thermo.calibrate", {"offset": 1.0})  # raw call: declares 1.0
    assert r.value.type == "unsupported_version" and r.value.details == {"version": "1.3"}
    assert "needs API 1.3" in r.value.message and impl.offset == 0.0
    c = cli.client("srv", THERMO)
    assert c.call("calibrate", {"offset": 1.0}) is True
    assert c.call("read", {"sensor": "a", "unit": "F"})["value"] == 22.5
    assert impl.offset == 1.0 and srv.stats["contract_errors"] == 1


def test_a_handler_raising_a_spoolbus_error_sends_its_wire_name():
    hub = Hub()
    srv = node.Node("srv", Loopback(hub, "srv"))
    srv.serve(ECHO, {"echo": _refuse_echo})
    cli = node.Node("cli", Loopback(hub, "cli"))
    hub.attach(srv)
    with raises(errors.RemoteError) as r:
        cli.call("srv", "echo.echo", {"x": 1})
    assert (r.value.type, r.value.message) == ("invalid_arguments", "no good: 1")


def _refuse_echo(x):
    raise errors.InvalidArguments("no good: %r" % (x,))


def test_client_checks_the_contract_before_sending():
    hub, srv, cli, impl = _pair()
    c = cli.client("srv", THERMO)
    with raises(errors.InvalidArguments):
        c.call("read", {"sensor": 1})
    with raises(errors.NoSuchMethod):
        c.call("write")
    assert hub.inboxes["srv"] == []
    assert c.call("read", {"sensor": "a", "unit": "F"})["unit"] == "F"


def test_version_cap_stops_calls_that_need_a_newer_api():
    hub, srv, cli, impl = _pair()
    c = cli.client("srv", THERMO, version_cap="1.1")
    assert c.can_send_version("1.1") and not c.can_send_version("1.2")
    assert c.call("read", {"sensor": "a"})["unit"] == "C"
    with raises(errors.UnsupportedVersion) as r:
        c.call("read", {"sensor": "a", "unit": "F"})
    assert "1.2" in str(r.value) and "1.1" in str(r.value)
    with raises(errors.UnsupportedVersion):
        c.call("calibrate", {"offset": 1.0})
    assert hub.inboxes["srv"] == []


def test_hello_tells_peers_services_versions_and_caps_the_client():
    hub, srv, cli, impl = _pair(server_contract=THERMO_1_1)
    assert cli.hello() == 1
    srv.poll(0)
    cli.poll(0)
    assert cli.peers["srv"][0] == {"thermo": "1.1"}
    assert srv.peers["cli"][0] == {}
    assert cli.peer_version("srv", "thermo") == "1.1"
    c = cli.client("srv", THERMO)
    assert not c.can_send_version("1.2")
    with raises(errors.UnsupportedVersion):
        c.call("read", {"sensor": "a", "unit": "F"})
    assert c.call("read", {"sensor": "a"})["unit"] == "C"


def test_hello_tells_the_firmware_the_node_runs_on():
    hub, srv, cli, impl = _pair(attach_server=False)
    cli.hello("srv")
    env = wire.decode(srv.transport.recv(0))
    v = sys.implementation.version
    assert env.body["firmware"].startswith("%s %d.%d.%d" % (sys.implementation.name, v[0], v[1], v[2]))
    cli.firmware = "sensor-app 2.1"  # an application may tell its own
    cli.hello("srv")
    assert wire.decode(srv.transport.recv(0)).body["firmware"] == "sensor-app 2.1"


def test_notify_reaches_only_peers_that_subscribed_in_hello():
    hub = Hub()
    pub = node.Node("pub", Loopback(hub, "pub"))
    sub = node.Node("sub", Loopback(hub, "sub"))
    other = node.Node("other", Loopback(hub, "other"))
    got = []
    sub.subscribe("temp.changed", lambda ev, body, src: got.append((ev, body, src)))
    for n in (sub, other):
        n.hello("pub")
    pub.poll(0)
    sub.poll(0)
    other.poll(0)
    assert pub.notify("temp.changed", {"t": 22}) == 1
    assert pub.notify("nobody.cares", 1) == 0
    sub.poll(0)
    other.poll(0)
    assert got == [("temp.changed", {"t": 22}, "pub")]
    assert other.stats["notified"] == 0


def test_call_to_a_silent_node_times_out_and_its_late_reply_is_counted():
    hub = Hub()
    srv = node.Node("srv", Loopback(hub, "srv"), clock=False)  # cannot tell the call expired
    srv.serve(THERMO, Thermo())
    cli = node.Node("cli", Loopback(hub, "cli"))
    with raises(errors.Timeout) as r:
        cli.call("srv", "thermo.read", {"sensor": "a"}, timeout=0.05)
    assert "may or may not have run" in str(r.value)
    srv.poll(0)
    cli.poll(0)
    assert cli.stats["late_replies"] == 1
    assert len(cli._calls) == 0


class LosesFirstMessage(Loopback):
    """A link that loses the first message it receives."""

    lost = False

    def recv(self, timeout_ms=0):
        data = Loopback.recv(self, timeout_ms)
        if data is not None and not self.lost:
            self.lost = True
            return None
        return data


def test_retry_uses_the_same_id_and_the_server_executes_once_and_resends_its_reply():
    hub = Hub()
    srv = node.Node("srv", Loopback(hub, "srv"))
    impl = Thermo()
    srv.serve(THERMO, impl)
    cli = node.Node("cli", LosesFirstMessage(hub, "cli"), retry_s=0.01)
    hub.attach(srv)
    assert cli.call("srv", "thermo.read", {"sensor": "a"}, retries=3)["sensor"] == "a"
    assert impl.reads == 1
    assert srv.stats["duplicate"] >= 1 and srv.stats["calls_served"] == 1


def test_expired_call_is_dropped_and_not_executed():
    hub, srv, cli, impl = _pair()
    env = wire.Envelope(kind=wire.CALL, id=5, src="cli", dst="srv", method="thermo.read", version="1.0",
                        body={"sensor": "a"}, deadline=cli.now_ms() - 1000, seq=[1, 1])
    hub.inboxes["srv"].append(wire.encode(env))
    srv.poll(0)
    assert srv.stats["expired"] == 1 and impl.reads == 0
    assert hub.inboxes["cli"] == []


def test_node_without_clock_learns_time_from_hello_then_drops_expired_calls():
    hub = Hub()
    srv = node.Node("srv", Loopback(hub, "srv"), clock=False)
    impl = Thermo()
    srv.serve(THERMO, impl)
    host = node.Node("host", Loopback(hub, "host"))
    assert srv.now_ms() is None
    stale = wire.Envelope(kind=wire.CALL, id=5, src="host", dst="srv", method="thermo.read", version="1.0",
                          body={"sensor": "a"}, deadline=host.now_ms() - 1000, seq=[1, 1])
    hub.inboxes["srv"].append(wire.encode(stale))
    srv.poll(0)
    assert impl.reads == 1  # no clock: the deadline cannot be checked
    host.hello("srv")
    srv.poll(0)
    assert abs(srv.now_ms() - host.now_ms()) < 1000
    stale.id = 6
    hub.inboxes["srv"].append(wire.encode(stale))
    srv.poll(0)
    assert impl.reads == 1 and srv.stats["expired"] == 1


def test_unknown_wire_major_gets_an_error_reply_naming_the_supported_version():
    hub, srv, cli, impl = _pair()
    future = cbor.dumps({0: [2, 0], 1: 0, 2: 77, 3: "cli", 4: "srv", 5: "thermo.read", 7: {"sensor": "a"}})
    hub.inboxes["srv"].append(future)
    srv.poll(0)
    assert srv.stats["bad_wire_version"] == 1 and impl.reads == 0
    reply = wire.decode(hub.inboxes["cli"][0])
    assert reply.kind == wire.ERROR and reply.reply_to == 77
    assert reply.body["type"] == "unsupported_wire_version"
    assert reply.body["details"] == {"supported": list(wire.WIRE_VERSION)}


def test_newer_wire_minor_with_unknown_keys_is_served():
    hub, srv, cli, impl = _pair()
    newer = cbor.dumps({0: [1, 7], 1: 0, 2: 78, 3: "cli", 4: "srv", 5: "thermo.read", 6: "1.0",
                        7: {"sensor": "a"}, 40: "a key from the future"})
    hub.inboxes["srv"].append(newer)
    srv.poll(0)
    assert impl.reads == 1
    assert wire.decode(hub.inboxes["cli"][0]).kind == wire.REPLY


_KEYS = {"srv": b"server key", "cli": b"client key"}


def test_signed_nodes_talk_and_forged_replayed_unsigned_and_oversized_messages_are_refused():
    hub, srv, cli, impl = _pair(keys=_KEYS, require=True)
    assert cli.call("srv", "thermo.read", {"sensor": "a"})["sensor"] == "a"
    captured = None
    cli.cast("srv", "thermo.calibrate", {"offset": 2.0}, version="1.3")
    captured = hub.inboxes["srv"][0]
    srv.poll(0)
    assert impl.offset == 2.0
    impl.offset = 0.0
    hub.inboxes["srv"].append(captured)  # replay
    env = wire.decode(captured)
    env.body = {"offset": 9.0}
    hub.inboxes["srv"].append(wire.encode(env))  # forged: body changed, signature kept
    env.sig = None
    hub.inboxes["srv"].append(wire.encode(env))  # unsigned
    hub.inboxes["srv"].append(b"\xa0" * 5000)  # oversized
    srv.poll(0)
    assert impl.offset == 0.0
    st = srv.stats
    assert (st["replayed"], st["forged"], st["unsigned"], st["oversized"]) == (1, 1, 1, 1)
    assert cli.call("srv", "thermo.read", {"sensor": "b"})["sensor"] == "b"


def test_node_without_the_peer_key_refuses_its_signed_messages_when_signatures_are_required():
    hub = Hub()
    srv = node.Node("srv", Loopback(hub, "srv"), keys={"srv": b"k"}, require=True)
    srv.serve(THERMO, Thermo())
    cli = node.Node("cli", Loopback(hub, "cli"), keys={"cli": b"other"})
    cli.cast("srv", "thermo.read", {"sensor": "a"})
    srv.poll(0)
    assert srv.stats["unknown_key"] == 1


def test_garbage_is_counted_and_the_node_keeps_serving():
    hub, srv, cli, impl = _pair()
    for junk in (b"", b"\xff", b"\x00\x01\x02", cbor.dumps([1, 2]), cbor.dumps({0: [1, 0]}),
                 cbor.dumps({0: [1, 0], 1: 99, 2: 1, 3: "cli", 4: "srv"}),
                 cbor.dumps({0: [1, 0], 1: 0, 2: 1, 3: "cli", 4: "someone-else", 5: "thermo.read"})):
        hub.inboxes["srv"].append(junk)
    srv.poll(0)
    st = srv.stats
    assert st["malformed"] + st["misrouted"] == 7, st
    assert cli.call("srv", "thermo.read", {"sensor": "a"})["sensor"] == "a"


def test_nested_call_from_inside_a_handler_is_served():
    hub, srv, cli, impl = _pair()
    cli.serve(ECHO, {"echo": lambda x: x})
    assert cli.call("srv", "thermo.ask_back", {"dst": "cli"}) == "nested"


def test_dedup_cache_and_peer_table_stay_bounded():
    hub, srv, cli, impl = _pair(dedup_size=4, max_peers=3)
    for i in range(10):
        cli.call("srv", "thermo.read", {"sensor": "s%d" % i})
    assert len(srv._dedup._entries) == 4 and srv.stats["dedup_evicted"] == 6
    for i in range(6):
        n = node.Node("p%d" % i, Loopback(hub, "p%d" % i))
        n.hello("srv")
    srv.poll(0)
    assert len(srv.peers) == 3 and srv.stats["peers_evicted"] == 3


def test_too_many_calls_in_flight_is_busy():
    hub, srv, cli, impl = _pair(max_pending=2)
    cli.send_call("srv", "thermo.read", {"sensor": "a"})
    cli.send_call("srv", "thermo.read", {"sensor": "a"})
    with raises(errors.Busy):
        cli.send_call("srv", "thermo.read", {"sensor": "a"})


def test_serve_refuses_an_implementation_that_lacks_a_method():
    hub, srv, cli, impl = _pair()
    with raises(errors.ContractError) as r:
        srv.serve(THERMO, {"read": lambda sensor, unit="C": 1})
    assert "fail" in str(r.value)


@cpython_only("this MicroPython unix build freezes no asyncio")
def test_acall_and_arun_work_under_asyncio():
    import asyncio

    hub = Hub()
    srv = node.Node("srv", Loopback(hub, "srv"))
    srv.serve(THERMO, Thermo())
    cli = node.Node("cli", Loopback(hub, "cli"))

    async def main():
        serving = asyncio.create_task(srv.arun(1))
        try:
            return await cli.acall("srv", "thermo.read", {"sensor": "a"}, timeout=2)
        finally:
            serving.cancel()

    assert asyncio.run(main())["sensor"] == "a"


class PointToPoint:
    """A link with one peer at the other end (like a serial line): it cannot list peers."""

    def __init__(self, hub, name):
        self._link = Loopback(hub, name)

    def send(self, dst, data):
        self._link.send(dst, data)

    def recv(self, timeout_ms=0):
        return self._link.recv(timeout_ms)

    def close(self):
        pass


def test_hello_needs_a_destination_on_a_transport_that_cannot_list_peers():
    hub = Hub()
    n = node.Node("a", PointToPoint(hub, "a"))
    with raises(errors.SpoolbusError):
        n.hello()
    assert n.hello("b") == 1


def test_stale_replies_left_for_an_earlier_run_do_not_answer_new_calls():
    hub, srv, cli, impl = _pair()
    for i in range(1, 101):  # replies to calls 1..100 of a run of "cli" that was killed
        hub.inboxes["cli"].append(wire.encode(wire.Envelope(kind=wire.REPLY, id=i, src="srv", dst="cli",
                                                            reply_to=i, body="stale")))
    assert cli.call("srv", "thermo.read", {"sensor": "a"})["sensor"] == "a"
    cli.poll(0)
    while hub.inboxes["cli"]:
        cli.poll(0)
    assert cli.stats["late_replies"] == 100


class FaultyLink(Loopback):
    """A link whose recv raises each exception queued in `faults`, one per recv, before it delivers."""

    def __init__(self, hub, name):
        Loopback.__init__(self, hub, name)
        self.faults = []

    def recv(self, timeout_ms=0):
        if self.faults:
            raise self.faults.pop(0)
        return Loopback.recv(self, timeout_ms)


def test_transport_errors_while_a_call_waits_free_its_slot_and_later_calls_succeed():
    hub = Hub()
    srv = node.Node("srv", Loopback(hub, "srv"))
    srv.serve(THERMO, Thermo())
    link = FaultyLink(hub, "cli")
    cli = node.Node("cli", link, max_pending=2)
    hub.attach(srv)
    for i in range(5):  # more faults than slots: the board rebooted, the link broke, the port vanished
        link.faults.append(OSError(5, "EIO") if i % 2 else errors.LinkError("the serial link is closed"))
        with raises(Exception):
            cli.call("srv", "thermo.read", {"sensor": "a"})
        assert len(cli._calls) == 0
    for event in (errors.LinkReset("srv restarted"), errors.LinkDown("no frame for 3000 ms"),
                  errors.LinkReset("srv restarted")):
        link.faults.append(event)  # a link event loses the waiting call: it ends with the event at once
        with raises(type(event)):
            cli.call("srv", "thermo.read", {"sensor": "b"}, timeout=30)
        assert len(cli._calls) == 0
        link.faults.append(event)  # unless it has retries left: then it is sent again at once
        assert cli.call("srv", "thermo.read", {"sensor": "b"}, timeout=30, retries=1)["sensor"] == "b"
    while hub.inboxes["cli"]:  # the replies to the calls that ended with the event come late
        cli.poll(0)
    assert (cli.stats["link_resets"], cli.stats["link_downs"]) == (4, 2)
    assert cli.call("srv", "thermo.read", {"sensor": "c"})["sensor"] == "c"
    assert len(cli._calls) == 0 and hub.inboxes["cli"] == []


def test_tickets_nobody_asks_about_again_give_their_slots_back_when_their_time_is_up():
    import time

    hub, srv, cli, impl = _pair(attach_server=False, max_pending=2)
    for _ in range(2):
        cli.send_call("srv", "thermo.read", {"sensor": "a"}, timeout=0.02)  # a board loop forgets them
    with raises(errors.Busy):
        cli.send_call("srv", "thermo.read", {"sensor": "a"})
    time.sleep(0.03)
    hub.attach(srv)
    assert cli.call("srv", "thermo.read", {"sensor": "b"})["sensor"] == "b"  # swept out on demand
    assert len(cli._calls) == 0
    t = cli.send_call("srv", "thermo.read", {"sensor": "c"}, timeout=0.02)
    time.sleep(0.03)
    assert cli.ready(t) and len(cli._calls) == 0  # ready() lets go of a call whose time is up
    with raises(errors.Timeout):
        cli.result(t)


def test_poll_counts_link_events_and_returns_so_a_board_loop_keeps_serving():
    hub = Hub()
    link = FaultyLink(hub, "srv")
    srv = node.Node("srv", link)
    impl = Thermo()
    srv.serve(THERMO, impl)
    cli = node.Node("cli", Loopback(hub, "cli"))
    link.faults = [errors.LinkDown("no frame from the bridge"), errors.LinkReset("the bridge restarted")]
    t = cli.send_call("srv", "thermo.read", {"sensor": "a"})
    served = 0
    for _ in range(3):  # the README's board loop: while True: nd.poll(20)
        served += srv.poll(0)
    assert served == 1 and impl.reads == 1
    assert (srv.stats["link_downs"], srv.stats["link_resets"]) == (1, 1)
    cli.poll(0)
    assert cli.ready(t) and cli.result(t)["sensor"] == "a"


def _notify_bytes(i):
    return wire.encode(wire.Envelope(kind=wire.NOTIFY, id=i, src="cli", dst="srv", method="temp.changed",
                                     body=i, seq=[3, i]))


def test_an_internal_error_is_counted_and_logged_once_per_kind_and_interval():
    hub, srv, cli, impl = _pair()
    logged = []
    srv.log = logged.append
    srv.subscribe("temp.changed", lambda ev, body, src: None)
    srv._on_notify = lambda env: [][env.body]  # a bug in the node: IndexError

    def feed(n):
        for _ in range(n):
            hub.inboxes["srv"].append(_notify_bytes(srv.stats["received"] + 1))
        srv.poll(0, 100)

    feed(3)
    assert srv.stats["internal_errors"] == 3 and len(logged) == 1
    assert "internal error" in logged[0] and "IndexError" in logged[0] and "srv" in logged[0]
    srv._on_notify = lambda env: {}[env.body]  # another kind is logged at once
    feed(2)
    assert len(logged) == 2 and "KeyError" in logged[1]
    srv.log_interval_ms = 0  # the interval passed
    srv.debug = True  # debug adds the traceback
    feed(1)
    assert len(logged) == 4 and "KeyError" in logged[2] and "Traceback" in logged[3]
    assert srv.stats["internal_errors"] == 6
    assert cli.call("srv", "thermo.read", {"sensor": "a"})["sensor"] == "a"  # and it kept serving


def test_a_frame_too_large_for_the_heap_costs_that_frame_and_the_loop_goes_on():
    hub = Hub()
    link = FaultyLink(hub, "srv")
    srv = node.Node("srv", link)
    srv.log = lambda text: None
    srv.serve(THERMO, Thermo())
    cli = node.Node("cli", Loopback(hub, "cli"))
    link.faults = [MemoryError("memory allocation failed, allocating 4096 bytes")]
    t = cli.send_call("srv", "thermo.read", {"sensor": "a"})
    served = 0
    for _ in range(3):  # the board loop: while True: nd.poll(20)
        served += srv.poll(0)
    assert served == 1 and srv.stats["out_of_memory"] == 1 and srv.stats["internal_errors"] == 0
    cli.poll(0)
    assert cli.ready(t) and cli.result(t)["sensor"] == "a"


class Hungry(Thermo):
    """Thermo whose read runs out of memory (MemoryError) for sensor "big", as a board's would."""

    def read(self, sensor, unit="C"):
        self.reads += 1
        if sensor == "big":
            raise MemoryError("memory allocation failed, allocating 65536 bytes")
        return {"sensor": sensor}


def test_a_call_that_runs_the_heap_out_is_answered_out_of_memory_not_left_to_time_out():
    hub = Hub()
    srv = node.Node("srv", Loopback(hub, "srv"))
    logged = []
    srv.log = logged.append
    hungry = Hungry()
    srv.serve(THERMO, hungry)
    hub.attach(srv)
    cli = node.Node("cli", Loopback(hub, "cli"), timeout=0.5)
    with raises(errors.RemoteError) as e:
        cli.call("srv", "thermo.read", {"sensor": "big"})
    assert e.value.type == "out_of_memory" and "srv ran out of memory serving thermo.read" in e.value.message
    assert srv.stats["out_of_memory"] == 1 and srv.stats["handler_errors"] == 0
    assert srv.stats["internal_errors"] == 0
    assert "out of memory, message dropped: MemoryError" in logged[0] and "out_of_memory=1" in logged[0]
    assert cli.call("srv", "thermo.read", {"sensor": "a"}) == {"sensor": "a"}  # and it goes on serving
    # A retry of the same call (same id) gets the same answer from the dedup cache, without running again.
    t = cli.send_call("srv", "thermo.read", {"sensor": "big"})
    srv.poll(0)
    cli._send(t.env)
    srv.poll(0)
    assert srv.stats["duplicate"] == 1 and hungry.reads == 3


def test_internal_errors_go_to_stderr_by_default():
    assert node.Node("n", Loopback(Hub(), "n")).log.__name__ == "log"


def test_spoolbus_errors_travel_by_their_class_name_in_snake_case_and_others_by_their_class_name():
    errs = (errors.UnsupportedVersion("x"), errors.Busy("x"), errors.CBORDecodeError("x"),
            MQTTRefused("x", 5), errors.UnsupportedWireVersion((2, 0), (1, 0)), DetailedError("x", 1))
    assert [node._wire_type(e) for e in errs] == ["unsupported_version", "busy", "cbor_decode_error",
                                                  "mqtt_refused", "unsupported_wire_version", "DetailedError"]


def test_a_call_pushed_out_of_the_dedup_cache_while_it_runs_is_not_put_back():
    hub = Hub()
    srv = node.Node("srv", Loopback(hub, "srv"), dedup_size=2)
    cli = node.Node("cli", Loopback(hub, "cli"))
    echoed = []

    def busy_handler():
        for i in range(3):  # while it runs, three casts come in and push its own entry out
            cli.cast("srv", "echo.echo", {"x": i})
        srv.poll(0)
        return len(echoed)

    srv.serve(ECHO, {"echo": lambda x: echoed.append(x)})
    srv.serve(contract.Service("slow", "1.0").method("run"), {"run": busy_handler})
    hub.attach(srv)
    assert cli.call("srv", "slow.run") == 3
    assert len(srv._dedup._entries) == 2 and srv.stats["dedup_evicted"] == 2
