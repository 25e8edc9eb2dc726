"""HMAC-SHA256 matches RFC 4231 on both interpreters; signed envelopes verify, forgeries and replays don't."""

from mpcompat import cpython_only
from spoolbus import auth, wire

# RFC 4231 section 4: (key, data, expected HMAC-SHA256; case 5 compares the first 128 bits).
_VECTORS = (
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size data. "
     b"The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def test_hmac_sha256_matches_rfc4231_test_vectors():
    for key, data, expected in _VECTORS:
        want = bytes.fromhex(expected)
        assert auth.hmac_sha256(key, data)[: len(want)] == want, expected


def test_key_object_gives_the_same_mac_every_time():
    k = auth.Key(b"\xaa" * 131)
    data = _VECTORS[6][1]
    assert k.mac(data) == k.mac(data) == bytes.fromhex(_VECTORS[6][2])


@cpython_only("compares with CPython's hmac module")
def test_hmac_sha256_agrees_with_cpython_hmac_for_every_key_length():
    import hashlib
    import hmac

    for n in range(0, 140, 7):
        key = bytes((i * 7 + n) & 0xFF for i in range(n))
        data = bytes(range(n % 256)) * 3
        assert auth.hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()


def test_equal_compares_whole_strings():
    assert auth.equal(b"abc", b"abc")
    assert not auth.equal(b"abc", b"abd")
    assert not auth.equal(b"abc", b"ab")
    assert auth.equal(b"", b"")


_KEYS = {"sensor": b"sensor-key", "controller": b"controller-key"}


def _env(counter, nonce=7, body=None):
    return wire.Envelope(kind=wire.CALL, id=counter, src="sensor", dst="controller", method="thermo.read",
                         version="1.0", body=body if body is not None else {"x": 1}, seq=[nonce, counter])


def _signed(counter, nonce=7, body=None):
    env = _env(counter, nonce, body)
    auth.Auth("sensor", _KEYS).sign(env)
    return wire.decode(wire.encode(env))


def test_signed_envelope_verifies_after_encoding_round_trip():
    a = auth.Auth("controller", _KEYS)
    env = _signed(1)
    assert len(env.sig) == 32
    assert a.check(env) is None


def test_tampered_envelope_is_forged():
    a = auth.Auth("controller", _KEYS)
    env = _signed(1)
    env.body = {"x": 2}
    assert a.check(env) == auth.FORGED


def test_signature_under_another_key_is_forged():
    env = _env(1)
    auth.Auth("sensor", {"sensor": b"wrong key"}).sign(env)
    assert auth.Auth("controller", _KEYS).check(env) == auth.FORGED


def test_replayed_envelope_is_refused():
    a = auth.Auth("controller", _KEYS)
    env = _signed(5)
    assert a.check(env) is None
    assert a.check(_signed(5)) == auth.REPLAYED


def test_window_accepts_out_of_order_counters_once():
    a = auth.Auth("controller", _KEYS)
    for c in (3, 1, 2, 10, 9, 4):
        assert a.check(_signed(c)) is None, c
    for c in (3, 1, 10, 9):
        assert a.check(_signed(c)) == auth.REPLAYED, c


def test_counter_older_than_the_window_is_refused():
    a = auth.Auth("controller", _KEYS)
    assert a.check(_signed(100)) is None
    assert a.check(_signed(100 - auth.WINDOW + 1)) is None
    assert a.check(_signed(100 - auth.WINDOW)) == auth.REPLAYED


def test_new_boot_nonce_starts_a_new_window_and_old_boot_messages_stay_refused():
    a = auth.Auth("controller", _KEYS)
    old = _signed(50, nonce=1)
    assert a.check(old) is None
    assert a.check(_signed(1, nonce=2)) is None
    assert a.check(_signed(2, nonce=2)) is None
    assert a.check(_signed(51, nonce=1)) == auth.REPLAYED


def test_unsigned_message_from_a_source_with_a_known_key_is_refused():
    env = wire.decode(wire.encode(_env(1)))
    assert auth.Auth("controller", _KEYS).check(env) == auth.UNSIGNED
    assert auth.Auth("controller", {}).check(env) is None
    assert auth.Auth("controller", {}, require=True).check(env) == auth.UNSIGNED


def test_signed_message_from_an_unknown_source_is_refused_when_signatures_are_required():
    env = _signed(1)
    assert auth.Auth("controller", {"controller": b"k"}, require=True).check(env) == auth.UNKNOWN_KEY


def test_replay_windows_are_bounded_by_max_sources():
    keys = {}
    for i in range(40):
        keys["n%d" % i] = ("key%d" % i).encode()
    a = auth.Auth("controller", keys, max_sources=8)
    for i in range(40):
        env = wire.Envelope(kind=wire.CAST, id=1, src="n%d" % i, dst="controller", method="s.m",
                            version="1.0", body=None, seq=[1, 1])
        auth.Auth("n%d" % i, keys).sign(env)
        assert a.check(env) is None
        assert a.sources() <= 8
