"""The CBOR codec: RFC 8949 Appendix A, deterministic order, strict bounded decoding, seeded fuzzing."""

import array
import struct

from mpcompat import raises
from prng import Rng
from spoolbus import cbor
from spoolbus.errors import CBORDecodeError, CBOREncodeError


def _h(s):
    return bytes.fromhex(s)


_INF = float("inf")
# MicroPython's float literal parser is not correctly rounded for this one (it gives 0x47efffffe0000001).
_F32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]

# RFC 8949 Appendix A: (value, encoding) pairs that spoolbus encodes and decodes.
_APPENDIX_A = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"), (100, "1864"),
    (1000, "1903e8"), (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"), (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (0.0, "f90000"), (-0.0, "f98000"), (1.0, "f93c00"), (1.1, "fb3ff199999999999a"), (1.5, "f93e00"),
    (65504.0, "f97bff"), (100000.0, "fa47c35000"), (_F32_MAX, "fa7f7fffff"),
    (1.0e300, "fb7e37e43c8800759c"), (5.960464477539063e-8, "f90001"), (0.00006103515625, "f90400"),
    (-4.0, "f9c400"), (-4.1, "fbc010666666666666"), (_INF, "f97c00"), (-_INF, "f9fc00"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\"\\", "62225c"), ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"), ("\U00010151", "64f0908591"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, "a56161614161626142616361436164614461656145"),
]

# Appendix A encodings that decode to a value spoolbus accepts but never produces (wider floats).
_DECODE_ONLY = [
    ("fa7f800000", _INF), ("faff800000", -_INF), ("fb7ff0000000000000", _INF),
    ("fbfff0000000000000", -_INF),
]

# Appendix A encodings spoolbus rejects: bignums, tags, undefined, simple values, indefinite lengths.
_REJECTED = [
    "c249010000000000000000", "c349010000000000000000", "f7", "f0", "f8ff",
    "c074323031332d30332d32315432303a30343a30305a", "c11a514b67b0", "c1fb41d452d9ec200000",
    "d74401020304", "d818456449455446", "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
    "5f42010243030405ff", "7f657374726561646d696e67ff", "9fff", "9f018202039f0405ffff",
    "9f01820203820405ff", "83018202039f0405ff", "83019f0203ff820405",
    "9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff", "bf61610161629f0203ffff",
    "826161bf61626163ff", "bf6346756ef563416d7421ff",
]


def test_appendix_a_values_encode_to_the_rfc_bytes():
    for value, hexed in _APPENDIX_A:
        got = cbor.dumps(value)
        assert got == _h(hexed), (value, got, hexed)


def test_appendix_a_bytes_decode_to_the_rfc_values():
    for value, hexed in _APPENDIX_A:
        got = cbor.loads(_h(hexed))
        assert got == value and type(got) is type(value), (hexed, got, value)
    for hexed, value in _DECODE_ONLY:
        assert cbor.loads(_h(hexed)) == value


def test_negative_zero_keeps_its_sign():
    assert str(cbor.loads(_h("f98000"))) == "-0.0"


def test_nan_encodes_as_the_half_quiet_nan_and_all_widths_decode_to_nan():
    nan = float("nan")
    assert cbor.dumps(nan) == _h("f97e00")
    for hexed in ("f97e00", "fa7fc00000", "fb7ff8000000000000", "f97c01"):
        v = cbor.loads(_h(hexed))
        assert v != v


def test_appendix_a_tags_bignums_simple_values_and_indefinite_lengths_are_rejected():
    for hexed in _REJECTED:
        with raises(CBORDecodeError) as e:
            cbor.loads(_h(hexed))
        assert e.value.offset >= 0, hexed


def test_ints_beyond_64_bits_and_unsupported_types_do_not_encode():
    for bad in (2**64, -(2**64) - 1, object(), {1, 2}, 1j, [1, object()], {(1, 2): 3}):
        with raises(CBOREncodeError):
            cbor.dumps(bad)


