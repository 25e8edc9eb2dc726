"""The spoolbus envelope: every message is one CBOR map with small integer keys (docs/protocol.md).

decode checks each field's type for the message's kind and raises only DecodeError subclasses; unknown
integer keys (a newer minor version's fields) are carried along unchanged, so encode(decode(b)) == b.
"""

from spoolbus import cbor
from spoolbus.errors import EnvelopeError, UnsupportedWireVersion

WIRE_VERSION = (1, 0)

# Kinds (key 1).
CALL = 0
CAST = 1
REPLY = 2
ERROR = 3
NOTIFY = 4
HELLO = 5

# Keys: 0 wire version, 1 kind, 2 id, 3 src, 4 dst, 5 method, 6 API version, 7 body, 8 deadline,
# 9 reply_to, 10 signature, 11 seq ([boot nonce, counter]). Keys 0, 1, 2, 3 and 7 are always present.
# Per key: the field's name and, briefly, what it must be (docs/protocol.md has the rest); short strings
# in one table keep the module small on a board's heap.
_FIELDS = (
    "wire",
    "kind",
    "id",
    "src",
    "dst",
    "method",
    "version",
    "body",
    "deadline",
    "reply_to",
    "sig",
    "seq",
)
_WANT = (
    "[major, minor]",
    "a kind 0..5",
    "a uint",
    "text",
    "text",
    '"service.method" or an event name',
    '"major.minor"',
    "an error map",
    "a uint",
    "a uint",
    "bytes",
    "[nonce, counter]",
)


class Envelope:
    """One message; a field left None is absent on the wire (body None is sent as null).

    `wire` is the sender's wire version as decoded, or None for a new message (sent as WIRE_VERSION).
    """

    def __init__(
        self,
        kind=None,
        id=None,
        src=None,
        dst=None,
        method=None,
        version=None,
        body=None,
        deadline=None,
        reply_to=None,
        sig=None,
        seq=None,
        wire=None,
    ):
        self.kind = kind
        self.id = id
        self.src = src
        self.dst = dst
        self.method = method
        self.version = version
        self.body = body
        self.deadline = deadline
        self.reply_to = reply_to
        self.sig = sig
        self.seq = seq
        self.wire = wire
        self._extra = None  # {key: value} of keys this version does not know, kept for re-encoding


def error_body(type, message, details=None):
    """The body of an ERROR envelope: what failed (a stable name), a message for people, and data."""
    return {"type": type, "message": message, "details": details}


def encode(env):
    """The envelope as deterministic CBOR; EnvelopeError if a field is missing or of the wrong type."""
    _check(env)
    return cbor.dumps(_map(env, True))


def signing_bytes(env):
    """What the signature (key 10) covers: the encoding of the envelope without key 10."""
    return cbor.dumps(_map(env, False))


