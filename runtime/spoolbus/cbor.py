"""CBOR (RFC 8949) for spoolbus messages: ints to 64 bits, bytes, text, arrays, maps, bools, null, floats.

dumps is deterministic (RFC 8949 §4.2.1 core order, shortest forms); loads is strict and bounded and
raises only CBORDecodeError, with the byte offset, on anything it does not accept.
"""

import sys
from struct import pack as _pack
from struct import unpack as _unpack
from struct import unpack_from as _unpack_from

from spoolbus.errors import CBORDecodeError, CBOREncodeError

_MAX_UINT = 0xFFFFFFFFFFFFFFFF
_IS_MICROPYTHON = sys.implementation.name == "micropython"


# ---------------------------------------------------------------- encoding


def dumps(obj):
    """Encode `obj` as deterministic CBOR bytes; raise CBOREncodeError for what has no encoding here."""
    out = bytearray()
    try:
        _enc(obj, out)
    except RuntimeError:  # RecursionError on CPython; MicroPython has only RuntimeError
        raise CBOREncodeError("value nested too deeply, cyclic, or changed while encoding") from None
    return bytes(out)


def _head(out, mt, n):
    """Append the shortest head of major type `mt` (already shifted: 0x00, 0x20 ... 0xa0) for `n`."""
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out.append(mt | 24)
        out.append(n)
    elif n < 0x10000:
        out += _pack(">BH", mt | 25, n)
    elif n < 0x100000000:
        out += _pack(">BI", mt | 26, n)
    elif n <= _MAX_UINT:
        out += _pack(">BQ", mt | 27, n)
    else:
        raise CBOREncodeError("integer out of the 64-bit CBOR range: %d" % (n if mt == 0 else -1 - n))


def _enc(obj, out):
    t = type(obj)
    if t is int:
        if obj >= 0:
            if obj < 24:
                out.append(obj)
            else:
                _head(out, 0x00, obj)
        else:
            _head(out, 0x20, -1 - obj)
    elif t is str:
        try:
            b = obj.encode()
        except UnicodeError:
            raise CBOREncodeError("text is not encodable as UTF-8 (lone surrogate?)") from None
        _head(out, 0x60, len(b))
        out += b
    elif t is dict:
        _enc_map(obj, out)
    elif t is list or t is tuple:
        _head(out, 0x80, len(obj))
        for x in obj:
            _enc(x, out)
    elif obj is None:
        out.append(0xF6)
    elif obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif t is bytes or t is bytearray or t is memoryview:
        _head(out, 0x40, len(obj))
        out += obj
    elif t is float:
        _enc_float(obj, out)
    else:
        _enc_other(obj, out)


def _enc_other(obj, out):
    """Subclasses of the supported types encode as their base type; anything else is an error."""
    for base in (bool, int, str, bytes, bytearray, float, dict, list, tuple):
        if isinstance(obj, base):
            if base is bool:
                out.append(0xF5 if obj else 0xF4)
            elif base is dict:
                _enc_map(obj, out)
            elif base is list or base is tuple:
                _head(out, 0x80, len(obj))
                for x in obj:
                    _enc(x, out)
            else:
                _enc(base(obj), out)
            return
    raise CBOREncodeError("cannot encode %s as CBOR; use int, float, str, bytes, list, dict, bool or None"
                          % type(obj).__name__)


_KEY_TYPES = (int, str, bytes, float, bool, type(None))


def _enc_map(obj, out):
    _head(out, 0xA0, len(obj))
    for k in obj:
        if type(k) is not int or k < 0:
            break
    else:
        # Non-negative ints: numeric order is the bytewise order of their shortest encodings.
        for k in sorted(obj):
            if k < 24:
                out.append(k)
            else:
                _head(out, 0x00, k)
            _enc(obj[k], out)
        return
    pairs = []
    for k, v in obj.items():
        if not isinstance(k, _KEY_TYPES):
            raise CBOREncodeError("cannot use %s as a map key; use int, str, bytes, float, bool or None"
                                  % type(k).__name__)
        kb = bytearray()
        _enc(k, kb)
        pairs.append((bytes(kb), v))
    pairs.sort(key=_first)
    prev = None
    for kb, v in pairs:
        if kb == prev:
            raise CBOREncodeError("two map keys have the same encoding: %s" % kb.hex())
        prev = kb
        out += kb
        _enc(v, out)


