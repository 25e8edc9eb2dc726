"""The envelope: every kind round-trips byte for byte, fields are type-checked, versions are enforced,
unknown keys survive, and bad bytes raise only DecodeError subclasses (seeded fuzz)."""

from mpcompat import raises
from prng import Rng
from spoolbus import cbor, wire
from spoolbus.errors import CBORDecodeError, DecodeError, EnvelopeError, UnsupportedWireVersion


def _call(**kw):
    f = {
        "kind": wire.CALL,
        "id": 7,
        "src": "sensor-1",
        "dst": "controller",
        "method": "thermo.read",
        "version": "1.3",
        "body": {"unit": "C"},
    }
    f.update(kw)
    return wire.Envelope(**f)


def _with(env, **keys):
    """The encoding of env with some map keys replaced (a value of `None` deletes the key)."""
    m = cbor.loads(wire.encode(env))
    for k in keys:
        key = int(k[1:])
        if keys[k] is None:
            del m[key]
        else:
            m[key] = keys[k]
    return cbor.dumps(m)


def _kw(key, value):
    return {"k%d" % key: value}


def _rejected(data):
    with raises(EnvelopeError) as e:
        wire.decode(data)
    return e.value


def test_every_kind_round_trips_byte_for_byte():
    envs = [
        _call(deadline=1764072000000, seq=[0x1234ABCD, 42], sig=b"\x01" * 32),
        _call(kind=wire.CAST, body=None),
        wire.Envelope(kind=wire.REPLY, id=8, src="controller", dst="sensor-1", reply_to=7, body=21.5),
        wire.Envelope(
            kind=wire.ERROR,
            id=9,
            src="controller",
            reply_to=7,
            body=wire.error_body("no_such_method", "thermo has no method 'raed'", {"known": ["read"]}),
        ),
        wire.Envelope(kind=wire.NOTIFY, id=10, src="sensor-1", method="thermo.changed", body=[1, 2]),
        wire.Envelope(kind=wire.HELLO, id=0, src="board-3", body={"services": {"thermo": "1.3"}}),
    ]
    for env in envs:
        data = wire.encode(env)
        back = wire.decode(data)
        assert wire.encode(back) == data
        for name in ("kind", "id", "src", "dst", "method", "version", "body", "deadline", "reply_to", "sig"):
            assert getattr(back, name) == getattr(env, name), name
        assert back.wire == wire.WIRE_VERSION
    assert wire.decode(wire.encode(envs[0])).seq == [0x1234ABCD, 42]


def test_a_call_encodes_to_its_documented_bytes():
    env = wire.Envelope(kind=wire.CALL, id=1, src="a", dst="b", method="s.m", version="1.0", body=None)
    assert wire.encode(env).hex() == "a800820100010002010361610461620563732e6d066331 2e3007f6".replace(
        " ", ""
    )


def test_signing_bytes_are_the_encoding_without_the_signature():
    env = _call(seq=[1, 2])
    unsigned = wire.encode(env)
    assert wire.signing_bytes(env) == unsigned
    env.sig = b"\xaa" * 32
    signed = wire.encode(env)
    assert signed != unsigned
    assert wire.signing_bytes(env) == unsigned
    assert wire.signing_bytes(wire.decode(signed)) == unsigned


def test_unknown_integer_keys_are_ignored_and_carried_into_the_re_encoding():
    data = _with(_call(), k12="added in 1.1", k200=[1, 2])
    m = cbor.loads(data)
    m[0] = [1, 1]
    data = cbor.dumps(m)
    env = wire.decode(data)
    assert env.method == "thermo.read" and env.wire == (1, 1)
    assert wire.encode(env) == data
    assert cbor.loads(wire.signing_bytes(env))[12] == "added in 1.1"


def test_newer_minor_is_accepted_and_kept():
    env = wire.decode(_with(_call(), k0=[1, 9]))
    assert env.wire == (1, 9)
    assert cbor.loads(wire.encode(env))[0] == [1, 9]


def test_another_wire_major_raises_unsupported_wire_version_naming_both():
    for got in ([2, 0], [0, 5], [2]):
        with raises(UnsupportedWireVersion) as e:
            wire.decode(_with(_call(), k0=got))
        assert e.value.got == tuple(got)
        assert e.value.supported == (1, 0)
        assert e.value.id == 7 and e.value.src == "sensor-1"
        assert isinstance(e.value, DecodeError)
        assert "(1, 0)" in str(e.value)
    with raises(UnsupportedWireVersion) as e:
        wire.decode(cbor.dumps({0: [3, 0], 2: "x", 99: 1}))
    assert e.value.id is None and e.value.src is None


def test_malformed_wire_versions_are_envelope_errors():
    for bad in (None, "1.0", [], [1], [1, 0, 0], [-1, 0], [1, -1], [1, "0"], {1: 0}):
        _rejected(_with(_call(), k0=bad))


def test_not_a_map_and_bad_cbor():
    for value in ([0, 1], "call", 5, None):
        _rejected(cbor.dumps(value))
    with raises(CBORDecodeError):
        wire.decode(b"\xa1\x00")
    with raises(CBORDecodeError):
        wire.decode(wire.encode(_call()) + b"\x00")
    with raises(CBORDecodeError):
        wire.decode(wire.encode(_call(body="x" * 100)), max_size=64)