def test_cyclic_or_absurdly_deep_values_do_not_encode():
    a = []
    a.append(a)
    with raises(CBOREncodeError):
        cbor.dumps(a)
    deep = 0
    for _ in range(300):
        deep = [deep]
    with raises(CBOREncodeError):
        cbor.dumps(deep)


def test_subclasses_encode_as_their_base_type():
    class Code(int):
        pass

    class Name(str):
        pass

    class Box(dict):
        pass

    box = Box()  # MicroPython's dict subclasses take no constructor arguments
    box[Code(2)] = [Name("x")]
    assert cbor.dumps(box) == cbor.dumps({2: ["x"]})


def test_bytearray_memoryview_and_tuple_encode_like_bytes_and_list():
    assert cbor.dumps(bytearray(b"ab")) == cbor.dumps(b"ab") == _h("426162")
    assert cbor.dumps(memoryview(b"ab")) == _h("426162")
    words = array.array("H", [1, 2])
    assert cbor.dumps(memoryview(words)) == b"\x44" + bytes(words)
    assert cbor.dumps((1, (2,))) == cbor.dumps([1, [2]])


def test_map_keys_are_in_bytewise_order_of_their_encodings():
    # RFC 8949 4.2.1 core deterministic order: 10, 100, -1, "z", "aa", [100] would come before "z"...
    value = {"aa": 1, "z": 2, -1: 3, 100: 4, 10: 5, b"\x07": 6, False: 7, 1.5: 8, "": 9, 24: 10}
    got = cbor.dumps(value)
    # keys: 0a, 1818, 1864, 20, 4107, 60, 617a, 626161, f4, f93e00
    assert got == _h("aa" "0a05" "18180a" "186404" "2003" "410706" "6009" "617a02" "62616101" "f407"
                     "f93e0008"), got.hex()
    assert cbor.dumps(cbor.loads(got)) == got


def test_distinct_keys_with_one_encoding_do_not_encode():
    nan1 = float("nan")
    nan2 = float("-nan")
    with raises(CBOREncodeError):
        cbor.dumps({nan1: 1, nan2: 2})


def test_map_encoding_does_not_depend_on_insertion_order():
    a = {}
    b = {}
    keys = [5, "x", -3, b"\x07", 300, "longer key", 0, 2.5, None, True]
    for k in keys:
        a[k] = str(k)
    for k in reversed(keys):
        b[k] = str(k)
    assert cbor.dumps(a) == cbor.dumps(b)
    assert cbor.dumps({0: {"b": 1, "a": 2}}) == cbor.dumps({0: {"a": 2, "b": 1}})
    ints = {}
    for k in (300, 5, 24, 0, 23, 70000):
        ints[k] = k
    assert cbor.dumps(ints) == _h("a6" "0000" "0505" "1717" "18181818" "19012c19012c" "1a000111701a00011170")


def test_envelope_shaped_value_round_trips():
    env = {0: [1, 0], 1: 0, 2: 12345, 3: "sensor-1", 4: "controller", 5: "thermo.read", 6: "1.2",
           7: {"unit": "C", "samples": [21.5, 21.7]}, 8: 1764000000000, 10: b"\x01" * 32}
    data = cbor.dumps(env)
    assert cbor.loads(data) == env
    assert cbor.loads(bytearray(data)) == env
    assert cbor.loads(memoryview(data)) == env


def test_floats_take_the_shortest_exact_width():
    assert cbor.dumps(2.0**-24) == _h("f90001")
    assert cbor.dumps(2.0**-15) == _h("f90200")  # a half subnormal that MicroPython's struct 'e' mispacks
    assert cbor.dumps(3 * 2.0**-16) == _h("f90300")
    assert cbor.dumps(2.0**-25) == _h("fa33000000")
    assert cbor.dumps(65505.0) == _h("fa477fe100")
    assert cbor.dumps(1e10) == _h("fa501502f9")
    assert cbor.dumps(2.0**-149) == _h("fa00000001")
    assert cbor.dumps(2.0**-150) == _h("fb3690000000000000")
    assert cbor.dumps(1e39) == _h("fb48078287f49c4a1d")