def decode(data, max_size=65536):
    """The Envelope in `data`; raises CBORDecodeError, EnvelopeError or UnsupportedWireVersion.

    An EnvelopeError (or UnsupportedWireVersion) carries the map's kind, id and src if readable, else None.
    """
    m = cbor.loads(data, max_size)
    try:
        if type(m) is not dict:
            raise EnvelopeError("an envelope is a CBOR map, got %s" % type(m).__name__)
        g = m.get
        w = g(0)
        if w == [1, 0]:
            w = WIRE_VERSION
        else:  # a newer minor, another major, or malformed
            if type(w) is not list or not w or not (_uint(w[0]) and (len(w) < 2 or _uint(w[1]))):
                _bad(0, w)
            if w[0] != WIRE_VERSION[0]:
                raise UnsupportedWireVersion(tuple(w), WIRE_VERSION)
            if len(w) != 2:
                _bad(0, w)
            w = (w[0], w[1])
        # At most 10 positional arguments: MicroPython 1.25 takes ~10 us longer to construct with 11 or more.
        env = Envelope(g(1), g(2), g(3), g(4), g(5), g(6), g(7), g(8), g(9), g(10))
        env.seq = g(11)
        env.wire = w
        n = 5  # keys 0, 1, 2, 3 and 7, counted as present; _check proves it
        for v in (env.dst, env.method, env.version, env.deadline, env.reply_to, env.sig, env.seq):
            if v is not None:
                n += 1
        if len(m) != n or (env.body is None and 7 not in m):
            # Something beyond the common case: check what the count could not (every key an integer,
            # the body present, no optional field sent as null) and keep the keys of a newer minor.
            if 7 not in m:
                raise EnvelopeError("envelope key 7 (body) is missing; send null for no body")
            for k in m:
                if type(k) is not int:
                    raise EnvelopeError("envelope keys are integers, got %r" % (k,))
                if m[k] is None and 3 < k <= 11 and k != 7:
                    raise EnvelopeError("envelope key %d is null; leave an optional field out instead" % k)
                if k < 0 or k > 11:
                    if env._extra is None:
                        env._extra = {}
                    env._extra[k] = m[k]
        _check(env)
        return env
    except EnvelopeError as e:
        # Who to answer, if keys 1, 2 and 3 look usable (an error reply names the problem to the sender).
        g = m.get if type(m) is dict else {}.get
        e.kind = g(1) if _uint(g(1)) else None
        e.id = g(2) if _uint(g(2)) else None
        e.src = g(3) if type(g(3)) is str else None
        raise


def _uint(v):
    return type(v) is int and v >= 0


def _bad(key, got):
    raise EnvelopeError(
        "envelope key %d (%s) must be %s, got %r (docs/protocol.md)" % (key, _FIELDS[key], _WANT[key], got)
    )


def _check(e):
    k = e.kind
    if type(k) is not int or k < 0 or k > HELLO:
        _bad(1, k)
    if not _uint(e.id):
        _bad(2, e.id)
    if type(e.src) is not str:
        _bad(3, e.src)
    if e.dst is not None and type(e.dst) is not str:
        _bad(4, e.dst)
    m = e.method
    if k <= CAST:
        dot = m.rfind(".") if type(m) is str else -1
        if not 0 < dot < len(m) - 1:
            _bad(5, m)
    elif (m is not None or k == NOTIFY) and (type(m) is not str or not m):
        _bad(5, m)
    v = e.version
    if v is not None or k <= CAST:
        dot = v.find(".") if type(v) is str else -1
        if not (0 < dot < len(v) - 1 and v[:dot].isdigit() and v[dot + 1 :].isdigit()):
            _bad(6, v)
    b = e.body
    if k == ERROR and (
        type(b) is not dict or type(b.get("type")) is not str or type(b.get("message")) is not str
    ):
        _bad(7, b)
    if e.deadline is not None and not _uint(e.deadline):
        _bad(8, e.deadline)
    if (e.reply_to is not None or k == REPLY or k == ERROR) and not _uint(e.reply_to):
        _bad(9, e.reply_to)
    if e.sig is not None and type(e.sig) is not bytes:
        _bad(10, e.sig)
    s = e.seq
    if s is not None and (type(s) not in (list, tuple) or len(s) != 2 or not (_uint(s[0]) and _uint(s[1]))):
        _bad(11, s)


def _map(e, with_sig):
    m = {0: e.wire or WIRE_VERSION, 1: e.kind, 2: e.id, 3: e.src, 7: e.body}
    if e.dst is not None:
        m[4] = e.dst
    if e.method is not None:
        m[5] = e.method
    if e.version is not None:
        m[6] = e.version
    if e.deadline is not None:
        m[8] = e.deadline
    if e.reply_to is not None:
        m[9] = e.reply_to
    if with_sig and e.sig is not None:
        m[10] = e.sig
    if e.seq is not None:
        m[11] = e.seq
    if e._extra:
        for k in e._extra:
            m[k] = e._extra[k]
    return m
