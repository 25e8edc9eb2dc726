"""A minimal MQTT 3.1.1 client for boards (MicroPython) and hosts (CPython), driven by poll().

Guarantees: every broker packet is parsed with bounds (max_packet) and rejected with a typed error;
QoS 1 publishes stay queued until PUBACK and are re-sent with DUP after a reconnect, to the same
broker or the next of its list; TLS (an SSLContext's wrap_socket) verifies before CONNECT is sent.
"""

import select
import socket

from spoolbus import errors
from spoolbus.errors import ticks_diff, ticks_ms


class MQTTProtocolError(errors.DecodeError):
    """The broker sent bytes that are not valid MQTT 3.1.1 for this client; the connection is closed."""


class MQTTConnectionError(errors.SpoolbusError):
    """The broker cannot be reached or the connection was lost; reconnect (unacknowledged QoS 1 is kept)."""


class MQTTRefused(MQTTConnectionError):
    """The broker refused the connection or a subscription; `code` is the CONNACK/SUBACK return code."""

    def __init__(self, message, code):
        super().__init__("%s (code %d)" % (message, code))
        self.code = code


class MQTTMessageTooLarge(errors.SpoolbusError):
    """A publish larger than the client's max_packet; raise max_packet on both ends or send less."""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_EAGAIN = const(11)  # errno EAGAIN (Linux, lwIP); BlockingIOError on CPython carries it too
_EPIPE = const(32)
_ECONNRESET = const(104)
# Packet types (first byte, with the flags MQTT 3.1.1 fixes for them); const: no RAM on MicroPython.
_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGRESP = const(0xD0)

# Pause before reconnecting to brokers that let the client in and then refuse or drop it: doubles from
# _BACKOFF_MIN to _BACKOFF_MAX, back to none after a connection that stayed up _BACKOFF_MAX.
_BACKOFF_MIN = const(500)
_BACKOFF_MAX = const(30000)

_REFUSED = ("", "unacceptable protocol version", "client id rejected", "server unavailable",
            "bad user name or password", "not authorized")


def _utf8(s):
    return s.encode() if isinstance(s, str) else bytes(s)


def _header(first, rl):
    """A packet buffer of the right size with its fixed header written; returns (buf, body offset)."""
    n = 1
    x = rl
    while True:
        n += 1
        x >>= 7
        if not x:
            break
    buf = bytearray(n + rl)
    buf[0] = first
    i = 1
    while True:
        b = rl & 0x7F
        rl >>= 7
        buf[i] = b | 0x80 if rl else b
        i += 1
        if not rl:
            return buf, i


def _put_str(buf, i, s):
    n = len(s)
    buf[i] = n >> 8
    buf[i + 1] = n & 0xFF
    buf[i + 2:i + 2 + n] = s
    return i + 2 + n


def encode_connect(client_id, keepalive, clean_session=True, user=None, password=None, will=None):
    """CONNECT; `will` is (topic, payload, qos, retain) or None."""
    fields = [_utf8(client_id)]
    flags = 0x02 if clean_session else 0
    if will:
        fields.append(_utf8(will[0]))
        fields.append(_utf8(will[1]))
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    if user is not None:
        fields.append(_utf8(user))
        flags |= 0x80
    if password is not None:
        fields.append(_utf8(password))
        flags |= 0x40
    rl = 10
    for f in fields:
        rl += 2 + len(f)
    buf, i = _header(_CONNECT, rl)
    buf[i:i + 10] = b"\x00\x04MQTT\x04" + bytes((flags, keepalive >> 8, keepalive & 0xFF))
    i += 10
    for f in fields:
        i = _put_str(buf, i, f)
    return buf


def encode_publish(topic, payload, qos=0, retain=False, pid=0, dup=False):
    """PUBLISH; the DUP bit is 0x08 of the first byte (set in place for a re-send)."""
    t = _utf8(topic)
    rl = 2 + len(t) + (2 if qos else 0) + len(payload)
    buf, i = _header(_PUBLISH | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0), rl)
    i = _put_str(buf, i, t)
    if qos:
        buf[i] = pid >> 8
        buf[i + 1] = pid & 0xFF
        i += 2
    buf[i:] = payload
    return buf


def encode_subscribe(pid, topic, qos):
    t = _utf8(topic)
    buf, i = _header(_SUBSCRIBE, 5 + len(t))
    buf[i] = pid >> 8
    buf[i + 1] = pid & 0xFF
    i = _put_str(buf, i + 2, t)
    buf[i] = qos
    return buf