def test_every_half_float_round_trips_through_its_two_byte_encoding():
    for i in range(0, 0x10000, 7):
        enc = b"\xf9" + struct.pack(">H", i)
        v = cbor.loads(enc)
        if v == v and (i & 0x7C00 != 0x7C00 or i & 0x3FF == 0):
            assert cbor.dumps(v) == enc, (hex(i), v)


def _offset(data, **kw):
    with raises(CBORDecodeError) as e:
        cbor.loads(data, **kw)
    return e.value.offset


def test_truncated_input_reports_where_it_ends():
    full = cbor.dumps({0: [1, 2], 1: "text", 2: b"\x00\x01", 3: 1.1, 4: 70000, 5: 2**40})
    for cut in range(len(full)):
        off = _offset(full[:cut])
        assert 0 <= off <= cut, (cut, off)
    assert _offset(b"") == 0
    assert _offset(_h("8301")) == 0  # the head claims more items than bytes remain
    assert _offset(_h("820161")) == 2
    assert _offset(_h("1a0001")) == 0
    assert _offset(_h("83010263")) == 3


def test_trailing_bytes_are_rejected_at_their_offset():
    assert _offset(_h("0000")) == 1
    assert _offset(_h("820102ff")) == 3


def test_non_shortest_heads_are_rejected():
    for hexed in ("1800", "1817", "190017", "1900ff", "1a0000ffff", "1b00000000ffffffff", "3800",
                  "5801ff", "780161", "9800", "b800", "811800"):
        off = _offset(_h(hexed))
        assert off == (1 if hexed.startswith("81") else 0), hexed


def test_reserved_additional_information_and_breaks_are_rejected():
    for first in (0x1C, 0x1D, 0x1E, 0x3C, 0x5C, 0x7E, 0x9D, 0xBE, 0xDC, 0xFC, 0xFD, 0xFE, 0xFF):
        assert _offset(bytes([first]) + b"\x00" * 9) == 0, hex(first)
    assert _offset(_h("1f")) == 0
    assert _offset(_h("81ff")) == 1


def test_invalid_utf8_is_rejected_on_every_interpreter():
    for bad in ("61ff", "62c0af", "63eda080", "64f4908080", "62e282", "61c3", "63e08080", "64f0808080",
                "65f888808080", "6180"):
        assert _offset(_h(bad)) == 0, bad
    assert _offset(_h("82016161" "6180")) == 4
    assert cbor.loads(_h("64f48fbfbf")) == "\U0010ffff"
    assert cbor.loads(_h("63ed9fbf")) == "\ud7ff"


def test_duplicate_and_container_map_keys_are_rejected():
    assert _offset(_h("a2010201" "03")) == 3
    assert _offset(_h("a2" "6161" "01" "6161" "02")) == 4
    assert _offset(_h("a2" "01" "00" "f93c00" "00")) == 3  # 1 and 1.0 are one Python key
    assert _offset(_h("a1" "80" "00")) == 1
    assert _offset(_h("a1" "a0" "00")) == 1


def test_input_size_limit_is_checked_before_decoding():
    data = cbor.dumps(b"x" * 100)
    assert cbor.loads(data, max_size=len(data)) == b"x" * 100
    assert _offset(data, max_size=len(data) - 1) == len(data) - 1
    assert _offset(bytearray(data), max_size=10) == 10


def test_nesting_depth_limit():
    deep = _h("81" * 16 + "00")
    assert cbor.loads(deep) is not None
    assert _offset(_h("81" * 17 + "00")) == 16
    assert _offset(_h("a1" "00" * 1) + _h("81" * 3 + "00"), max_depth=3) == 4
    assert _offset(_h("81" * 100000 + "00"), max_size=200000) == 16


