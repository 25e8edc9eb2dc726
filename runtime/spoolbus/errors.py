"""The typed errors of spoolbus, one family for every layer.

Every error a caller can meet derives from SpoolbusError and says what to do about it.
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
    """A CBOR value that is not a valid envelope (missing or wrongly typed field)."""


class UnsupportedWireVersion(EnvelopeError):
    """An envelope of a wire major version this node does not speak."""

    def __init__(self, got, supported):
        super().__init__("unsupported wire version %r; this node speaks %r" % (got, supported))
        self.got = got
        self.supported = supported