def split_packet(buf, start, end, max_packet):
    """The packet at buf[start:end]: (first byte, body start, body end), or None if incomplete.

    A PUBLISH over max_packet comes back at once, its body end beyond max_packet, for the caller to
    skip; any other packet over max_packet, or a remaining length over 4 bytes, raises MQTTProtocolError.
    """
    i = start + 1
    rl = 0
    shift = 0
    while True:
        if i >= end:
            return None
        b = buf[i]
        rl |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
        if shift > 21:
            raise MQTTProtocolError("remaining length longer than 4 bytes", i - start)
    if rl > max_packet:
        if buf[start] & 0xF0 != _PUBLISH:
            raise MQTTProtocolError("packet of %d bytes exceeds max_packet %d" % (rl, max_packet),
                                           start)
    elif end - i < rl:
        return None
    return buf[start], i, i + rl


def decode_publish(first, body):
    """(topic, payload, qos, pid, retain, dup) of a PUBLISH body (a memoryview); QoS 0 and 1 only."""
    qos = (first >> 1) & 3
    if qos > 1:
        raise MQTTProtocolError("PUBLISH with QoS %d; this client subscribes with QoS 0 or 1" % qos)
    n = len(body)
    if n < 2:
        raise MQTTProtocolError("PUBLISH too short for its topic length")
    tl = (body[0] << 8) | body[1]
    i = 2 + tl
    if i + (2 if qos else 0) > n:
        raise MQTTProtocolError("PUBLISH topic length %d beyond the packet" % tl)
    try:
        topic = str(body[2:i], "utf-8")
    except UnicodeError:
        raise MQTTProtocolError("PUBLISH topic is not UTF-8") from None
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise MQTTProtocolError("PUBLISH topic %r is empty or has wildcards" % topic)
    pid = 0
    if qos:
        pid = (body[i] << 8) | body[i + 1]
        i += 2
        if not pid:
            raise MQTTProtocolError("QoS 1 PUBLISH with packet id 0")
    return topic, bytes(body[i:]), qos, pid, bool(first & 1), bool(first & 8)


def _tls_again():
    """The exceptions a non-blocking TLS socket raises for "nothing yet": CPython's SSLWantReadError and
    SSLWantWriteError; MicroPython's TLS socket returns None instead."""
    try:
        from ssl import SSLWantReadError, SSLWantWriteError
    except ImportError:  # MicroPython: no ssl module, or one without these names
        return ()
    return (SSLWantReadError, SSLWantWriteError)


def _tls_error(e):
    """One line for a failed TLS handshake: "certificate verify failed: <why>" when the broker's
    certificate did not verify (CPython's verify_message; MicroPython raises ValueError with Mbed TLS's
    reasons, "\nA\n\nB\n"), else the library's message."""
    why = getattr(e, "verify_message", None)
    if why is None and not isinstance(e, OSError):
        why = str(e).strip().replace("\n\n", "; ")
    if why is not None:
        return "certificate verify failed: " + why
    if len(e.args) > 1 and isinstance(e.args[1], str):
        return e.args[1]  # MicroPython: (Mbed TLS code, text)
    if e.args and e.args[0] in (_EPIPE, _ECONNRESET):  # mosquitto hangs up on a client without a certificate
        return "the broker hung up in the handshake (errno %d): does it want a client certificate?" % (
            e.args[0])
    return str(e)


