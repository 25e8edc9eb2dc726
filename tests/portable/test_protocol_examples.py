"""Every `hex example=NAME` block of docs/protocol.md decodes to what the page says it is, and the
codec encodes that value back to the same bytes: the specification and the code cannot drift apart."""

from mpcompat import raises
from spoolbus import auth, frame, wire
from spoolbus.errors import UnsupportedWireVersion


def _doc_path():
    parts = __file__.replace("\\", "/").split("/")
    return ("/".join(parts[:-3]) or ".") + "/docs/protocol.md"


def _examples():
    """{name: bytes} of the hex example blocks; text after '#' on a line is commentary."""
    found = {}
    name = None
    hexdigits = []
    with open(_doc_path()) as f:
        for line in f:
            line = line.strip()
            if name is None:
                if line.startswith("```hex example="):
                    name = line[len("```hex example=") :]
                    hexdigits = []
            elif line.startswith("```"):
                assert name not in found, "example %s appears twice" % name
                found[name] = bytes.fromhex("".join("".join(hexdigits).split()))
                name = None
            else:
                hexdigits.append(line.split("#")[0])
    assert name is None, "unterminated example block"
    return found


def _reply():
    return wire.Envelope(kind=wire.REPLY, id=2, src="controller", dst="sensor-1", reply_to=1, body=21.5)


ENVELOPES = {
    "call": wire.Envelope(
        kind=wire.CALL,
        id=1,
        src="sensor-1",
        dst="controller",
        method="thermo.read",
        version="1.3",
        body={"unit": "C"},
        deadline=1764072000000,
    ),
    "reply": _reply(),
    "error": wire.Envelope(
        kind=wire.ERROR,
        id=3,
        src="controller",
        dst="sensor-1",
        reply_to=1,
        body=wire.error_body("UnsupportedVersion", "thermo 1.4 > 1.3", {"max": "1.3"}),
    ),
    "notify": wire.Envelope(kind=wire.NOTIFY, id=4, src="sensor-1", method="thermo.changed", body={"t": 22}),
    "hello": wire.Envelope(kind=wire.HELLO, id=0, src="sensor-1", body={"services": {"thermo": "1.3"}}),
    "signed-cast": wire.Envelope(
        kind=wire.CAST,
        id=5,
        src="sensor-1",
        dst="controller",
        method="thermo.log",
        version="1.0",
        body=None,
        seq=[0xDEADBEEF, 7],
    ),
}
FRAMES = {"frame-empty": b"", "frame-check": b"123456789", "frame-reply": wire.encode(_reply())}
OTHERS = ("future-minor", "wire-2")
FIELDS = ("kind", "id", "src", "dst", "method", "version", "body", "deadline", "reply_to", "seq")


def test_the_page_has_exactly_the_examples_this_test_checks():
    names = sorted(_examples())
    assert names == sorted(list(ENVELOPES) + list(FRAMES) + list(OTHERS)), names


def test_envelope_examples_decode_to_their_values_and_encode_to_their_bytes():
    ex = _examples()
    for name in ENVELOPES:
        want = ENVELOPES[name]
        got = wire.decode(ex[name])
        for field in FIELDS:
            assert getattr(got, field) == getattr(want, field), (name, field)
        assert got.wire == (1, 0)
        if name != "signed-cast":
            assert wire.encode(want) == ex[name], name


def test_signed_example_verifies_under_its_key():
    data = _examples()["signed-cast"]
    env = wire.decode(data)
    assert env.sig == auth.hmac_sha256(b"example key", wire.signing_bytes(env))
    want = ENVELOPES["signed-cast"]
    want.sig = auth.hmac_sha256(b"example key", wire.signing_bytes(want))
    assert wire.encode(want) == data


def test_frame_examples_carry_their_payloads():
    ex = _examples()
    for name in FRAMES:
        dec = frame.Decoder()
        assert dec.feed(ex[name]) == [FRAMES[name]], name
        assert frame.encode(FRAMES[name]) == ex[name], name
    assert frame.Decoder().feed(ex["frame-reply"]) == [ex["reply"]]


def test_newer_minor_example_is_accepted_and_kept_whole():
    data = _examples()["future-minor"]
    env = wire.decode(data)
    assert (env.wire, env.kind, env.method, env.body) == ((1, 1), wire.NOTIFY, "door.opened", None)
    assert wire.encode(env) == data


def test_wire_2_example_is_refused_with_both_versions_named():
    with raises(UnsupportedWireVersion) as e:
        wire.decode(_examples()["wire-2"])
    assert (e.value.got, e.value.supported, e.value.id, e.value.src) == ((2, 0), (1, 0), 6, "new-board")
