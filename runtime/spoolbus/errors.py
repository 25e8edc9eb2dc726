"""The typed errors of spoolbus, one family for every layer, and the millisecond ticks their timeouts use.

Every error a caller can meet derives from SpoolbusError and says what to do about it (a bad bridge or
device name, refused by check_name, is a ValueError: a mistake in the program or its settings). In an ERROR
reply they travel by their class name in snake_case (docs/protocol.md, section 3).
"""


class SpoolbusError(Exception):
    """Base of every error spoolbus raises on purpose."""


class DecodeError(SpoolbusError):
    """Bytes that cannot be decoded; `offset` is where the decoder stopped (-1 if unknown)."""

    def __init__(self, message, offset=-1):
        super().__init__(message if offset < 0 else "%s (at byte %d)" % (message, offset))
        self.offset = offset


class CBORDecodeError(DecodeError):
    """Malformed, truncated or over-limit CBOR."""


class CBOREncodeError(SpoolbusError):
    """A value that has no CBOR encoding in spoolbus (unsupported type, integer out of range)."""


class FrameTooLarge(SpoolbusError):
    """A payload larger than the link's maximum frame size."""


class EnvelopeError(DecodeError):
    """A CBOR value that is not a valid envelope (missing or wrongly typed field).

    From wire.decode, `kind`, `id` and `src` are the envelope's keys 1, 2 and 3 when they have their
    types (None otherwise): enough for a node to answer the sender.
    """


class UnsupportedWireVersion(EnvelopeError):
    """An envelope of a wire major version this node does not speak."""

    def __init__(self, got, supported):
        super().__init__("unsupported wire version %r; this node speaks %r" % (got, supported))
        self.got = got
        self.supported = supported


# --- MQTT client (transport/mqtt_client.py) ---


class MQTTProtocolError(DecodeError):
    """The broker sent bytes that are not valid MQTT 3.1.1 for this client; the connection is closed."""


class MQTTConnectionError(SpoolbusError):
    """The broker cannot be reached or the connection was lost; reconnect (unacknowledged QoS 1 is kept)."""


class MQTTRefused(MQTTConnectionError):
    """The broker refused the connection or a subscription; `code` is the CONNACK/SUBACK return code."""

    def __init__(self, message, code):
        super().__init__("%s (code %d)" % (message, code))
        self.code = code


class MQTTMessageTooLarge(SpoolbusError):
    """A publish larger than the client's max_packet; raise max_packet on both ends or send less."""


# --- RPC: contracts and nodes (contract.py, node.py) ---


class ContractError(SpoolbusError):
    """A call that breaks the service's declared contract; its type travels in an ERROR reply."""


class InvalidArguments(ContractError):
    """Arguments missing, unknown or of the wrong type for the method; fix the call to match the contract."""


class NoSuchService(ContractError):
    """The destination serves no service of that name; check the node and the service name (see hello)."""


class NoSuchMethod(ContractError):
    """The service has no such method at any version; check the method name against the contract."""


class UnsupportedVersion(ContractError):
    """The API version asked for is not served (other major, or newer minor): lower version_cap or upgrade;
    or it is older than the method or an argument given needs: declare the version the call needs.
    From a server, `details` is {"version": the service's version there}."""


class RemoteError(SpoolbusError):
    """The remote side answered a call with an error: `type`, `message`, `details` (and `trace` if debug)."""

    def __init__(self, type, message, details=None, trace=None):
        super().__init__("%s: %s" % (type, message))
        self.type = type
        self.message = message
        self.details = details
        self.trace = trace


class Timeout(SpoolbusError):
    """No reply before the call's timeout; the call may or may not have run on the server."""


# --- spool ---


class SpoolError(SpoolbusError):
    """A spool operation failed (missing or read-only directory, unknown message id); the message says why."""


class SpoolFull(SpoolError):
    """The spool is at its quota (messages or bytes) or the disk is full; consume, raise the quota, retry."""


# --- lock ---


class LockError(SpoolbusError):
    """A lock cannot be used (its directory cannot be created, or is misused); the message says why."""


class LockTimeout(LockError):
    """Another holder kept the lock past the timeout; the message names the holder. Retry or wait longer."""


class LockLost(LockError):
    """This holder no longer has the lock (it was broken as stale): stop writing, acquire again."""


class Busy(SpoolbusError):
    """Too many calls in flight on this node (max_pending), or a server too many calls deep (max_depth):
    wait for replies or raise the limit."""


# --- serial link (transport/serial.py) ---


class LinkError(SpoolbusError):
    """The serial link cannot carry this message or is closed; the message says what to change."""


class LinkReset(LinkError):
    """The peer restarted (its hello carried a new boot nonce): anything in flight was lost; retry calls."""


class LinkDown(LinkError):
    """Nothing arrived from the peer for dead_ms: it stopped, was unplugged or the line is cut; the link
    keeps saying hello and comes back UP (raising LinkReset if the peer rebooted meanwhile)."""


# --- node names, every transport's (here, as the ticks below: every module imports errors already) ---

_NAME_CHARS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


def check_name(part):
    """`part`, a bridge's or a device's name, if every transport and broker can carry it: 1-64 of
    A-Z a-z 0-9 - _ (docs/protocol.md, section 7). Otherwise ValueError naming it and the rule.

    One rule for all, because a bridge carries spool and serial devices onto MQTT under the same names.
    A leading '_' passes: it marks spoolbus's own nodes (_bridge), which are made with this check too.
    """
    if type(part) is not str or not 0 < len(part) <= 64 or part.strip(_NAME_CHARS):  # a bad character is left
        raise ValueError("%r is not a bridge or device name: use 1-64 of A-Z a-z 0-9 - _ ('.' splits "
                         "topic levels on RabbitMQ, '~' joins bridge~device in a spool, MQTT reserves / + #)"
                         % (part,))
    return part


# --- ticks for timeouts, every layer's (here, not in a module of their own, which would cost more heap) ---
# MicroPython's time.ticks_* where the port has them: ticks_diff(a, b) is a - b across the wraparound of a
# board's ticks, ticks_add(t, ms) is t + ms. On CPython, monotonic milliseconds.
try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython
    from time import monotonic as _monotonic
    from time import sleep as _sleep

    def ticks_ms():
        return int(_monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

    def sleep_ms(ms):
        _sleep(ms / 1000)
