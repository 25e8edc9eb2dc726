"""Properties of the envelope codec under hypothesis: valid envelopes round-trip byte for byte and agree
with cbor2, and random or mutated input raises nothing but DecodeError subclasses."""

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st
from spoolbus import wire
from spoolbus.errors import DecodeError

uint = st.integers(0, 2**64 - 1)
name = st.text(min_size=1, max_size=20)
ident = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
method = st.builds(lambda s, m: f"{s}.{m}", ident, ident)
api_version = st.builds(lambda a, b: f"{a}.{b}", st.integers(0, 99), st.integers(0, 99))
cbor_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
extras = st.dictionaries(st.integers(12, 2**32), cbor_value, min_size=1, max_size=3)
edit = st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.integers(0, 2))
optional = {
    "dst": st.none() | name,
    "deadline": st.none() | uint,
    "sig": st.none() | st.binary(min_size=32, max_size=32),
    "seq": st.none() | st.lists(uint, min_size=2, max_size=2),
}


@st.composite
def envelopes(draw):
    kind = draw(st.integers(0, 5))
    fields = {k: draw(s) for k, s in optional.items()}
    fields.update(kind=kind, id=draw(uint), src=draw(name), body=draw(cbor_value))
    if kind in (wire.CALL, wire.CAST):
        fields.update(method=draw(method), version=draw(api_version))
    elif kind == wire.NOTIFY:
        fields.update(method=draw(name), version=draw(st.none() | api_version))
    if kind in (wire.REPLY, wire.ERROR):
        fields["reply_to"] = draw(uint)
    if kind == wire.ERROR:
        fields["body"] = wire.error_body(draw(ident), draw(st.text(max_size=30)), draw(cbor_value))
    return wire.Envelope(**fields)


FIELDS = ("kind", "id", "src", "dst", "method", "version", "body", "deadline", "reply_to", "sig", "seq")


@settings(max_examples=200, deadline=None)
@given(envelopes())
def test_valid_envelopes_round_trip_byte_for_byte_and_match_cbor2(env):
    data = wire.encode(env)
    back = wire.decode(data)
    for f in FIELDS:
        assert getattr(back, f) == getattr(env, f), f
    assert wire.encode(back) == data
    assert cbor2.dumps(cbor2.loads(data), canonical=True) == data
    assert cbor2.loads(data)[2] == env.id


@settings(max_examples=200, deadline=None)
@given(envelopes(), extras, st.integers(0, 9))
def test_unknown_keys_of_a_newer_minor_are_ignored_but_kept(env, extra, minor):
    m = cbor2.loads(wire.encode(env))
    m.update(extra)
    m[0] = [1, minor]
    data = cbor2.dumps(m, canonical=True)
    back = wire.decode(data)
    assert back.wire == (1, minor)
    assert wire.encode(back) == data


def _only_decode_errors(data: bytes) -> None:
    try:
        wire.decode(data)
    except DecodeError:
        pass


@settings(max_examples=250, deadline=None)
@given(envelopes(), st.lists(edit, max_size=6))
def test_mutated_envelopes_raise_only_decode_errors(env, edits):
    data = bytearray(wire.encode(env))
    for pos, value, op in edits:
        if not data:
            break
        i = pos % len(data)
        if op == 0:
            data[i] = value
        elif op == 1:
            del data[i]
        else:
            data.insert(i, value)
    _only_decode_errors(bytes(data))


@settings(max_examples=200, deadline=None)
@given(envelopes(), st.dictionaries(st.integers(-3, 14) | st.text(max_size=3), cbor_value, max_size=4))
def test_envelopes_with_random_fields_replaced_raise_only_decode_errors(env, replaced):
    m = cbor2.loads(wire.encode(env))
    m.update(replaced)
    _only_decode_errors(cbor2.dumps(m, canonical=True))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_errors(data):
    _only_decode_errors(data)
