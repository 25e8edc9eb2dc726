"""The bridge takes only names every transport carries (docs/protocol.md §7): it refuses others from its
operator at once, and drops and counts them from its devices (a spool's inbox names, a src, a dst)."""

from __future__ import annotations

import pytest
from mosquitto import free_port
from spoolbus import wire
from spoolbus.spool import Spool
from spoolbus.transport.spool import SpoolTransport
from spoolbus_host.bridge.gateway import Bridge
from test_bridge import _Fake


@pytest.mark.parametrize("name", ["gw.1", "g/w", "", "_gw", "x" * 65])
def test_a_bridge_name_outside_the_rule_is_refused(tmp_path, name):
    with pytest.raises(ValueError, match="is not a bridge or device name|is reserved"):
        Bridge(name, "127.0.0.1", free_port(), str(tmp_path / "outbox"))


def test_a_device_name_outside_the_rule_is_refused_and_the_bridge_goes_on(tmp_path):
    a = Bridge("A", "127.0.0.1", free_port(), str(tmp_path / "outbox"))
    try:
        for name in ("dev.1", "a~b", "_bridge", "_x", ".held"):
            with pytest.raises(ValueError, match="is not a bridge or device name|is reserved"):
                a.attach(name, _Fake())
        a.attach("dev-1", _Fake())
        assert set(a.links) == {"dev-1"}
    finally:
        a.close()
        a.client.loop_stop()


def _call(src: str, dst: str, n: int) -> bytes:
    return wire.encode(wire.Envelope(kind=wire.CALL, id=n, src=src, dst=dst, method="s.m", version="1.0",
                                     body={}))


def test_names_from_a_spool_outside_the_rule_are_dropped_and_counted_not_a_crash(tmp_path):
    root = tmp_path / "spool"
    dev = SpoolTransport(str(root), "A/dev", gateway="A/_bridge")
    for made_by_hand in ("A~dev.x", "A~_x"):  # inboxes no SpoolTransport makes (a '.', spoolbus's '_')
        Spool(str(root / made_by_hand)).close()
    a = Bridge("A", "127.0.0.1", free_port(), str(tmp_path / "outbox"))
    try:
        a.attach_spool(str(root))
        assert set(a.links) == {"dev"}
        to_bridge = Spool(str(root / "A~_bridge"))
        for n, (src, dst) in enumerate((("A/dev.x", "A/dev"), ("A/_x", "A/dev"), ("A/dev", "A/dev.x"),
                                        ("A/dev", "A/_x"), ("A/dev", "gw.1/x")), 1):
            to_bridge.put(_call(src, dst, n))
        a.step(0)
        a.step(0)
        assert a.stats["spoofed"] == 2 and a.stats["bad_destination"] == 3, a.stats
        assert a.stats["internal_errors"] == 0 and set(a.links) == {"dev"}
        replies = [wire.decode(dev.recv()) for _ in range(3)]
        assert [r.reply_to for r in replies] == [3, 4, 5]
        assert all(r.kind == wire.ERROR and r.body["type"] == "unreachable" for r in replies)
        assert dev.recv() is None  # a source outside the rule has no inbox to answer
    finally:
        a.close()
        a.client.loop_stop()
