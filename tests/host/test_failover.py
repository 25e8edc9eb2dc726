"""The broker failover policy alone (mqtt/failover.py): order, waits, backoff and its reset, on an
injected clock and random source: no broker, no sleeping."""

from __future__ import annotations

import pytest
from spoolbus_host.mqtt.failover import MAX_S, UNREACHABLE_MAX_S, Failover, where

A, B, C = ("a", 1883), ("b", 1883), ("c", 1884)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def failover(*brokers, rand=lambda: 0.5, **kw) -> tuple[Failover, Clock]:
    clock = Clock()
    return Failover(brokers or (A, B, C), clock=clock, rand=rand, **kw), clock


def test_the_addresses_are_tried_in_turn_and_round_again():
    f, _ = failover()
    seen = [f.current]
    for _ in range(4):
        f.unreachable()
        seen.append(f.current)
    assert seen == [A, B, C, A, B]
    assert where(f.current) == "b:1883"


def test_a_broker_that_refuses_or_drops_the_session_backs_off_doubling_up_to_max():
    f, clock = failover(A, B)
    waits = []
    for _ in range(12):
        f.connected()  # a CONNACK, then the connection closes within a second: not a good one
        clock.now += 0.5
        waits.append(f.closed())
    assert waits[:5] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    assert waits[-1] == MAX_S and max(waits) == MAX_S and waits == sorted(waits)


def test_a_close_before_any_connack_backs_off_too():
    f, _ = failover(A)
    assert [f.closed() for _ in range(3)] == pytest.approx([0.1, 0.2, 0.4])


def test_an_unreachable_broker_is_retried_soon_but_never_faster_than_the_backoff():
    f, _ = failover(A)
    waits = [f.unreachable() for _ in range(8)]
    assert waits[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert waits[-1] == UNREACHABLE_MAX_S and max(waits) == UNREACHABLE_MAX_S


def test_the_loss_of_a_connection_that_stayed_up_moves_on_at_once_and_resets_the_backoff():
    f, clock = failover(A, B)
    for _ in range(6):
        f.unreachable()
    assert f.failures == 6
    f.connected()
    clock.now += 5.0
    assert f.current == A and f.closed() == 0.0 and f.current == B and f.failures == 0
    assert f.unreachable() == pytest.approx(0.1)  # the backoff starts again from the bottom


def test_a_connection_lost_just_before_it_counts_as_stable_is_a_failure():
    f, clock = failover(A, B, stable_s=5.0)
    f.connected()
    clock.now += 4.9
    assert f.closed() == pytest.approx(0.1) and f.failures == 1


@pytest.mark.parametrize("r, factor", [(0.0, 0.5), (0.25, 0.75), (0.5, 1.0), (0.999999, 1.5)])
def test_each_wait_is_jittered_within_half_the_backoff(r, factor):
    f, _ = failover(A, rand=lambda: r)
    f.closed()
    f.closed()
    assert f.closed() == pytest.approx(0.4 * factor, rel=1e-4)


def test_jitter_never_pushes_a_wait_past_the_cap():
    f, _ = failover(A, rand=lambda: 0.999999)
    assert max(f.closed() for _ in range(20)) == MAX_S


def test_one_broker_is_its_own_next():
    f, _ = failover(A)
    f.closed()
    assert f.current == A and f.index == 0


def test_no_broker_is_an_error_naming_the_fix():
    with pytest.raises(ValueError, match="give at least one HOST:PORT"):
        Failover([])
