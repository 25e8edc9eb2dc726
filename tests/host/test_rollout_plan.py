"""The rollout's decisions (rollout/plan.py, no I/O) and its state file (rollout/state.py, a real SQLite
file, reopened as a restarted rollout reopens it)."""

from __future__ import annotations

import sqlite3

import pytest
from spoolbus_host.rollout import plan
from spoolbus_host.rollout.state import State, StateError


def test_waves_grow_from_a_canary_and_take_every_device_once():
    steps = plan.parse_waves(plan.DEFAULT_WAVES)
    assert plan.wave_sizes(12, steps) == [1, 1, 4, 6]  # 10% of 12 rounds up to 2, 50% is 6
    assert plan.wave_sizes(50, steps) == [1, 4, 20, 25]
    assert plan.wave_sizes(1, steps) == [1]  # the canary is the whole fleet
    assert plan.wave_sizes(3, plan.parse_waves("2,100%")) == [2, 1]
    assert plan.wave_sizes(5, plan.parse_waves("10,100%")) == [5]
    for n in range(1, 60):
        assert sum(plan.wave_sizes(n, steps)) == n


@pytest.mark.parametrize("text, words", [("", "'' is not a device count"), ("1,,100%", "'' is not"),
                                         ("1,101%", "'101%'"), ("1,50%", "must end at 100%"),
                                         ("-1,100%", "'-1'"), ("1.5,100%", "'1.5'")])
def test_bad_waves_name_the_part_and_an_example(text, words):
    with pytest.raises(plan.PlanError, match="give e.g. 1,10%,50%,100%") as e:
        plan.parse_waves(text)
    assert words in str(e.value)


def test_a_release_that_breaks_callers_is_named_service_by_service():
    fleet = {"gw/a": {"app": "1.1", "update": "1.0"}, "gw/b": {"app": "1.0", "update": "1.0"}}
    ok = plan.Release({"app": "1.2", "update": "1.0"})
    assert plan.breaking(ok, fleet) == []
    assert plan.breaking(plan.Release({"app": "2.0", "update": "1.0"}), fleet) == [
        "app 1.0 -> 2.0 changes the major version", "app 1.1 -> 2.0 changes the major version"]
    assert plan.breaking(plan.Release({"app": "1.0", "update": "1.0"}), fleet) == [
        "app 1.1 -> 1.0 lowers the minor version"]
    assert plan.breaking(plan.Release({"app": "1.1"}), fleet) == [
        "service update (served today at 1.0) is not in the release"]


def test_the_gate_checks_every_declared_service_in_the_hello():
    r = plan.Release({"app": "1.1", "update": "1.0"})
    assert plan.advertises(r, {"app": "1.1", "update": "1.0", "extra": "3.0"}) is None
    assert plan.advertises(r, {"app": "1.0", "update": "1.0"}) == (
        "its hello advertises app 1.0 (the release declares 1.1)")
    assert plan.advertises(r, None) == ("its hello advertises app missing (the release declares 1.1), "
                                        "update missing (the release declares 1.0)")


def test_the_abort_rule():
    assert plan.aborts(0, 1, 1, 50.0)  # the canary may never fail
    assert not plan.aborts(1, 10, 0, 0.0)
    assert plan.aborts(1, 10, 1, 0.0)
    assert not plan.aborts(1, 10, 1, 10.0)  # "more than 10%"
    assert plan.aborts(1, 10, 2, 10.0)


def test_devices_are_selected_by_pattern_across_bridges():
    names = ["gwa/s-1", "gwa/s-2", "gwb/s-1", "gwb/cam", "other/s-1"]
    assert plan.select(names, ["gw*/s-*"]) == ["gwa/s-1", "gwa/s-2", "gwb/s-1"]
    assert plan.select(names, ["gwb/*", "other/s-?"]) == ["gwb/cam", "gwb/s-1", "other/s-1"]


def test_release_toml_is_checked(tmp_path):
    with pytest.raises(plan.PlanError, match="release.toml: no such file"):
        plan.read_release(tmp_path)
    (tmp_path / "release.toml").write_text("[services]\n")
    with pytest.raises(plan.PlanError, match=r"\[services\] is empty"):
        plan.read_release(tmp_path)
    (tmp_path / "release.toml").write_text("[services]\napp = 1.1\n")
    with pytest.raises(plan.PlanError, match="'services.app' must be of type str, not float"):
        plan.read_release(tmp_path)
    (tmp_path / "release.toml").write_text('[services]\napp = "1.1"\nupdate = "1.0"\n')
    assert plan.read_release(tmp_path).services == {"app": "1.1", "update": "1.0"}


def test_the_state_survives_a_reopen_and_is_written_only_when_a_rollout_is_planned(tmp_path):
    path = tmp_path / "state.sqlite"
    s = State(path)
    assert s.get("tree") is None and s.devices() == [] and s.waves() == 0
    assert not path.exists()  # a dry run leaves no file
    s.plan({"tree": "t1"}, [[("gwa/a", "old")], [("gwa/b", "old"), ("gwb/c", None)]])
    s.mark("gwa/a", "deploying")
    s.close()
    s = State(path)  # as a restarted rollout opens it
    assert s.get("tree") == "t1" and s.waves() == 2
    assert [(d.node, d.wave, d.state) for d in s.devices()] == [
        ("gwa/a", 0, "deploying"), ("gwa/b", 1, "pending"), ("gwb/c", 1, "pending")]
    s.mark("gwa/a", "failed", reason="no", seconds=1.5)
    s.mark("gwa/a", "rolled_back")  # the reason stays with the device
    assert s.devices(0)[0].reason == "no" and s.devices(0)[0].seconds == 1.5
    s.plan({"tree": "t2"}, [[("gwb/c", "t1")]])  # a new rollout forgets the old one
    assert s.get("tree") == "t2" and [d.node for d in s.devices()] == ["gwb/c"]
    s.close()


def test_a_file_that_is_not_a_state_file_is_refused_unchanged(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("create table notes (text)")
    db.close()
    before = other.read_bytes()
    with pytest.raises(StateError, match="not a rollout state file .it holds other tables.; name another"):
        State(other)
    assert other.read_bytes() == before
    with pytest.raises(StateError, match="is a directory"):
        State(tmp_path)
