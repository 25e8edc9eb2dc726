"""Framing for byte streams (serial lines): COBS with a 0x00 delimiter and a CRC-32 per frame.

A payload is delivered only if its CRC matches; garbage, console text, corrupt and oversize frames are
counted and skipped, the decoder resynchronises on the next delimiter, and it never raises on bad bytes.
"""

from spoolbus.crc import crc32
from spoolbus.errors import FrameTooLarge

DELIMITER = b"\x00"
MAX_FRAME = 1024  # default largest payload, in bytes
_ZERO = b"\x00"  # what a COBS block code below 0xFF stands for, after its data
_RESIDUE = 0x2144DF1C  # CRC-32 of any payload followed by its own CRC-32 (little-endian)


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
    Memory is one buffer of about max_frame bytes, allocated once, which holds a run as received; a frame
    is checked without changing it and only then decoded in place, when its delimiter comes.

    With `on_text`, the stream is a console too (a board's REPL line): a run that is not a frame is retried
    from just after each newline in it, so text that runs into a frame costs the text, not the frame, and
    every byte that is no frame goes to on_text(data), a bytes-like object valid only during the call: a
    run's text when its delimiter comes, an oversize run as it streams in (a frame glued to it is lost).
    One failed run counts once. The buffer has room for a short line of text before a maximal frame.
    """

    def __init__(self, max_frame=MAX_FRAME, on_text=None):
        self.max_frame = max_frame
        self.frames = 0
        self.corrupt = 0
        self.oversize = 0
        n = max_frame + 4
        n += 1 + n // 254
        self._on_text = on_text
        if on_text is not None:
            n += 12  # room for a short line of text before a maximal frame
        self._buf = bytearray(n)  # the run as received
        self._mv = memoryview(self._buf)
        self._n = 0  # bytes of the unfinished run
        self._drop = False  # discarding an oversize run up to the next delimiter

    def feed(self, chunk, end=None):
        """Take bytes (bytes, bytearray or memoryview), the first `end` of them if given; return the list of
        payloads (bytes) completed."""
        if type(chunk) is memoryview:
            chunk = bytes(chunk)
        out = []
        src = memoryview(chunk)
        cap = len(self._buf)
        text = self._on_text
        run = self._mv
        n = self._n
        pos = 0
        if end is None:
            end = len(chunk)
        while True:
            z = chunk.find(DELIMITER, pos, end)
            stop = end if z < 0 else z
            k = stop - pos
            if k and not self._drop:
                if n + k > cap:
                    if text is not None:
                        text(run[:n])
                    self._drop = True
                    self.oversize += 1
                    n = 0
                else:
                    run[n : n + k] = src[pos:stop]
                    n += k
            if self._drop and k and text is not None:
                text(src[pos:stop])
            if z < 0:
                break
            if self._drop:
                self._drop = False
            elif text is not None:
                if n:
                    if not self._frame(0, n, out):  # text may run into a frame: try after each newline
                        counted = self.corrupt, self.oversize
                        buf = self._buf
                        nl = buf.find(b"\n", 0, n - 1)  # a newline that ends the run starts no frame
                        while nl >= 0:
                            if self._frame(nl + 1, n, out):
                                break
                            nl = buf.find(b"\n", nl + 1, n - 1)
                        else:
                            self.corrupt, self.oversize = counted
                            nl = n - 1
                        text(run[: nl + 1])
            elif n:
                self._frame(0, n, out)
            n = 0
            pos = z + 1
        self._n = n
        return out

    def _frame(self, r, n, out):
        """Check the COBS bytes _buf[r:n] (code chain, size, CRC) without changing them, then decode the
        payload in place; True if a payload went to out. A failed run stays in _buf as received, so that
        it can be tried again from a later start, and a frame costs the heap only its payload's bytes."""
        buf = self._buf
        mv = self._mv
        i = r
        w = 0  # decoded length
        crc = 0  # of everything decoded, the frame's CRC included: _RESIDUE if they match
        while True:
            c = buf[i]
            nxt = i + c
            if nxt > n:
                self.corrupt += 1
                return False
            crc = crc32(mv[i + 1 : nxt], crc)
            w += c - 1
            if nxt == n:
                break
            if c != 0xFF:
                crc = crc32(_ZERO, crc)
                w += 1
            i = nxt
        m = w - 4  # payload length
        if m < 0:
            self.corrupt += 1
            return False
        if m > self.max_frame:
            self.oversize += 1
            return False
        if crc != _RESIDUE:
            self.corrupt += 1
            return False
        w = r + 1  # decode in place: the payload lands at _buf[r + 1:]
        c = buf[r]
        while True:
            nxt = r + c
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
        self.frames += 1
        out.append(bytes(mv[w - 4 - m : w - 4]))
        return True
