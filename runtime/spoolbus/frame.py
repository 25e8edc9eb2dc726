"""Framing for byte streams (serial lines): COBS with a 0x00 delimiter and a CRC-32 per frame.

A payload is delivered only if its CRC matches; garbage, console text, corrupt and oversize frames are
counted and skipped, the decoder resynchronises on the next delimiter, and it never raises on bad bytes.
"""

from spoolbus.crc import crc32
from spoolbus.errors import FrameTooLarge

DELIMITER = b"\x00"
MAX_FRAME = 1024  # default largest payload, in bytes


def encode(payload, max_frame=MAX_FRAME):
    """COBS(payload + CRC-32 little-endian) + DELIMITER, as bytes.

    The bytes are laid out in a buffer with room for the worst case and COBS-encoded in place:
    a zero byte becomes its block's successor code, so only blocks after a run of 254 non-zero bytes move.
    """
    n = len(payload)
    if n > max_frame:
        raise FrameTooLarge(
            "payload of %d bytes exceeds the %d-byte frame limit; send less or raise max_frame"
            % (n, max_frame)
        )
    end = n + 4
    shift = 1 + end // 254  # one code byte, plus one per possible run of 254 non-zero bytes
    end += shift
    out = bytearray(end + 1)
    mv = memoryview(out)
    mv[shift : shift + n] = payload
    c = crc32(payload)
    i = shift + n
    out[i] = c & 0xFF
    out[i + 1] = (c >> 8) & 0xFF
    out[i + 2] = (c >> 16) & 0xFF
    out[i + 3] = c >> 24
    r = shift  # next data byte to encode
    w = 0  # where its block's code byte goes (always before r)
    while True:
        lim = r + 254
        if lim > end:
            lim = end
        z = out.find(DELIMITER, r, lim)
        stop = lim if z < 0 else z
        k = stop - r
        if w + 1 != r:
            mv[w + 1 : w + 1 + k] = mv[r:stop]
        if z >= 0:
            out[w] = k + 1
            w += k + 1
            r = z + 1
        elif k == 254:
            out[w] = 0xFF
            w += 255
            r = stop
            if r == end:
                break
        else:
            out[w] = k + 1
            w += k + 1
            break
    out[w] = 0
    return bytes(mv[: w + 1])


class Decoder:
    """Incremental decoder: feed it chunks of any size, get back the payloads of the intact frames.

    Counters: `frames` delivered, `corrupt` (bad COBS or CRC, line noise, console text between frames),
    `oversize` (longer than max_frame). Empty frames (consecutive delimiters) are idle fill, not counted.
    Memory is one buffer of about max_frame bytes, allocated once; frames are decoded in place.
    """

    def __init__(self, max_frame=MAX_FRAME):
        self.max_frame = max_frame
        self.frames = 0
        self.corrupt = 0
        self.oversize = 0
        n = max_frame + 4
        self._buf = bytearray(n + 1 + n // 254)
        self._mv = memoryview(self._buf)
        self._n = 0  # bytes of the unfinished frame held in _buf
        self._drop = False  # discarding an oversize run up to the next delimiter

    def feed(self, chunk):
        """Take bytes (bytes, bytearray or memoryview); return the list of payloads (bytes) completed."""
        if type(chunk) is memoryview:
            chunk = bytes(chunk)
        out = []
        src = memoryview(chunk)
        cap = len(self._buf)
        n = self._n
        pos = 0
        end = len(chunk)
        while True:
            z = chunk.find(DELIMITER, pos)
            stop = end if z < 0 else z
            k = stop - pos
            if k and not self._drop:
                if n + k > cap:
                    self._drop = True
                    self.oversize += 1
                    n = 0
                else:
                    self._mv[n : n + k] = src[pos:stop]
                    n += k
            if z < 0:
                break
            if self._drop:
                self._drop = False
            elif n:
                self._frame(n, out)
            n = 0
            pos = z + 1
        self._n = n
        return out

    def _frame(self, n, out):
        """Decode the n COBS bytes in _buf in place (payload lands at _buf[1:]), check size and CRC."""
        buf = self._buf
        mv = self._mv
        r = 0  # code byte of the current block
        w = 1  # where the current block's data belongs
        c = buf[0]
        while True:
            nxt = r + c
            if nxt > n:
                self.corrupt += 1
                return
            if w != r + 1:
                mv[w : w + c - 1] = mv[r + 1 : nxt]
            w += c - 1
            if nxt == n:
                break
            nc = buf[nxt]
            if c != 0xFF:
                buf[w] = 0
                w += 1
            c = nc
            r = nxt
        m = w - 5  # payload length
        if m < 0:
            self.corrupt += 1
        elif m > self.max_frame:
            self.oversize += 1
        elif crc32(mv[1 : w - 4]) != buf[w - 4] | buf[w - 3] << 8 | buf[w - 2] << 16 | buf[w - 1] << 24:
            self.corrupt += 1
        else:
            self.frames += 1
            out.append(bytes(mv[1 : w - 4]))