def _first(pair):
    return pair[0]


def _enc_float(f, out):
    """Shortest of half/single/double that holds the value exactly (as cbor2 canonical does)."""
    if f != f:
        out += b"\xf9\x7e\x00"
        return
    try:
        sb = _pack(">f", f)
    except OverflowError:  # CPython: beyond single range (MicroPython gives inf, caught below)
        sb = None
    if sb is None or _unpack(">f", sb)[0] != f:
        out.append(0xFB)
        out += _pack(">d", f)
        return
    # struct's 'e' packing is wrong on MicroPython for some subnormals: derive the half from the single.
    s = _unpack(">I", sb)[0]
    e = (s >> 23) & 0xFF
    m = s & 0x7FFFFF
    h = -1
    if e == 0xFF:
        h = 0x7C00
    elif e == 0:
        if m == 0:
            h = 0
    else:
        e -= 127
        if -14 <= e <= 15:
            if m & 0x1FFF == 0:
                h = ((e + 15) << 10) | (m >> 13)
        elif -24 <= e < -14:
            m |= 0x800000
            sh = -1 - e
            if m & ((1 << sh) - 1) == 0:
                h = m >> sh
    if h < 0:
        out.append(0xFA)
        out += sb
    else:
        out += _pack(">BH", 0xF9, h | ((s >> 16) & 0x8000))


# ---------------------------------------------------------------- decoding


def loads(data, max_size=65536, max_depth=16, max_items=4096):
    """Decode exactly one CBOR item from `data` (bytes, bytearray or memoryview).

    Bounded: more than `max_size` bytes, containers nested deeper than `max_depth`, or more than
    `max_items` data items in all (every array element, map key and map value counts) is an error,
    detected before anything large is allocated. Rejected as CBORDecodeError, with the byte offset:
    truncation, trailing bytes, reserved or indefinite-length heads (spoolbus never sends indefinite
    lengths), integer/length heads not in their shortest form (so every value has one encoding; floats
    of any width are accepted), tags, simple values other than false/true/null, invalid UTF-8,
    array or map keys, and duplicate map keys (including keys Python treats as equal, such as 1 and 1.0).
    Map keys may come in any order. Byte strings decode to bytes, arrays to list, maps to dict.
    """
    if type(data) is not bytes:
        if not isinstance(data, (bytearray, memoryview)):
            raise CBORDecodeError("expected bytes, got %s" % type(data).__name__, 0)
        if len(data) > max_size:
            raise CBORDecodeError("input of %d bytes exceeds max_size %d" % (len(data), max_size), max_size)
        data = bytes(data)
    n = len(data)
    if n > max_size:
        raise CBORDecodeError("input of %d bytes exceeds max_size %d" % (n, max_size), max_size)
    budget = [max_items - 1]
    if budget[0] < 0:
        raise CBORDecodeError("max_items must be at least 1", 0)
    try:
        value, i = _item(data, 0, max_depth, budget)
    except RuntimeError:  # the interpreter's own recursion limit, below max_depth
        raise CBORDecodeError("nesting too deep for this interpreter's stack; lower max_depth", 0) from None
    if i != n:
        raise CBORDecodeError("%d trailing bytes after the CBOR item" % (n - i), i)
    return value


def _err(msg, i):
    return CBORDecodeError(msg, i)


