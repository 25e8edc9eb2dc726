"""Presence over MQTT without retained messages or wills: statuses expire, heartbeats and who-answers pace."""

from spoolbus.errors import ticks_add
from spoolbus.transport.mqtt import ANSWER_MS, OFFLINE, ONLINE, STALE_FACTOR, Heartbeat, Presence, who_topic

T0 = 1000


def test_a_status_counts_until_it_is_stale():
    p = Presence(heartbeat_ms=100)
    p.heard("gw/a", ONLINE, T0)
    p.heard("gw/b", ONLINE, T0)
    assert p.online(T0 + 100 * STALE_FACTOR - 1) == ["gw/a", "gw/b"]
    p.heard("gw/b", ONLINE, T0 + 200)  # b's heartbeat
    assert p.online(T0 + 100 * STALE_FACTOR) == ["gw/b"]
    assert p.statuses(T0 + 100 * STALE_FACTOR) == {"gw/a": False, "gw/b": True}


def test_offline_is_offline_at_once_and_online_again_when_heard():
    p = Presence(heartbeat_ms=100)
    p.heard("gw/a", ONLINE, T0)
    p.heard("gw/a", OFFLINE, T0 + 1)
    assert p.online(T0 + 2) == [] and p.statuses(T0 + 2) == {"gw/a": False}
    p.heard("gw/a", ONLINE, T0 + 3)
    assert p.online(T0 + 4) == ["gw/a"]


def test_staleness_survives_the_tick_counter_wrapping():
    p = Presence(heartbeat_ms=100)
    near_wrap = ticks_add(0, -50)
    p.heard("gw/a", ONLINE, near_wrap)
    assert p.online(ticks_add(near_wrap, 60)) == ["gw/a"]
    assert p.online(ticks_add(near_wrap, 100 * STALE_FACTOR)) == []


def test_a_full_table_makes_room_only_from_nodes_that_are_not_online():
    p = Presence(heartbeat_ms=100, max_nodes=2)
    p.heard("gw/a", ONLINE, T0)
    p.heard("gw/b", OFFLINE, T0)
    p.heard("gw/c", ONLINE, T0)  # takes b's place
    assert p.statuses(T0) == {"gw/a": True, "gw/c": True}
    p.heard("gw/d", ONLINE, T0)  # no place while a and c are live
    assert p.online(T0) == ["gw/a", "gw/c"]
    p.heard("gw/d", ONLINE, T0 + 100 * STALE_FACTOR)  # a and c are stale now: d takes one's place
    assert p.online(T0 + 100 * STALE_FACTOR) == ["gw/d"]


def test_heartbeat_is_due_at_once_then_every_period():
    h = Heartbeat(heartbeat_ms=5000)
    assert h.due(T0)
    h.sent(T0)
    assert not h.due(T0 + 4999) and h.due(T0 + 5000)


def test_who_queries_are_answered_at_most_once_per_answer_period():
    h = Heartbeat(heartbeat_ms=60000)
    h.sent(T0)
    h.asked()
    assert not h.due(T0 + ANSWER_MS - 1)  # just announced: a crowd of queries costs one answer
    assert h.due(T0 + ANSWER_MS)
    h.sent(T0 + ANSWER_MS)
    assert not h.due(T0 + 2 * ANSWER_MS)  # answered: the next is the heartbeat's


def test_who_topic():
    assert who_topic("spoolbus") == "spoolbus/_who"
