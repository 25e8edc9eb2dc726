"""Serial transport: spoolbus messages in frames (spoolbus.frame) over a UART, a console or a host port.

Only intact frames are delivered; console text between frames is skipped. A supervised link: hello on
open, keepalive pings, a rebooted peer raises LinkReset and a silent one LinkDown (once each), then the
link reconnects by itself. Byte format and states: docs/serial.md.
"""

import os

from spoolbus import errors, frame
from spoolbus.errors import ticks_diff as _ticks_diff
from spoolbus.errors import ticks_ms as _ticks_ms

# Link-control frames start with 0xFF, which no CBOR data item starts with (it is the "break" code).
_CTRL = 0xFF
_HELLO = 0x48  # b"H": hello, nonce(4) + name; sent on open, after a reboot and while the link is down
_HELLO_ACK = 0x68  # b"h": answer to a hello, nonce(4) + name
_PING = 0x50  # b"P": keepalive when nothing was sent for keepalive_ms
_PONG = 0x70  # b"p": answer to a ping
_BYE = 0x42  # b"B": the sender resets now; write nothing to it until its next hello

DOWN, UP = 0, 1


class StreamPort:
    """Board side: a MicroPython stream (machine.UART, or sys.stdin.buffer and sys.stdout.buffer).

    Reads byte by byte while select.poll says a byte is waiting: a console read asks for an exact
    count and would block, and the QEMU board's UART holds one byte at a time anyway.
    """

    def __init__(self, instream, outstream=None, poll_obj=None):
        import select

        self._in = instream
        self._out = outstream or instream
        self._poll = select.poll()
        self._poll.register(poll_obj or instream, select.POLLIN)
        self._wait = getattr(self._poll, "ipoll", self._poll.poll)  # ipoll allocates nothing (MicroPython)
        self._one = bytearray(1)

    def read_into(self, buf, timeout_ms):
        """Bytes waiting (up to a frame delimiter or len(buf)) into buf, waiting timeout_ms for the first."""
        ipoll = self._wait
        readinto = self._in.readinto
        one = self._one
        n = 0
        limit = len(buf)
        wait = timeout_ms
        while n < limit:
            ready = False
            for _ in ipoll(wait):
                ready = True
            if not ready or not readinto(one):
                break
            buf[n] = one[0]
            n += 1
            if one[0] == 0:
                break
            wait = 0
        return n

    def write(self, data):
        self._out.write(data)

    def close(self):
        pass


def _skip(text):
    """Console text on the line is not for the link."""


def _nonce():
    return bytes(os.urandom(4))