def test_every_field_is_type_checked():
    cases = [
        (1, 6),
        (1, -1),
        (1, "call"),
        (1, True),
        (1, None),
        (2, -1),
        (2, "7"),
        (2, 1.0),
        (2, None),
        (3, b"sensor"),
        (3, None),
        (4, 5),
        (5, "read"),
        (5, ".read"),
        (5, "thermo."),
        (5, b"thermo.read"),
        (5, None),
        (6, "1"),
        (6, "1.x"),
        (6, "v1.0"),
        (6, "1.0.2"),
        (6, ".1"),
        (6, 1.0),
        (6, None),
        (8, -5),
        (8, 1.5),
        (9, "7"),
        (10, "sig"),
        (11, [1]),
        (11, [1, 2, 3]),
        (11, [1, -2]),
        (11, "1:2"),
    ]
    for key, value in cases:
        err = _rejected(_with(_call(), **_kw(key, value)))
        assert "key %d" % key in str(err), (key, value, str(err))


def test_optional_fields_sent_as_null_and_a_missing_body_are_rejected():
    m = cbor.loads(wire.encode(_call()))
    m[8] = None
    assert "null" in str(_rejected(cbor.dumps(m)))
    del m[8]
    del m[7]
    m[12] = 1
    assert "body" in str(_rejected(cbor.dumps(m)))


def test_non_integer_keys_are_rejected():
    m = cbor.loads(wire.encode(_call()))
    m["extra"] = 1
    _rejected(cbor.dumps(m))


def test_requirements_by_kind():
    reply = wire.Envelope(kind=wire.REPLY, id=2, src="b", reply_to=1, body=None)
    wire.decode(wire.encode(reply))
    _rejected(_with(reply, k9=None))
    err = wire.Envelope(kind=wire.ERROR, id=2, src="b", reply_to=1, body=wire.error_body("boom", "it broke"))
    wire.decode(wire.encode(err))
    for bad in ({"type": "boom"}, {"message": "x"}, {"type": 1, "message": "x"}, "boom", None):
        _rejected(_with(err, k7=bad))
    notify = wire.Envelope(kind=wire.NOTIFY, id=3, src="s", method="door.opened", body=None)
    wire.decode(wire.encode(notify))
    _rejected(_with(notify, k5=None))
    _rejected(_with(notify, k5=""))
    wire.decode(_with(notify, k5="opened", k6="2.1"))
    hello = wire.Envelope(kind=wire.HELLO, id=0, src="s", body=None)
    wire.decode(wire.encode(hello))
    _rejected(_with(_call(kind=wire.CAST), k6=None))


def test_encode_refuses_an_invalid_envelope():
    for env in (wire.Envelope(), _call(method="read"), _call(id=-1), _call(version=None), _call(src=None)):
        with raises(EnvelopeError):
            wire.encode(env)


def test_error_body_has_type_message_and_details():
    assert wire.error_body("timeout", "no reply in 2 s") == {
        "type": "timeout",
        "message": "no reply in 2 s",
        "details": None,
    }


def _random_value(r, depth):
    t = r.below(9 if depth < 3 else 6)
    if t == 0:
        return r.below(1 << 20)
    if t == 1:
        return -1 - r.below(1000)
    if t == 2:
        return "s%d.m%d" % (r.below(5), r.below(5)) if r.below(2) else "%d.%d" % (r.below(3), r.below(9))
    if t == 3:
        return r.bytes(r.below(8))
    if t == 4:
        return (None, True, False, 1.5)[r.below(4)]
    if t == 5:
        return r.below(6)
    if t == 6:
        return [_random_value(r, depth + 1) for _ in range(r.below(4))]
    if t == 7:
        return {"type": "x", "message": "y"} if r.below(2) else {r.below(20): _random_value(r, depth + 1)}
    return [1, r.below(3)]


def test_seeded_random_maps_raise_only_decode_errors():
    r = Rng(31337)
    base = cbor.loads(wire.encode(_call(deadline=5, seq=[1, 2])))
    accepted = 0
    for _ in range(600):
        m = dict(base)
        for _ in range(1 + r.below(3)):
            key = r.below(14)
            if r.below(5) == 0:
                m.pop(key, None)
            else:
                m[key] = _random_value(r, 0)
        data = cbor.dumps(m)
        try:
            env = wire.decode(data)
        except DecodeError:
            continue
        accepted += 1
        assert wire.decode(wire.encode(env)).kind == env.kind
    assert 0 < accepted < 600


def test_seeded_byte_mutations_raise_only_decode_errors():
    r = Rng(4242)
    seeds = [
        wire.encode(_call(deadline=1764072000000, seq=[7, 8], sig=b"\x05" * 8)),
        wire.encode(
            wire.Envelope(kind=wire.ERROR, id=1, src="a", reply_to=1, body=wire.error_body("t", "m"))
        ),
    ]
    for n in range(1500):
        data = bytearray(seeds[n % 2])
        for _ in range(1 + r.below(4)):
            op = r.below(3)
            i = r.below(len(data))
            if op == 0:
                data[i] = r.below(256)
            elif op == 1:
                data = data[:i] + data[i + 1 :]
            else:
                data = data[:i] + bytes((r.below(256),)) + data[i:]
            if not data:
                break
        try:
            wire.decode(bytes(data))
        except DecodeError:
            pass
