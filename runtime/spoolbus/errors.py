"""The typed errors of the core (codec, framing, envelope, contracts, node, serial link) and the
millisecond ticks their timeouts use.

Every error a caller can meet derives from SpoolbusError and says what to do about it. The spool's, the
lock's and the MQTT client's own errors live in their modules (spool.SpoolError, lock.LockTimeout,
mqtt_client.MQTTRefused...), so that a node that does not use them does not pay their heap; a bad bridge
or device name (names.check_name) is a ValueError: a mistake in the program or its settings. In an ERROR
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
