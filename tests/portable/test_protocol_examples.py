"""Every `hex example=NAME` block of docs/protocol.md decodes to what the page says it is, and the
codec encodes that value back to the same bytes: the specification and the code cannot drift apart."""

import json

from mpcompat import raises
from spoolbus import auth, cbor, contract, frame, node, wire
from spoolbus.errors import UnsupportedWireVersion
from spoolbus.transport.loopback import Hub, Loopback


def _doc_path():
    parts = __file__.replace("\\", "/").split("/")
    return ("/".join(parts[:-3]) or ".") + "/docs/protocol.md"


def _doc_lines():
    with open(_doc_path()) as f:
        return [line.strip() for line in f]


def _examples():
    """{name: bytes} of the hex example blocks; text after '#' on a line is commentary."""
    found = {}
    name = None
    hexdigits = []
    for line in _doc_lines():
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


def _to_controller(kind, id, method, version, body, **more):
    """An envelope from sensor-1 to controller, as the page's call and signed cast are."""
    return wire.Envelope(kind=kind, id=id, src="sensor-1", dst="controller", method=method, version=version,
                         body=body, **more)


def _reply():
    return wire.Envelope(kind=wire.REPLY, id=2, src="controller", dst="sensor-1", reply_to=1, body=21.5)


ENVELOPES = {
    "call": _to_controller(wire.CALL, 1, "thermo.read", "1.3", {"unit": "C"}, deadline=1764072000000),
    "reply": _reply(),
    "error": wire.Envelope(
        kind=wire.ERROR,
        id=3,
        src="controller",
        dst="sensor-1",
        reply_to=1,
        body=wire.error_body("unsupported_version", "thermo 1.4 > 1.3", {"version": "1.3"}),
    ),
    "notify": wire.Envelope(kind=wire.NOTIFY, id=4, src="sensor-1", method="thermo.changed", body={"t": 22}),
    "hello": wire.Envelope(kind=wire.HELLO, id=0, src="sensor-1", body={"services": {"thermo": "1.3"}}),
    "signed-cast": _to_controller(wire.CAST, 5, "thermo.log", "1.0", None, seq=[0xDEADBEEF, 7]),
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
    assert (e.value.got, e.value.supported, e.value.kind, e.value.id, e.value.src) == ((2, 0), (1, 0), 0, 6,
                                                                                        "new-board")


def test_a_node_records_the_hello_example_and_answers_it():
    hub = Hub()
    nd = node.Node("controller", Loopback(hub, "controller"))
    hub.inboxes["controller"].append(_examples()["hello"])
    nd.poll(0)
    assert nd.stats["hellos"] == 1
    assert nd.peers["sensor-1"] == ({"thermo": "1.3"}, [], None)
    answer = wire.decode(hub.inboxes["sensor-1"][0])
    assert (answer.kind, answer.reply_to, answer.body["services"]) == (wire.HELLO, 0, {})


def _error_table():
    """{type: details} from the table of the types a node sends, in section 3."""
    table = {}
    inside = False
    for line in _doc_lines():
        if line.startswith("| type | a node answers a CALL with it when"):
            inside = True
        elif inside and line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            table[cells[0].strip("`")] = json.loads(cells[-1].strip("`"))
        elif inside and not line.startswith("|"):
            break
    return table


THERMO = contract.Service("thermo", "1.3")
THERMO.method("read", ("sensor", str))
THERMO.method("bad_reply")
THERMO_IMPL = {"read": lambda sensor: 21.5, "bad_reply": lambda: object()}


def _call(i, method="thermo.read", body=None, version="1.0", dst="sensor-1", wire_version=(1, 0)):
    """A CALL as a client written from this page would send it: a plain CBOR map."""
    m = {0: list(wire_version), 1: 0, 2: i, 3: "client", 4: dst, 5: method, 6: version,
         7: {"sensor": "t0"} if body is None else body}
    if version is None:
        del m[6]
    return cbor.dumps(m)


def test_every_error_type_the_page_names_is_what_a_node_sends_with_those_details():
    table = _error_table()
    hub = Hub()
    for name, depth in (("sensor-1", 4), ("busy-1", 0)):
        nd = node.Node(name, Loopback(hub, name), max_depth=depth)
        nd.serve(THERMO, THERMO_IMPL)
        hub.attach(nd)
    cases = {
        "no_such_service": _call(1, "nosvc.read"),
        "no_such_method": _call(2, "thermo.write"),
        "invalid_arguments": _call(3, body={"sensor": 3}),
        "unsupported_version": _call(4, version="1.4"),
        "invalid_reply": _call(5, "thermo.bad_reply", {}),
        "busy": _call(6, dst="busy-1"),
        "envelope_error": _call(7, version=None),  # a CALL without key 6
        "unsupported_wire_version": _call(8, wire_version=(2, 0)),
    }
    assert sorted(cases) == sorted(table), sorted(table)
    for want in cases:
        data = cases[want]
        hub.inboxes[cbor.loads(data)[4]].append(data)
        hub.pump("client")
        got = cbor.loads(hub.inboxes["client"].pop(0))
        assert (got[1], got[9], got[3]) == (3, cbor.loads(data)[2], cbor.loads(data)[4]), (want, got)
        body = got[7]
        assert (body["type"], body["details"]) == (want, table[want]), (want, body)
        assert isinstance(body["message"], str) and body["message"], want
        assert hub.inboxes["client"] == [], want
