"""Contracts check argument names, types and defaults, and API versions the way oslo.messaging does."""

from mpcompat import raises
from spoolbus import contract, errors


def _thermo():
    s = contract.Service("thermo", "1.3")
    s.method("read", ("sensor", str), ("unit", str, "C", "1.2"))
    s.method("calibrate", ("offset", float), ("note", (str, type(None)), None), since="1.3")
    s.method("blob", ("data", bytes), ("tags", list, []), ("meta", dict, {}), ("flag", bool, False),
             ("n", int, 0), ("anything", None, None))
    return s


def test_parse_version_reads_major_minor_and_refuses_the_rest():
    assert contract.parse_version("1.3") == (1, 3)
    assert contract.parse_version("10.22") == (10, 22)
    for bad in ("1", "1.", ".3", "a.b", "1.3.1", 13, None, "1.-3"):
        with raises(errors.UnsupportedVersion):
            contract.parse_version(bad)


def test_server_fills_defaults_and_converts_int_to_float():
    s = _thermo()
    assert s.check_call("read", {"sensor": "t1"}, "1.0") == {"sensor": "t1", "unit": "C"}
    assert s.check_call("calibrate", {"offset": 2}, "1.3") == {"offset": 2.0, "note": None}
    assert type(s.check_call("calibrate", {"offset": 2}, "1.3")["offset"]) is float


def test_server_at_1_3_accepts_calls_targeted_1_0_to_1_3_only():
    s = _thermo()
    for v in ("1.0", "1.1", "1.2", "1.3"):
        assert s.check_call("read", {"sensor": "a"}, v)
    for v in ("1.4", "2.0", "0.9"):
        with raises(errors.UnsupportedVersion) as r:
            s.check_call("read", {"sensor": "a"}, v)
        assert "1.3" in str(r.value)


def test_missing_unknown_and_wrongly_typed_arguments_are_invalid():
    s = _thermo()
    with raises(errors.InvalidArguments) as r:
        s.check_call("read", {}, "1.0")
    assert "missing argument 'sensor'" in str(r.value)
    with raises(errors.InvalidArguments) as r:
        s.check_call("read", {"sensor": "a", "colour": "red"}, "1.0")
    assert "colour" in str(r.value)
    with raises(errors.InvalidArguments) as r:
        s.check_call("read", {"sensor": 5}, "1.0")
    assert "must be str, got int" in str(r.value)
    with raises(errors.InvalidArguments):
        s.check_call("read", ["a"], "1.0")


def test_bool_is_not_an_int_and_int_is_not_a_bool():
    s = _thermo()
    with raises(errors.InvalidArguments):
        s.check_call("blob", {"data": b"", "n": True}, "1.0")
    with raises(errors.InvalidArguments):
        s.check_call("blob", {"data": b"", "flag": 1}, "1.0")
    assert s.check_call("blob", {"data": bytearray(b"x"), "tags": (1, 2), "anything": {"k": [1]}}, "1.0")


def test_unknown_method_names_the_methods_there_are():
    with raises(errors.NoSuchMethod) as r:
        _thermo().check_call("write", {}, "1.0")
    assert "read" in str(r.value) and "calibrate" in str(r.value)


def test_client_side_version_is_the_highest_since_of_the_method_and_given_arguments():
    s = _thermo()
    assert s.call_version("read", {"sensor": "a"}) == (1, 0)
    assert s.call_version("read", {"sensor": "a", "unit": "F"}) == (1, 2)
    assert s.call_version("calibrate", {"offset": 1.5}) == (1, 3)
    with raises(errors.InvalidArguments):
        s.call_version("read", {"sensor": 1})


def test_accepts_tells_which_targets_a_server_serves():
    s = _thermo()
    assert s.accepts("1.0") and s.accepts("1.3")
    assert not s.accepts("1.4") and not s.accepts("2.0")


def test_server_refuses_a_call_declaring_an_older_version_than_its_method_or_arguments_need():
    s = _thermo()
    for method, args, version, needs in (("calibrate", {"offset": 1.0}, "1.0", "1.3"),
                                         ("calibrate", {"offset": 1.0}, "1.2", "1.3"),
                                         ("read", {"sensor": "a", "unit": "F"}, "1.1", "1.2")):
        with raises(errors.UnsupportedVersion) as r:
            s.check_call(method, args, version)
        assert "needs API " + needs in str(r.value) and r.value.details == {"version": "1.3"}
        assert s.check_call(method, args, needs)
    assert s.check_call("read", {"sensor": "a"}, "1.0") == {"sensor": "a", "unit": "C"}  # default, not given


def test_a_version_the_server_does_not_serve_names_the_one_it_has_in_details():
    with raises(errors.UnsupportedVersion) as r:
        _thermo().check_call("read", {"sensor": "a"}, "1.4")
    assert r.value.details == {"version": "1.3"}
