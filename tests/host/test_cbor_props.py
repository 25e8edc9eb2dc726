"""Property tests of spoolbus.cbor against cbor2, and the same bytes from MicroPython and CPython."""

import os
import subprocess
import sys

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spoolbus import cbor
from spoolbus.errors import CBORDecodeError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.environ.get(
    "SPOOLBUS_MICROPYTHON", os.path.join(ROOT, ".cache/micropython-1.25.0/bin/micropython")
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

floats = st.one_of(
    st.floats(allow_nan=False),
    st.floats(width=16, allow_nan=False),
    st.floats(width=32, allow_nan=False),
)
scalars = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.integers(-30, 30),
    floats,
    st.text(max_size=40),
    st.binary(max_size=40),
    st.booleans(),
    st.none(),
)
keys = st.one_of(st.integers(-(2**64), 2**64 - 1), st.integers(0, 300), st.text(max_size=8),
                 st.binary(max_size=8), floats, st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=30,
)
# Maps whose keys share one major type: there cbor2's canonical order (length first) and RFC 8949
# core order (bytewise) agree, so cbor2's bytes must be ours exactly.
uniform_maps = st.one_of(
    st.dictionaries(st.integers(0, 2**64 - 1), scalars, max_size=8),
    st.dictionaries(st.integers(-(2**64), -1), scalars, max_size=8),
    st.dictionaries(st.text(max_size=30), scalars, max_size=8),
    st.dictionaries(st.binary(max_size=30), scalars, max_size=8),
)


def _head(major, n):
    b = cbor2.dumps(n)
    return bytes([b[0] | major]) + b[1:]


def reference(x):
    """RFC 8949 core deterministic encoding built from cbor2's canonical encoding of every scalar."""
    if isinstance(x, dict):
        pairs = sorted((reference(k), reference(v)) for k, v in x.items())
        return _head(0xA0, len(x)) + b"".join(k + v for k, v in pairs)
    if isinstance(x, list):
        return _head(0x80, len(x)) + b"".join(reference(i) for i in x)
    return cbor2.dumps(x, canonical=True)


@FAST
@given(values)
def test_dumps_matches_cbor2_scalars_in_core_deterministic_order(x):
    assert cbor.dumps(x) == reference(x)


@FAST
@given(st.one_of(scalars, uniform_maps, st.lists(scalars, max_size=8)))
def test_dumps_is_byte_identical_to_cbor2_canonical(x):
    assert cbor.dumps(x) == cbor2.dumps(x, canonical=True)


def test_cbor2_canonical_map_order_is_length_first_not_core_deterministic():
    # The one place spoolbus differs from cbor2.dumps(canonical=True), on purpose: RFC 8949 4.2.1
    # sorts the encoded keys bytewise (24 = 0x1818 before "" = 0x60); cbor2 sorts shorter keys first.
    value = {"": 1, 24: 2}
    assert cbor.dumps(value) == bytes.fromhex("a2181802" "6001")
    assert cbor2.dumps(value, canonical=True) == bytes.fromhex("a26001" "181802")
    assert cbor.loads(cbor2.dumps(value, canonical=True)) == value  # any key order decodes


@FAST
@given(values)
def test_round_trip(x):
    data = cbor.dumps(x)
    assert cbor.loads(data, max_size=1 << 20, max_depth=64, max_items=1 << 20) == x
    assert cbor2.loads(data) == x


@FAST
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_decode_errors(data):
    try:
        cbor.loads(data)
    except CBORDecodeError as e:
        assert 0 <= e.offset <= len(data)


@FAST
@given(values, st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)),
                        min_size=1, max_size=4))
def test_mutated_encodings_raise_only_decode_errors(x, edits):
    data = bytearray(cbor.dumps(x))
    for op, where, byte in edits:
        p = where % (len(data) + 1)
        if op == 0 and p < len(data):
            data[p] = byte
        elif op == 1:
            del data[p:]
        elif op == 2:
            data.insert(p, byte)
        elif p < len(data):
            data[p] ^= 1 << (byte & 7)
    try:
        v = cbor.loads(bytes(data), max_depth=8, max_items=512)
    except CBORDecodeError as e:
        assert 0 <= e.offset <= len(data)
    else:
        assert cbor.dumps(cbor2.loads(bytes(data))) == cbor.dumps(v)  # NaN-proof equality


@FAST
@given(values)
def test_what_loads_accepts_cbor2_decodes_to_the_same_value(x):
    data = cbor.dumps(x)
    assert cbor2.loads(data) == cbor.loads(data, max_size=1 << 20, max_depth=64, max_items=1 << 20)


def _seeded_digest_script():
    runtime = os.path.join(ROOT, "runtime")
    portable = os.path.join(ROOT, "tests", "portable")
    return (
        "import sys\n"
        f"sys.path.insert(0, {runtime!r})\n"
        f"sys.path.insert(0, {portable!r})\n"
        "import hashlib\n"
        "from spoolbus import cbor\n"
        "import test_cbor\nfrom prng import Rng\n"
        "r = Rng(4242)\n"
        "h = hashlib.sha256()\n"
        "for _ in range(400):\n"
        "    v = test_cbor._random_value(r, 0)\n"
        "    d = cbor.dumps(v)\n"
        "    assert cbor.dumps(cbor.loads(d)) == d\n"
        "    h.update(d)\n"
        "print(''.join('%02x' % b for b in h.digest()))\n"
    )


def test_micropython_and_cpython_encode_the_same_seeded_values_to_the_same_bytes():
    if not os.path.exists(MICROPYTHON):
        pytest.fail(f"MicroPython not built at {MICROPYTHON}; run scripts/setup.sh")
    script = _seeded_digest_script()
    mp = subprocess.run([MICROPYTHON, "-c", script], capture_output=True, text=True, timeout=60)
    assert mp.returncode == 0, mp.stderr
    cp = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert len(cp.stdout.split()[-1]) == 64
    assert mp.stdout.split()[-1] == cp.stdout.split()[-1]
