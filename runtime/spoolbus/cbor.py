"""CBOR (RFC 8949) for spoolbus messages: ints to 64 bits, bytes, text, arrays, maps, bools, null, floats.

dumps is deterministic (RFC 8949 §4.2.1 core order, shortest forms); loads is strict and bounded and
raises only CBORDecodeError, with the byte offset, on anything it does not accept.
"""

from struct import pack as _pack
from struct import unpack as _unpack
from struct import unpack_from as _unpack_from

from spoolbus.errors import CBORDecodeError, CBOREncodeError

_MAX_UINT = 0xFFFFFFFFFFFFFFFF
_IS_MICROPYTHON = __import__("sys").implementation.name == "micropython"


# ---------------------------------------------------------------- encoding


def dumps(obj):
    """Encode `obj` as deterministic CBOR bytes; raise CBOREncodeError for what has no encoding here.

    Maps come out in RFC 8949 core deterministic order (bytewise order of the encoded keys); map keys
    must be int, str, bytes, float, bool or None. Nesting deeper than 256 (or a cycle) is an error.
    """
    out = bytearray()
    try:
        _encode(obj, out)
    except UnicodeError:
        raise CBOREncodeError("text is not encodable as UTF-8 (lone surrogate?)") from None
    except RuntimeError:  # a dict or list changed size while being encoded
        raise CBOREncodeError("value changed while being encoded") from None
    return bytes(out)


_MAX_NESTING = 256
_END = object()


def _encode(obj, out):
    """One loop with an explicit stack of container iterators: calls are dear on MicroPython.

    Builtins are bound to locals: MicroPython looks each name up in the module's globals first, and
    misses there are slow in a nearly full globals table.
    """
    ap = out.append
    head = _head
    nxt = next
    end = _END
    typ = type
    ln = len
    int_t = int
    str_t = str
    dict_t = dict
    list_t = list
    tuple_t = tuple
    stack = []
    it = None  # iterator over what is left of the current container
    mode = 0  # how `it` yields: 0 items of an array, 1 int keys of `cont`, 2 (encoded key, i, value)
    cont = None
    while True:
        t = typ(obj)
        if t is int_t:
            if 0 <= obj < 24:
                ap(obj)
            elif obj >= 0:
                head(out, 0x00, obj)
            else:
                head(out, 0x20, -1 - obj)
        elif t is str_t:
            b = obj.encode()
            n = ln(b)
            if n < 24:
                ap(0x60 | n)
            else:
                head(out, 0x60, n)
            out += b
        elif t is dict_t or t is list_t or t is tuple_t:
            n = ln(obj)
            if t is dict_t:
                head(out, 0xA0, n)
            elif n < 24:
                ap(0x80 | n)
            else:
                head(out, 0x80, n)
            if n:
                if ln(stack) >= _MAX_NESTING:
                    raise CBOREncodeError("nested deeper than %d (or cyclic); flatten it" % _MAX_NESTING)
                stack.append((it, mode, cont))
                if t is not dict_t:
                    it = iter(obj)
                    mode = 0
                else:
                    keys = _int_keys(obj)
                    if keys is not None:
                        it = iter(keys)
                        mode = 1
                        cont = obj
                    else:
                        it = iter(_map_pairs(obj))
                        mode = 2
        elif obj is None:
            ap(0xF6)
        elif obj is True:
            ap(0xF5)
        elif obj is False:
            ap(0xF4)
        elif t is bytes or t is bytearray or t is memoryview:
            if t is memoryview:
                obj = bytes(obj)  # len() of a memoryview counts its items, not its bytes
            head(out, 0x40, len(obj))
            out += obj
        elif t is float:
            _enc_float(obj, out)
        else:
            obj = _base_value(obj)
            continue
        # the next item: from the current container, or from an enclosing one once it is exhausted
        while True:
            if it is None:
                return
            obj = nxt(it, end)
            if obj is not end:
                if mode == 1:
                    if obj < 24:
                        ap(obj)
                    else:
                        head(out, 0x00, obj)
                    obj = cont[obj]
                elif mode == 2:
                    out += obj[0]
                    obj = obj[2]
                break
            it, mode, cont = stack.pop()


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