def _item(d, i, depth, budget):
    """Decode the item at d[i]; return (value, offset after it)."""
    try:
        ib = d[i]
    except IndexError:
        raise _err("truncated: expected a data item", i) from None
    ai = ib & 31
    mt = ib >> 5
    j = i + 1
    if ai < 24:
        arg = ai
    elif mt == 7:
        return _simple(d, i, ai)
    elif ai == 24:
        if j >= len(d):
            raise _err("truncated head", i)
        arg = d[j]
        if arg < 24:
            raise _err("integer or length not in shortest form", i)
        j += 1
    elif ai == 25:
        if j + 2 > len(d):
            raise _err("truncated head", i)
        arg = (d[j] << 8) | d[j + 1]
        if arg < 0x100:
            raise _err("integer or length not in shortest form", i)
        j += 2
    elif ai == 26:
        if j + 4 > len(d):
            raise _err("truncated head", i)
        arg = _unpack_from(">I", d, j)[0]
        if arg < 0x10000:
            raise _err("integer or length not in shortest form", i)
        j += 4
    elif ai == 27:
        if j + 8 > len(d):
            raise _err("truncated head", i)
        arg = _unpack_from(">Q", d, j)[0]
        if arg < 0x100000000:
            raise _err("integer or length not in shortest form", i)
        j += 8
    elif ai == 31:
        raise _err("indefinite-length items are not accepted", i)
    else:
        raise _err("reserved additional information %d" % ai, i)

    if mt == 0:
        return arg, j
    if mt == 1:
        return -1 - arg, j
    if mt == 3:
        if arg > len(d) - j:
            raise _err("truncated: text string of %d bytes" % arg, i)
        k = j + arg
        b = d[j:k]
        try:
            s = str(b, "utf-8")
        except UnicodeError:
            raise _err("invalid UTF-8 in text string", i) from None
        if _IS_MICROPYTHON and len(s) != arg and not _utf8_ok(b):
            raise _err("invalid UTF-8 in text string", i)
        return s, k
    if mt == 2:
        if arg > len(d) - j:
            raise _err("truncated: byte string of %d bytes" % arg, i)
        k = j + arg
        return d[j:k], k
    if mt == 4:
        if depth <= 0:
            raise _err("nesting deeper than max_depth", i)
        if arg > len(d) - j:
            raise _err("truncated: array of %d items" % arg, i)
        left = budget[0] - arg
        if left < 0:
            raise _err("more data items than max_items", i)
        budget[0] = left
        depth -= 1
        lst = []
        for _ in range(arg):
            v, j = _item(d, j, depth, budget)
            lst.append(v)
        return lst, j
    if mt == 5:
        if depth <= 0:
            raise _err("nesting deeper than max_depth", i)
        if arg > (len(d) - j) >> 1:
            raise _err("truncated: map of %d pairs" % arg, i)
        left = budget[0] - 2 * arg
        if left < 0:
            raise _err("more data items than max_items", i)
        budget[0] = left
        depth -= 1
        m = {}
        for c in range(arg):
            if j < len(d) and 0x80 <= d[j] < 0xC0:
                raise _err("map key must be an integer, string, float, bool or null", j)
            k0 = j
            k, j = _item(d, j, depth, budget)
            v, j = _item(d, j, depth, budget)
            m[k] = v
            if len(m) <= c:
                raise _err("duplicate map key %r" % (k,), k0)
        return m, j
    if mt == 6:
        raise _err("tags are not accepted", i)
    # mt 7 with ai < 24: simple values
    if ai == 20:
        return False, j
    if ai == 21:
        return True, j
    if ai == 22:
        return None, j
    raise _err("unsupported simple value %d" % ai, i)


def _simple(d, i, ai):
    """Major type 7 with a following argument: floats; one-byte simple values are rejected."""
    j = i + 1
    if ai == 25:
        if j + 2 > len(d):
            raise _err("truncated half float", i)
        return _unpack_from(">e", d, j)[0], j + 2
    if ai == 26:
        if j + 4 > len(d):
            raise _err("truncated single float", i)
        return _unpack_from(">f", d, j)[0], j + 4
    if ai == 27:
        if j + 8 > len(d):
            raise _err("truncated double float", i)
        return _unpack_from(">d", d, j)[0], j + 8
    if ai == 24:
        raise _err("unsupported simple value", i)
    if ai == 31:
        raise _err("unexpected break (indefinite-length items are not accepted)", i)
    raise _err("reserved additional information %d" % ai, i)


def _utf8_ok(b):
    """Strict UTF-8 (no overlongs, surrogates or values above U+10FFFF); MicroPython's str() is lax."""
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            k, lo, hi = 1, 0x80, 0xBF
        elif 0xE0 <= c <= 0xEF:
            k = 2
            lo = 0xA0 if c == 0xE0 else 0x80
            hi = 0x9F if c == 0xED else 0xBF
        elif 0xF0 <= c <= 0xF4:
            k = 3
            lo = 0x90 if c == 0xF0 else 0x80
            hi = 0x8F if c == 0xF4 else 0xBF
        else:
            return False
        if i + k >= n:
            return False
        if not lo <= b[i + 1] <= hi:
            return False
        for x in range(i + 2, i + k + 1):
            if not 0x80 <= b[x] <= 0xBF:
                return False
        i += k + 1
    return True