def test_item_count_limit():
    data = cbor.dumps(list(range(10)))
    assert cbor.loads(data, max_items=11) == list(range(10))
    assert _offset(data, max_items=10) == 0
    m = cbor.dumps({1: [1, 2], 2: 3})
    assert cbor.loads(m, max_items=7) == {1: [1, 2], 2: 3}
    assert _offset(m, max_items=6) == 2
    assert _offset(b"\x00", max_items=0) == 0


def test_huge_claimed_lengths_fail_fast_without_allocating():
    for hexed in ("5b7fffffffffffffff", "7b8000000000000000", "9bffffffffffffffff", "bb7fffffffffffffff",
                  "5a7fffffff", "9a00100000", "5bffffffffffffffff00"):
        assert _offset(_h(hexed)) == 0, hexed


def test_non_bytes_input_is_a_decode_error():
    for bad in ("a0", 5, None, [0]):
        assert _offset(bad) == 0


def _random_value(r, depth):
    k = r.below(12 if depth < 4 else 8)
    if k == 0:
        return r.next() - 0x80000000
    if k == 1:
        return (r.next() << 32 | r.next()) * (1 if r.below(2) else -1) - r.below(2)
    if k == 2:
        return r.below(30)
    if k == 3:
        return "".join(chr(32 + r.below(95)) if r.below(4) else chr(0xA0 + r.below(0x3000))
                       for _ in range(r.below(30)))
    if k == 4:
        return bytes(r.below(256) for _ in range(r.below(30)))
    if k == 5:
        return (None, True, False)[r.below(3)]
    if k == 6:
        width = r.below(3)
        if width == 0:
            return struct.unpack(">e", struct.pack(">H", r.below(0x7C00)))[0]
        if width == 1:
            return struct.unpack(">f", struct.pack(">I", r.next() & 0x7F7FFFFF))[0]
        return struct.unpack(">d", struct.pack(">II", r.next() & 0x7FEFFFFF, r.next()))[0]
    if k == 7:
        return r.below(100000) / 8
    if k in (8, 9):
        return [_random_value(r, depth + 1) for _ in range(r.below(5))]
    d = {}
    for _ in range(r.below(5)):
        # no bytes keys next to str keys: MicroPython warns on every str/bytes key comparison
        key = (r.below(40), "k%d" % r.below(40), -r.below(30) - 1, 2.5)[r.below(4)]
        d[key] = _random_value(r, depth + 1)
    return d


def test_seeded_random_values_round_trip_and_reencode_identically():
    r = Rng(12345)
    for _ in range(300):
        v = _random_value(r, 0)
        data = cbor.dumps(v)
        back = cbor.loads(data)
        assert back == v, (v, back)
        assert cbor.dumps(back) == data


def test_seeded_mutations_raise_only_decode_errors():
    r = Rng(777)
    seeds = [cbor.dumps(_random_value(r, 0)) for _ in range(30)]
    seeds.append(cbor.dumps({0: [1, 0], 1: 0, 2: 12345, 3: "sensor-1", 7: {"unit": "C", "s": [21.5]}}))
    for n in range(3000):
        data = bytearray(seeds[n % len(seeds)])
        for _ in range(1 + r.below(3)):
            op = r.below(4)
            if op == 0 and data:
                data[r.below(len(data))] = r.below(256)
            elif op == 1 and data:
                data = data[:r.below(len(data))]
            elif op == 2:
                p = r.below(len(data) + 1)
                data = data[:p] + bytearray([r.below(256)]) + data[p:]
            elif data:
                data[r.below(len(data))] ^= 1 << r.below(8)
        try:
            v = cbor.loads(bytes(data), max_size=1024, max_depth=8, max_items=256)
        except CBORDecodeError as e:
            assert 0 <= e.offset <= len(data), (data, e.offset)
        else:
            cbor.loads(cbor.dumps(v), max_size=1024, max_depth=8, max_items=256)