def _base_value(obj):
    """A subclass of a supported type (IntEnum, OrderedDict...) as its base type; anything else fails."""
    if isinstance(obj, dict):
        return {k: obj[k] for k in obj}  # dict(obj) mistakes a subclass for pairs on MicroPython
    for base in (bool, int, str, bytes, float, list, tuple):
        if isinstance(obj, base):
            return base(obj)
    raise CBOREncodeError("cannot encode %s as CBOR; use int, float, str, bytes, list, dict, bool or None"
                          % type(obj).__name__)


def _int_keys(m):
    """The keys of `m` in order, if all are non-negative ints: then numeric order is the encoded order.

    Returns `m` itself when it already iterates in order (an envelope usually does): no sort, no list.
    """
    typ = type
    int_t = int
    ordered = True
    prev = -1
    for k in m:
        if typ(k) is not int_t or k < 0:
            return None
        if k < prev:
            ordered = False
        prev = k
    return m if ordered else sorted(m)


_KEY_TYPES = (int, str, bytes, float, bool, type(None))


def _map_pairs(m):
    """(encoded key, index, value) triples of `m` in bytewise order of the encoded keys."""
    pairs = []
    for k in m:
        if type(k) is str:
            kb = k.encode()
            kb = bytes((0x60 | len(kb),)) + kb if len(kb) < 24 else None
        elif isinstance(k, _KEY_TYPES):
            kb = None
        else:
            raise CBOREncodeError("cannot use %s as a map key; use int, str, bytes, float, bool or None"
                                  % type(k).__name__)
        if kb is None:
            kb = bytearray()
            _encode(k, kb)
            kb = bytes(kb)
        pairs.append((kb, len(pairs), m[k]))  # the unique index keeps sort() from comparing values
    pairs.sort()
    prev = None
    for p in pairs:
        if p[0] == prev:
            raise CBOREncodeError("two map keys have the same encoding: %s" % prev.hex())
        prev = p[0]
    return pairs


def _enc_float(f, out):
    """Shortest of half/single/double that holds the value exactly (as cbor2 canonical does)."""
    if f != f:
        out += b"\xf9\x7e\x00"
        return
    try:
        hb = _pack(">e", f)
    except OverflowError:  # CPython, beyond half range (MicroPython wraps: the check below catches it)
        hb = None
    if hb is not None and _unpack(">e", hb)[0] == f:
        out.append(0xF9)
        out += hb
        return
    try:
        sb = _pack(">f", f)
    except OverflowError:
        sb = None
    if sb is None or _unpack(">f", sb)[0] != f:
        out.append(0xFB)
        out += _pack(">d", f)
        return
    if -6.103515625e-05 < f < 6.103515625e-05:
        # MicroPython's struct 'e' mispacks the half subnormals from 2**-15 to 2**-14: k * 2**-24.
        k = f * 16777216.0
        if k == int(k):
            out += _pack(">BH", 0xF9, int(-k) | 0x8000 if k < 0 else int(k))
            return
    out.append(0xFA)
    out += sb


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
        if len(data) <= max_size:
            data = bytes(data)
    if len(data) > max_size:
        raise CBORDecodeError("input of %d bytes exceeds max_size %d" % (len(data), max_size), max_size)
    return _decoder(data, max_depth, max_items - 1)


_ARG_FORMAT = (">B", ">H", ">I", ">Q", ">e", ">f", ">d")
_ARG_MIN = (24, 0x100, 0x10000, 0x100000000)
_TRUNCATED = "truncated"
_NOT_SHORTEST = "integer or length not in shortest form"


