"""The C decoder (csrc/cbor_c.c) against the Python one: same value or same error, byte for byte.

CPython hosts decode with the C one; boards with the Python one. Any input the two treat differently
would let a host accept what a board rejects (or the reverse), so they are compared on valid encodings,
on mutations of them and on random bytes, with random limits.
"""

import math

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spoolbus import cbor
from spoolbus.errors import CBORDecodeError

try:
    from spoolbus import _cbor_c
except ImportError:  # a failed C build must fail here, not silently slow every host down
    _cbor_c = None

MANY = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.integers(-(2**64), 2**64 - 1), st.integers(-30, 30), st.floats(), st.floats(width=16),
    st.text(max_size=30), st.binary(max_size=30), st.booleans(), st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.one_of(st.integers(-300, 300), st.text(max_size=5)),
                                            inner, max_size=5)),
    max_leaves=25,
)
limits = st.tuples(st.integers(-1, 20), st.integers(-1, 60))


def _outcome(decode, data, max_depth, max_items):
    try:
        return "value", _canonical(decode(data, max_depth, max_items - 1))
    except CBORDecodeError as e:
        return "error", str(e), e.offset


def _canonical(v):
    """A comparable form: NaN equals NaN, 1 differs from 1.0 and True, -0.0 from 0.0."""
    if isinstance(v, list):
        return ("list", [_canonical(x) for x in v])
    if isinstance(v, dict):
        return ("dict", [(_canonical(k), _canonical(x)) for k, x in v.items()])
    if isinstance(v, float):
        return ("float", "nan" if math.isnan(v) else v.hex())
    return (type(v).__name__, v)


def _same(data, max_depth=16, max_items=4096):
    py = _outcome(cbor._decode, data, max_depth, max_items)
    c = _outcome(_cbor_c.decode, data, max_depth, max_items)
    assert c == py, data.hex()
    return c


def test_the_c_decoder_is_built_and_used():
    assert _cbor_c is not None, "spoolbus._cbor_c is missing: reinstall with a C compiler (pip install -e .)"
    assert cbor._decode_c is _cbor_c.decode


@MANY
@given(values, limits)
def test_valid_encodings(v, lim):
    data = cbor.dumps(v)
    _same(data)
    _same(data, *lim)


@MANY
@given(values, st.data())
def test_mutated_encodings(v, data):
    raw = bytearray(cbor.dumps(v))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del raw[at:]
        else:
            raw[at:at] = bytes([data.draw(st.integers(0, 255))])
    _same(bytes(raw), *data.draw(limits))


@MANY
@given(st.binary(max_size=64), limits)
def test_random_bytes(data, lim):
    _same(data, *lim)


@settings(max_examples=500, deadline=None)
@given(values)
def test_what_cbor2_writes(v):
    """cbor2's encodings: tags, non-shortest floats, other key orders: all judged alike."""
    try:
        data = cbor2.dumps(v)
    except (cbor2.CBOREncodeError, ValueError):
        return
    _same(data)


@pytest.mark.parametrize("hex_", [
    "1bffffffffffffffff", "3bffffffffffffffff", "3b7fffffffffffffff", "3b8000000000000000",
    "f97e00", "fa7fc00000", "f98000", "9b8000000000000000", "bbffffffffffffffff00",
    "7b7fffffffffffffff", "a20102" + "01", "a1" * 17 + "00", "81" * 17 + "00", "c100", "f7", "f818",
    "ff", "5f", "1c", "62c3", "62c328", "a1810000", "a2010201" + "03", "a201020103",
])
def test_edge_cases(hex_):
    _same(bytes.fromhex(hex_))
    _same(bytes.fromhex(hex_), 0, 1)


def test_deep_and_long_inputs_within_the_limits():
    _same(bytes.fromhex("81" * 200 + "00"), 10**6, 10**6)
    _same(bytes.fromhex("9a00010000" + "00" * 65536), 4, 10**6)
    _same(bytes.fromhex("81" * 20 + "00"), 2**70, 2**70)