class SerialTransport:
    """One peer at the other end of a serial line; `port` offers read_into(buf, timeout_ms) and write(b).

    name goes into hellos; keepalive_ms: ping when nothing was sent that long; dead_ms: the peer is
    gone when nothing arrived that long. `state` is UP or DOWN, `peer` the peer's (nonce, name).
    Counters: `stats` (frames in and out, resets, downs) and the frame decoder's (`decoder`).
    """

    def __init__(self, port, name="", max_frame=frame.MAX_FRAME, keepalive_ms=500, dead_ms=2000):
        self.port = port
        self.name = name
        self.max_frame = max_frame
        self.keepalive_ms = keepalive_ms
        self.dead_ms = dead_ms
        self.nonce = _nonce()
        self.peer = None
        self.state = DOWN
        self.decoder = frame.Decoder(max_frame, _skip)
        self.stats = {"sent": 0, "received": 0, "resets": 0, "downs": 0, "pings": 0}
        # Bytes are read in chunks of at most 128 and fed to the decoder, which holds the frame: a buffer
        # of a frame's size here would cost a board another KB for nothing (a read on a board returns
        # at a delimiter anyway, and recv reads on while bytes keep coming).
        self._rxbuf = bytearray(128)
        self._queue = []
        self._event = None
        now = _ticks_ms()
        self._last_rx = now
        self._last_tx = now
        self._closed = False
        self._quiet = False  # the peer said bye: its console may be booting, where a byte can be Ctrl-C

    def open(self):
        """Say hello; the peer's answer brings the link UP."""
        self._hello(_HELLO)

    def bye(self):
        """Tell the peer this side resets now: it writes nothing (no ping, hello or message) until this
        side's next hello, so no byte reaches a console while the board boots (docs/serial.md)."""
        self._write(frame.encode(b"\xffB", self.max_frame))

    def send(self, dst, data):
        """Frame and write one message (a CBOR item, e.g. an encoded envelope); dst is ignored. LinkDown
        while the peer restarts after its bye: the caller holds the message and sends it again."""
        if self._closed:
            raise errors.LinkError("the serial link is closed; open a new transport")
        if self._quiet:
            raise errors.LinkDown("the peer is restarting (it said bye); send again once it says hello")
        if len(data) and data[0] == _CTRL:
            raise errors.LinkError("a message may not start with 0xFF (reserved for link control); "
                                   "send a CBOR item")
        self._write(frame.encode(data, self.max_frame))
        self.stats["sent"] += 1

    def recv(self, timeout_ms=0):
        """The next message (bytes) within timeout_ms, or None; raises LinkReset or LinkDown on events."""
        start = _ticks_ms()
        queue = self._queue
        while True:
            if self._event is not None:
                e = self._event
                self._event = None
                raise e
            if queue:
                data = queue.pop(0)
                if data and data[0] == _CTRL:
                    self._control(data)
                    continue
                self.stats["received"] += 1
                return data
            left = timeout_ms - _ticks_diff(_ticks_ms(), start)
            wait = 0 if left < 0 else left if left < self.keepalive_ms else self.keepalive_ms
            n = self.port.read_into(self._rxbuf, wait)
            now = _ticks_ms()
            if n:
                if self._feed(n):
                    self._last_rx = now
                    if self.peer is not None:
                        self.state = UP
                if _ticks_diff(now, start) <= timeout_ms + 50:
                    continue  # read on while bytes keep coming (a frame may be split across reads)
            elif self.state == UP and _ticks_diff(now, self._last_rx) > self.dead_ms:
                self._down()  # only when the line is idle: bytes still waiting are not a dead peer
            self._keepalive(now)
            if self._event is None and _ticks_diff(now, start) >= timeout_ms:
                return None

    def _feed(self, n):
        """Decode the n received bytes in _rxbuf; True if a message came."""
        out = self.decoder.feed(self._rxbuf, n)
        if out:
            self._queue.extend(out)
        return bool(out)

    def peers(self):
        """The peer's node name once its hello came (a serial line has one peer)."""
        return [self.peer[1]] if self.peer is not None and self.peer[1] else []

    def close(self):
        self._closed = True
        self.port.close()

    def _write(self, data):
        self.port.write(data)
        self._last_tx = _ticks_ms()

    def _hello(self, kind):
        msg = bytearray(b"\xff\x00")
        msg[1] = kind
        msg += self.nonce
        msg += self.name.encode()
        self._write(frame.encode(msg, self.max_frame))

    def _control(self, data):
        kind = data[1] if len(data) > 1 else -1
        if kind == _PING:
            self._write(frame.encode(b"\xffp", self.max_frame))
        elif kind == _HELLO or kind == _HELLO_ACK:
            if len(data) < 6:
                return
            nonce = bytes(data[2:6])
            name = str(data[6:], "utf-8")
            if self.peer is not None and self.peer[0] != nonce:
                self.stats["resets"] += 1
                self._event = errors.LinkReset(
                    "%r restarted (new boot nonce): messages in flight on the serial link are lost; "
                    "retry the calls that were pending" % name
                )
            self.peer = (nonce, name)
            self.state = UP
            self._quiet = False
            if kind == _HELLO:
                self._hello(_HELLO_ACK)
        elif kind == _BYE:
            name = self.peer[1] if self.peer else "the peer"
            self.peer = None  # its hello after the reset is a new peer, not a reset to report again
            self.state = DOWN
            self._quiet = True
            self.stats["downs"] += 1
            self._event = errors.LinkDown("%r is restarting: messages in flight on the serial link are lost; "
                                          "nothing is written to it until it says hello" % name)

    def _down(self):
        self.state = DOWN
        self.stats["downs"] += 1
        self._event = errors.LinkDown(
            "no frame from %r for %d ms: it stopped, was reset or unplugged, or the line is broken; "
            "the link keeps saying hello until it answers"
            % (self.peer[1] if self.peer else "the peer", self.dead_ms)
        )

    def _keepalive(self, now):
        if self._quiet:
            return
        if _ticks_diff(now, self._last_tx) >= self.keepalive_ms:
            if self.state == UP:
                self.stats["pings"] += 1
                self._write(frame.encode(b"\xffP", self.max_frame))
            else:
                self._hello(_HELLO)