def _decode(d, max_depth, left):
    """One loop with an explicit stack, no call per item: calls are dear on MicroPython.

    Names used per item are bound to locals (see _encode).
    """
    typ = type
    ln = len
    list_t = list
    dict_t = dict
    str_t = str
    unpack_from = _unpack_from
    formats = _ARG_FORMAT
    lax_utf8 = _IS_MICROPYTHON
    if left < 0:
        raise CBORDecodeError("more data items than max_items", 0)
    n = len(d)
    i = 0
    stack = []  # (container, rem, key, key offset) of each enclosing container
    cont = None  # the list or dict being filled; None at the top level
    rem = 0  # items still to come in cont (a map counts keys and values; a key is due when even)
    key = None
    koff = 0
    while True:
        if i >= n:
            raise CBORDecodeError(_TRUNCATED, i)
        ib = d[i]
        j = i + 1
        if ib < 24:
            v = ib
        else:
            ai = ib & 31
            mt = ib >> 5
            if ai < 24:
                arg = ai
            elif ai < 28:
                k = j + (1 << (ai - 24))
                if k > n:
                    raise CBORDecodeError(_TRUNCATED, i)
                if mt == 7:
                    if ai == 24:
                        raise CBORDecodeError("unsupported simple value", i)
                    v = unpack_from(formats[ai - 21], d, j)[0]
                    mt = -1
                else:
                    arg = unpack_from(formats[ai - 24], d, j)[0]
                    if arg < _ARG_MIN[ai - 24]:
                        raise CBORDecodeError(_NOT_SHORTEST, i)
                j = k
            elif ai == 31:
                raise CBORDecodeError("indefinite length or break: not accepted", i)
            else:
                raise CBORDecodeError("reserved additional information", i)
            if mt == 0:
                v = arg
            elif mt == 3 or mt == 2:
                k = j + arg
                if k > n:
                    raise CBORDecodeError(_TRUNCATED, i)
                v = d[j:k]
                if mt == 3:
                    b = v
                    try:
                        v = str_t(b, "utf-8")
                    except UnicodeError:
                        raise CBORDecodeError("invalid UTF-8", i) from None
                    if lax_utf8 and ln(v) != arg and not _utf8_ok(b):
                        raise CBORDecodeError("invalid UTF-8", i)
                j = k
            elif mt == 1:
                v = -1 - arg
            elif mt == 4 or mt == 5:
                if cont is not None and not rem & 1 and typ(cont) is dict_t:
                    raise CBORDecodeError("map key must be an integer, string, float, bool or null", i)
                if ln(stack) >= max_depth:
                    raise CBORDecodeError("nesting deeper than max_depth", i)
                if mt == 5:
                    arg += arg
                if arg > n - j:
                    raise CBORDecodeError(_TRUNCATED, i)
                left -= arg
                if left < 0:
                    raise CBORDecodeError("more data items than max_items", i)
                if arg:
                    stack.append((cont, rem, key, koff))
                    cont = [] if mt == 4 else {}
                    rem = arg
                    i = j
                    continue
                v = [] if mt == 4 else {}
            elif mt == 6:
                raise CBORDecodeError("tags are not accepted", i)
            elif mt == 7:
                if ai < 20 or ai > 22:
                    raise CBORDecodeError("unsupported simple value", i)
                v = (False, True, None)[ai - 20]
        while True:  # put v into its container; close every container that this fills
            if cont is None:
                if j != n:
                    raise CBORDecodeError("trailing bytes after the CBOR item", j)
                return v
            rem -= 1
            if typ(cont) is list_t:
                cont.append(v)
            elif rem & 1:
                key = v
                koff = i
                break
            else:
                c = ln(cont)
                cont[key] = v
                if ln(cont) == c:
                    raise CBORDecodeError("duplicate map key", koff)
            if rem:
                break
            v = cont
            cont, rem, key, koff = stack.pop()
        i = j


try:  # CPython, installed with its C decoder (csrc/cbor_c.c): the same _decode, about 5x faster
    from spoolbus._cbor_c import decode as _decode_c
except ImportError:  # MicroPython, or no C compiler at install time
    _decode_c = None
_decoder = _decode_c or _decode  # chosen once, not on every loads()


def _utf8_ok(b):
    """Strict UTF-8 (no overlongs, surrogates or values above U+10FFFF); MicroPython's str() is lax."""
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        i += 1
        if c < 0x80:
            continue
        if c < 0xC2 or c > 0xF4:
            return False
        k = 1 if c < 0xE0 else 2 if c < 0xF0 else 3
        lo = 0xA0 if c == 0xE0 else 0x90 if c == 0xF0 else 0x80
        hi = 0x9F if c == 0xED else 0x8F if c == 0xF4 else 0xBF
        if i + k > n or not lo <= b[i] <= hi:
            return False
        for x in range(i + 1, i + k):
            if not 0x80 <= b[x] <= 0xBF:
                return False
        i += k
    return True