class MQTTClient:
    """One broker connection. connect(), then publish()/subscribe(), and call poll() from the loop.

    Received messages queue until message() takes them; a QoS 1 message is acknowledged when taken,
    so the broker's in-flight window bounds the queue. QoS 0 messages beyond max_queued are dropped
    and counted in `dropped`; a message over max_packet is skipped without buffering it, acknowledged
    (it would only come back) and counted in `oversized`.

    `brokers`: further (host, port) addresses after (host, port); a failed connect or a lost connection
    moves the next connect() to the next one, round robin. `ssl`: an SSLContext (CPython's ssl, or
    MicroPython's tls/ssl) whose wrap_socket(sock, server_hostname=host) makes the connection TLS.
    """

    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive=60,
                 clean_session=True, will=None, max_packet=4096, max_inflight=16, max_queued=32,
                 timeout_ms=5000, brokers=None, ssl=None):
        self.client_id = client_id
        self.brokers = [(host, port)] + list(brokers or ())
        self._at = 0  # index in brokers of the one connect() goes to
        self.ssl = ssl
        self._again = ()  # exceptions of a TLS socket that mean "nothing yet" (CPython's SSLWant*)
        self._auth = (user, password)
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.will = will
        self.max_packet = max_packet
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.timeout_ms = timeout_ms
        self._buf = bytearray(max_packet + 5)
        self._mv = memoryview(self._buf)
        self._fill = 0
        self._sock = None
        self._poller = None
        self._pid = 0
        self._inflight = []  # [pid, PUBLISH packet] in send order (MicroPython dicts are unordered)
        self._queue = []  # (topic, payload, retain, pid to acknowledge or 0) in arrival order
        self._subs = []  # (topic, qos) to restore after a reconnect without a session
        self._readinto = None
        self._write = None
        self._waiting = None
        self._got = None
        self._last_tx = 0
        self._ping_at = None
        self._skip = 0  # bytes of an oversized PUBLISH still to discard
        self.dropped = 0
        self.oversized = 0
        self._up_at = None  # ticks_ms of the last CONNACK that accepted, while that connection lasts
        self._backoff = 0
        self.backoff_ms = 0  # how long to wait before the next connect(): jittered, 0 if at once
        self._rnd = (hash(client_id) ^ ticks_ms()) & 0xFFFFFFFF or 1  # differs between boards

    @property
    def connected(self):
        return self._sock is not None

    @property
    def broker(self):
        """(host, port) of the broker connected to, or that the next connect() tries."""
        return self.brokers[self._at]

    @property
    def pending(self):
        """QoS 1 publishes not yet acknowledged by the broker."""
        return len(self._inflight)

    def connect(self):
        """Open the connection; re-send unacknowledged QoS 1 with DUP. Returns the session-present flag.

        Raises MQTTConnectionError (MQTTRefused for a CONNACK refusal); the next call tries the next broker.
        """
        self.close()
        host, port = self.broker
        sock = None
        try:
            addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
            sock = socket.socket()
            sock.settimeout(self.timeout_ms / 1000)
            sock.connect(addr)
        except OSError as e:
            if sock is not None:
                sock.close()  # a board that retries every second must not run out of sockets
            self._at = (self._at + 1) % len(self.brokers)
            raise MQTTConnectionError(
                "cannot connect to MQTT broker %s:%d: %s" % (host, port, e)) from None
        try:
            sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: PUBACKs must not wait for Nagle
        except OSError:
            pass
        if self.ssl is not None:
            try:
                sock = self.ssl.wrap_socket(sock, server_hostname=host)  # the handshake, with the timeout
            except (OSError, ValueError) as e:
                sock.close()
                self._lost()
                raise MQTTConnectionError(
                    "TLS with MQTT broker %s:%d failed: %s" % (host, port, _tls_error(e))) from None
            self._again = _tls_again()
        sock.setblocking(False)
        self._sock = sock
        self._readinto = getattr(sock, "readinto", None) or sock.recv_into
        self._write = getattr(sock, "send", None) or sock.write  # MicroPython's TLS socket may lack send
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self._fill = 0
        self._skip = 0
        self._ping_at = None
        # Acknowledgements die with the old link; the broker sends what it had not had acknowledged again.
        self._queue = [(t, p, r, 0) for t, p, r, _ in self._queue if t is not None]
        user, password = self._auth
        self._send(encode_connect(self.client_id, self.keepalive, self.clean_session, user, password,
                                  self.will))
        first, body = self._wait(_CONNACK)
        if len(body) != 2 or body[0] & 0xFE:
            self._lost()
            raise MQTTProtocolError("malformed CONNACK")
        if body[1]:
            self._lost()
            code = body[1]
            raise MQTTRefused("MQTT broker refused the connection: %s"
                                     % (_REFUSED[code] if code < 6 else "unknown reason"), code)
        self._up_at = ticks_ms()
        session = bool(body[0])
        for _, pkt in self._inflight:
            pkt[0] |= 0x08
            self._send(pkt)
        if not session:
            for topic, qos in self._subs:
                self._subscribe(topic, qos)
        return session

    def disconnect(self):
        """Close cleanly (DISCONNECT): the broker discards the last will."""
        if self._sock is not None:
            try:
                self._send(b"\xe0\x00")
            except MQTTConnectionError:
                pass
        self.close()

    def close(self):
        """Drop the connection without DISCONNECT (the broker publishes the last will)."""
        if self._sock is not None:
            try:
                self._sock.close()  # a TLS socket closes the socket it wraps
            except OSError:
                pass
        self._sock = None
        self._poller = None
        if self._up_at is not None and ticks_diff(ticks_ms(), self._up_at) >= _BACKOFF_MAX:
            self._backoff = 0  # it stayed up: whatever made the brokers drop the client has passed
        self._up_at = None

    def publish(self, topic, payload, qos=0, retain=False):
        """Send a message; returns its packet id (0 for QoS 0).

        QoS 1 waits (polling) while max_inflight are unacknowledged; once publish returns, the message
        is kept until PUBACK, across reconnects. Raises MQTTConnectionError if not connected.
        """
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if len(payload) + len(topic) + 4 > self.max_packet:
            raise MQTTMessageTooLarge(
                "publish of %d bytes exceeds max_packet %d" % (len(payload), self.max_packet))
        self._need_connection()
        pid = 0
        if qos:
            start = ticks_ms()
            while len(self._inflight) >= self.max_inflight:
                if ticks_diff(ticks_ms(), start) > self.timeout_ms:
                    self._lost()
                    raise MQTTConnectionError("MQTT broker stopped acknowledging publishes")
                self._pump(self.timeout_ms // 10)
            pid = self._next_pid()
        pkt = encode_publish(topic, payload, qos, retain, pid)
        if qos:
            self._inflight.append((pid, pkt))
        try:
            self._send(pkt)
        except MQTTConnectionError:
            if not qos:
                raise  # a QoS 1 message is now queued: connect() sends it again
        return pid

    def subscribe(self, topic, qos=0):
        """Subscribe and wait for SUBACK; the subscription is restored after a reconnect."""
        self._need_connection()
        self._subscribe(topic, qos)
        if (topic, qos) not in self._subs:
            self._subs.append((topic, qos))

    def message(self):
        """The next received (topic, payload, retain), or None; acknowledges it if it came with QoS 1."""
        while self._queue:
            topic, payload, retain, pid = self._queue.pop(0)
            if pid and self._sock is not None:
                try:
                    self._send(bytes((_PUBACK, 2, pid >> 8, pid & 0xFF)))
                except MQTTConnectionError:
                    pass  # unacknowledged: the broker sends it again (at least once); poll() reports
            if topic is not None:  # None: an oversized message, acknowledged in its turn
                return topic, payload, retain
        return None

    def poll(self, timeout_ms=0):
        """Read and handle what the broker sent, waiting up to timeout_ms; keeps the connection alive.

        Returns the number of queued messages. Raises MQTTConnectionError if the connection is lost
        (unacknowledged QoS 1 publishes stay for connect() to re-send).
        """
        self._pump(0 if self._queue else timeout_ms)
        return len(self._queue)

    # -- internals --

    def _pump(self, timeout_ms):
        self._need_connection()
        self._keepalive()
        if self.keepalive:
            timeout_ms = min(timeout_ms, self.keepalive * 500)
        # A TLS socket holds decrypted bytes that polling its file descriptor does not see: read first.
        if not (self.ssl is not None and self._read()):
            if not self._poller.poll(timeout_ms):
                return
            self._read()
        self._process()

    def _process(self):
        """Handle every whole packet in the receive buffer; keep the partial one at its start."""
        end = self._fill
        start = 0
        try:
            while start < end:
                if self._skip:
                    n = min(self._skip, end - start)
                    self._skip -= n
                    start += n
                    continue
                got = split_packet(self._buf, start, end, self.max_packet)
                if got is None:
                    break
                first, a, b = got
                if b - a > self.max_packet:
                    if not self._oversize(first, start, a, end):
                        break
                    self._skip = b - start
                    continue
                self._handle(first, self._mv[a:b])
                start = b
        except MQTTProtocolError:
            self._lost()
            raise
        if start:
            self._buf[0:end - start] = self._mv[start:end]
            self._fill = end - start

    def _oversize(self, first, start, a, end):
        """Count a PUBLISH over max_packet and queue its acknowledgement; False until its packet id is in."""
        qos = (first >> 1) & 3
        if qos:
            if qos > 1:
                raise MQTTProtocolError("PUBLISH with QoS %d" % qos)
            p = a + 2
            if p <= end:
                p += (self._buf[a] << 8) | self._buf[a + 1]
            if p + 2 > end:
                if p + 2 - start > len(self._buf):
                    raise MQTTProtocolError("oversized PUBLISH with a topic longer than max_packet")
                return False
            self._queue.append((None, None, False, (self._buf[p] << 8) | self._buf[p + 1]))
        self.oversized += 1
        return True

    def _lost(self):
        """Close after a failure; the next connect() goes to the next broker. If this one let the client in
        and then refused or dropped it before it had been up _BACKOFF_MAX, backoff_ms asks for a pause:
        twice the last one (from _BACKOFF_MIN up to _BACKOFF_MAX), less up to half of it at random
        (xorshift32), so that boards which lost a broker together do not come back together."""
        up = self._up_at
        self.close()
        if up is None or ticks_diff(ticks_ms(), up) < _BACKOFF_MAX:
            self._backoff = min(max(_BACKOFF_MIN, self._backoff * 2), _BACKOFF_MAX)
        x = self._rnd
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rnd = x
        self.backoff_ms = self._backoff - x % (self._backoff // 2 + 1)
        self._at = (self._at + 1) % len(self.brokers)

    def _need_connection(self):
        if self._sock is None:
            raise MQTTConnectionError("not connected to the MQTT broker; call connect()")

    def _next_pid(self):
        while True:
            self._pid = self._pid % 65535 + 1
            for p, _ in self._inflight:
                if p == self._pid:
                    break
            else:
                return self._pid

    def _send(self, data):
        mv = memoryview(data)
        sent = 0
        n = len(data)
        start = ticks_ms()
        while sent < n:
            try:
                k = self._write(mv[sent:])
            except OSError as e:
                if e.args[0] != _EAGAIN and not isinstance(e, self._again):
                    self._lost()
                    raise MQTTConnectionError("MQTT connection lost while sending: %s" % e) from None
                k = None
            if k:
                sent += k
            elif ticks_diff(ticks_ms(), start) > self.timeout_ms:
                self._lost()
                raise MQTTConnectionError("MQTT broker stopped reading (send timed out)")
            else:
                p = select.poll()
                p.register(self._sock, select.POLLOUT)
                p.poll(10)
        self._last_tx = ticks_ms()

    def _read(self):
        """Read what the socket has into the buffer; returns the byte count (0 or None: nothing yet)."""
        if self._fill >= len(self._buf):
            return 0
        try:
            n = self._readinto(self._mv[self._fill:])
        except OSError as e:
            if e.args[0] == _EAGAIN or isinstance(e, self._again):
                return 0
            self._lost()
            raise MQTTConnectionError("MQTT connection lost: %s" % e) from None
        if n is None:
            return 0
        if not n:
            self._lost()
            raise MQTTConnectionError("MQTT broker closed the connection")
        self._fill += n
        return n

    def _wait(self, want):
        """Poll until a packet of type `want` arrives; returns (first byte, body bytes)."""
        self._waiting = want
        self._got = None
        start = ticks_ms()
        try:
            while self._got is None:
                if ticks_diff(ticks_ms(), start) > self.timeout_ms:
                    self._lost()
                    raise MQTTConnectionError("no answer from the MQTT broker in %d ms"
                                                     % self.timeout_ms)
                self._pump(50)
        finally:
            self._waiting = None
        return self._got

    def _subscribe(self, topic, qos):
        pid = self._next_pid()
        self._send(encode_subscribe(pid, topic, qos))
        first, body = self._wait(_SUBACK)
        if len(body) != 3 or ((body[0] << 8) | body[1]) != pid:
            self._lost()
            raise MQTTProtocolError("SUBACK does not answer the SUBSCRIBE")
        if body[2] > 1:
            raise MQTTRefused("MQTT broker refused the subscription to %r" % topic, body[2])

    def _keepalive(self):
        if not self.keepalive:
            return
        now = ticks_ms()
        if self._ping_at is not None:
            if ticks_diff(now, self._ping_at) > self.keepalive * 1000:
                self._lost()
                raise MQTTConnectionError("MQTT broker did not answer PINGREQ")
        elif ticks_diff(now, self._last_tx) >= self.keepalive * 500:
            self._send(b"\xc0\x00")
            self._ping_at = now

    def _handle(self, first, body):
        kind = first & 0xF0
        if kind == _PUBLISH:
            topic, payload, qos, pid, retain, _ = decode_publish(first, body)
            if qos or len(self._queue) < self.max_queued:
                self._queue.append((topic, payload, retain, pid))
            else:
                self.dropped += 1
            return
        if first & 0x0F:
            raise MQTTProtocolError("reserved flags set in packet 0x%02x" % first)
        if kind == _PUBACK and len(body) == 2:
            pid = (body[0] << 8) | body[1]
            inflight = self._inflight
            for i in range(len(inflight)):
                if inflight[i][0] == pid:
                    del inflight[i]
                    break
        elif kind == _PINGRESP and not len(body):
            self._ping_at = None
        elif kind == self._waiting:
            self._got = (first, bytes(body))
        else:
            raise MQTTProtocolError("unexpected packet 0x%02x of %d bytes" % (first, len(body)))
