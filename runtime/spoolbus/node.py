"""The RPC endpoint: call, cast, notify and hello over one transport, driven by poll() in a board's loop.

A node never dies from a bad message or a link event: each message is answered or dropped and counted
in `stats`, and its tables (calls waiting, dedup cache, peers, replay windows) are bounded. Semantics:
docs/rpc.md.
"""

import gc
import os
import sys
import time

from spoolbus import auth, errors, wire
from spoolbus.errors import ticks_add as _ticks_add
from spoolbus.errors import ticks_diff as _ticks_diff
from spoolbus.errors import ticks_ms as _ticks_ms

# Seconds between the port's epoch and the unix epoch (ports with a 2000 epoch).
_EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0
_SANE_CLOCK = 1704067200  # 2024-01-01: a wall clock earlier than this has not been set
_MAX_ID = 0x3FFFFFFF  # ids and counters stay small ints on 32-bit ports

STATS = (
    "received", "oversized", "malformed", "bad_wire_version", "misrouted", "expired",
    auth.FORGED, auth.UNSIGNED, auth.UNKNOWN_KEY, auth.REPLAYED,
    "duplicate", "busy", "late_replies", "calls_served", "casts_served", "notified", "hellos",
    "contract_errors", "handler_errors", "send_failed", "internal_errors", "out_of_memory", "dedup_evicted",
    "peers_evicted", "link_resets", "link_downs",
)

# Calls remembered for retries by default: a board serves a caller or two at a time, and each entry holds a
# reply (~2.2 KB of a 32-bit board's heap for 24 more entries).
_DEDUP = 8 if sys.implementation.name == "micropython" else 32

_RUNNING = object()  # dedup entry of a call still executing (a nested call is polling)


def _wall_ms():
    t = time.time() + _EPOCH
    return int(t * 1000) if t >= _SANE_CLOCK else None


def _nonce():
    return int.from_bytes(os.urandom(4), "big") & _MAX_ID


def _trace(e):
    import io
    import sys

    buf = io.StringIO()
    if hasattr(sys, "print_exception"):
        sys.print_exception(e, buf)
    else:
        import traceback

        traceback.print_exception(type(e), e, e.__traceback__, file=buf)
    return buf.getvalue()


def _firmware():
    """What runs this node: "micropython 1.25.0 (ESP32 module with ESP32)", "cpython 3.11.2"."""
    impl = sys.implementation
    v = impl.version
    text = "%s %d.%d.%d" % (impl.name, v[0], v[1], v[2])
    machine = getattr(impl, "_machine", None)
    return text + " (" + machine + ")" if machine else text


def _wire_type(e):
    """An exception's "type" in an ERROR body: spoolbus's own by their `wire_type` if they carry one (one
    class for a service's many refusals, as update.UpdateError), else by their class name in snake_case
    (UnsupportedVersion: unsupported_version, CBORDecodeError: cbor_decode_error); others by class name."""
    name = type(e).__name__
    if not isinstance(e, errors.SpoolbusError):
        return name
    if getattr(e, "wire_type", None):
        return e.wire_type
    out = ""
    last = len(name) - 1
    for i in range(last + 1):
        c = name[i]
        if c.isupper():
            if i and (name[i - 1].islower() or (i < last and name[i + 1].islower())):
                out += "_"
            c = c.lower()
        out += c
    return out


def _dedup_key(env):
    """A call's key in the dedup cache: its source, the source's boot nonce if signed, its id."""
    seq = env.seq
    return env.src, seq[0] if isinstance(seq, list) and len(seq) == 2 else None, env.id


class _Call:
    """A call waiting for its reply: the ticket send_call returns; `reply` is its REPLY or ERROR envelope."""

    def __init__(self, env, timeout_ms, retries, retry_ms):
        now = _ticks_ms()
        self.env = env
        self.start = now
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.retry_ms = retry_ms
        self.next_retry = _ticks_add(now, retry_ms)
        self.reply = None

    def expired(self, now):
        return _ticks_diff(now, self.start) >= self.timeout_ms


class _Calls(dict):
    """The calls waiting for replies, {message id: _Call} (as pw_rpc's PendingRpcs).

    A call leaves when its reply comes, when its time is up, or when its caller stops waiting (an
    exception in call()); one whose caller never asked again is swept out once its time is up.
    """

    def full(self, limit):
        """Whether `limit` calls still wait after those whose time is up were dropped."""
        if len(self) < limit:
            return False
        now = _ticks_ms()
        for i in [i for i in self if self[i].expired(now)]:
            del self[i]
        return len(self) >= limit

    def answer(self, env):
        """The call that REPLY or ERROR `env` answers, now holding it and removed; None if none waits."""
        call = self.get(env.reply_to)
        if call is None or call.env.dst != env.src:
            return None
        del self[env.reply_to]
        call.reply = env
        return call


class _Dedup:
    """The last `size` calls and casts received, keyed (source, its boot nonce, id), with their replies."""

    def __init__(self, size):
        self._entries = {}  # key -> (kind, body), or _RUNNING while the call executes
        self._ring = [None] * size  # keys, oldest at _pos
        self._pos = 0

    def get(self, key):
        return self._entries.get(key)

    def add(self, key, entry):
        """Remember `key`, forgetting the oldest if the ring is full; returns whether one was forgotten."""
        ring = self._ring
        pos = self._pos
        old = ring[pos]
        ring[pos] = key
        self._pos = (pos + 1) % len(ring)
        self._entries[key] = entry
        return old is not None and self._entries.pop(old, None) is not None

    def update(self, key, entry):
        """Replace the entry of `key` if it is still remembered (nested calls may have pushed it out)."""
        if key in self._entries:
            self._entries[key] = entry


class Node:
    """An RPC endpoint named `name` on `transport`.

    keys: {node name: key} for signing (own key) and verifying (peers' keys); require: refuse
    unsigned messages. timeout: default call timeout in seconds. retry_s: resend an unanswered call
    (same id) this often, `retries` times. clock: False on a board whose wall clock is not set
    (it then learns the time from a peer's hello). debug: send tracebacks in error replies, and log
    them with internal errors.
    """

    log_interval_ms = 60000  # an internal error of one exception type is logged at most this often

    def __init__(self, name, transport, keys=None, require=False, timeout=5.0, retries=0, retry_s=1.0,
                 max_message=4096, dedup_size=None, max_peers=16, max_pending=8, max_depth=4,
                 clock=True, debug=False):
        self.name = name
        self.transport = transport
        self.auth = auth.Auth(name, keys, require)
        self.timeout = timeout
        self.retries = retries
        self.retry_s = retry_s
        self.max_message = max_message
        self.max_pending = max_pending
        self.max_depth = max_depth
        self.debug = debug
        self.stats = {}
        for k in STATS:
            self.stats[k] = 0
        self.peers = {}  # name -> (services {name: version}, events [names], boot nonce)
        self._max_peers = max_peers
        self._services = {}  # name -> (contract.Service, implementation)
        self._subs = {}  # event -> [fn(event, body, src)]
        self._calls = _Calls()
        self._dedup = _Dedup(_DEDUP if dedup_size is None else dedup_size)
        self._depth = 0
        self._logged = {}  # exception type -> ticks it was last logged
        self._nonce = _nonce()
        self._counter = 0
        self._id = _nonce()  # ids start anywhere: a stale reply to an earlier run's call matches nothing
        self._wall = clock and _wall_ms() is not None
        self._clock_ref = None  # (ticks, epoch ms) learned from a peer's hello
        self.firmware = _firmware()  # told in hello (the bridge's registry shows it); an app may set its own
        self.current = None  # the envelope of the call a handler runs for (its src, sig), else None
        self.on_poll = None  # fn() run at the start of every poll(): a service's timers (update.py)

    # ------------------------------------------------------------ serving

    def serve(self, service, impl):
        """Serve `service` (a contract.Service) with `impl`, an object or dict holding its methods."""
        missing = [m for m in service.methods() if self._handler(impl, m) is None]
        if missing:
            raise errors.ContractError("%s: implementation lacks %s" % (service.name, ", ".join(missing)))
        self._services[service.name] = (service, impl)

    def subscribe(self, event, fn):
        """Call fn(event, body, src) for each `event` notification; say hello() to tell the peers."""
        self._subs.setdefault(event, []).append(fn)

    def client(self, dst, service, version_cap=None):
        """A Client that checks calls to `dst` against `service` before sending (spoolbus.client)."""
        from spoolbus.client import Client  # here: a board that only serves does not load it

        return Client(self, dst, service, version_cap)

    # ------------------------------------------------------------ sending

    def call(self, dst, method, args=None, timeout=None, version=None, retries=None):
        """Call `method` ("service.method") on `dst` and return its reply.

        Raises RemoteError (the remote side's error), Timeout (no reply in time: the call may or
        may not have run), or the transport's error if the request cannot be sent or received.
        """
        ticket = self.send_call(dst, method, args, timeout, version, retries)
        try:
            while not self.ready(ticket):
                self.poll(self._wait_ms(ticket), 1)  # one at a time: no extra inbox scan after the reply
        finally:
            self._calls.pop(ticket.env.id, None)  # also when the transport raised: its slot is free again
        return self.result(ticket)

    async def acall(self, dst, method, args=None, timeout=None, version=None, retries=None):
        """call() for asyncio: polls the node between sleeps, so other tasks run meanwhile."""
        import asyncio

        ticket = self.send_call(dst, method, args, timeout, version, retries)
        try:
            while not self.ready(ticket):
                if not self.poll(0):
                    await asyncio.sleep(0.002)
        finally:
            self._calls.pop(ticket.env.id, None)  # also when the transport raised or the task was cancelled
        return self.result(ticket)

    async def arun(self, interval_ms=5):
        """Serve forever under asyncio: poll, and sleep `interval_ms` when nothing came."""
        import asyncio

        while True:
            if not self.poll(0):
                await asyncio.sleep(interval_ms / 1000)

    def send_call(self, dst, method, args=None, timeout=None, version=None, retries=None):
        """Send a call without waiting: returns a ticket for ready() and result(), for a board's own loop.

        Busy if max_pending calls wait; a ticket holds its slot until its reply comes or its time is up.
        """
        if self._calls.full(self.max_pending):
            raise errors.Busy("%d calls already waiting for replies on %s" % (len(self._calls), self.name))
        timeout = self.timeout if timeout is None else timeout
        env = wire.Envelope(kind=wire.CALL, id=self._next_id(), src=self.name, dst=dst, method=method,
                            version=version or "1.0", body=args if args is not None else {},
                            deadline=self._deadline(timeout))
        self._send(env)
        ticket = _Call(env, int(timeout * 1000), self.retries if retries is None else retries,
                       int(self.retry_s * 1000))
        self._calls[env.id] = ticket
        return ticket

    def ready(self, ticket):
        """True once the call's reply came or its time is up (then ask result()); resends when due."""
        if ticket.reply is not None:
            return True
        now = _ticks_ms()
        if ticket.expired(now):
            self._calls.pop(ticket.env.id, None)
            return True
        if ticket.retries > 0 and _ticks_diff(now, ticket.next_retry) >= 0:
            self._resend(ticket, now)
        return False

    def _resend(self, ticket, now):
        ticket.retries -= 1
        ticket.next_retry = _ticks_add(now, ticket.retry_ms)
        env = ticket.env
        env.sig = None
        self._send_quietly(env)

    def result(self, ticket):
        """The reply of a ready() call; raises RemoteError, the link event that lost it (LinkReset,
        LinkDown), or Timeout if no reply came."""
        reply = ticket.reply
        if isinstance(reply, errors.LinkError):
            self._calls.pop(ticket.env.id, None)
            raise reply
        if reply is None:
            self._calls.pop(ticket.env.id, None)
            env = ticket.env
            raise errors.Timeout("no reply from %r to %s within %d ms; it may or may not have run"
                                 % (env.dst, env.method, ticket.timeout_ms))
        b = reply.body
        if reply.kind == wire.REPLY:
            return b
        raise errors.RemoteError(b.get("type"), b.get("message"), b.get("details"), b.get("trace"))

    def cast(self, dst, method, args=None, version=None, ttl=None):
        """Send a one-way call: no reply, errors are only counted on the server."""
        env = wire.Envelope(kind=wire.CAST, id=self._next_id(), src=self.name, dst=dst, method=method,
                            version=version or "1.0", body=args if args is not None else {},
                            deadline=self._deadline(ttl))
        self._send(env)

    def notify(self, event, body=None, ttl=None):
        """Send `event` to every known peer that subscribed to it (told us in hello); returns how many."""
        n = 0
        for peer in self.peers:
            if event in self.peers[peer][1]:
                env = wire.Envelope(kind=wire.NOTIFY, id=self._next_id(), src=self.name, dst=peer,
                                    method=event, body=body, deadline=self._deadline(ttl))
                if self._send_quietly(env):
                    n += 1
        return n

    def hello(self, dst=None):
        """Advertise services, API versions and subscriptions to `dst` or every peer the transport knows.

        Each peer answers with its own hello; returns how many hellos were sent.
        """
        if dst is None and not hasattr(self.transport, "peers"):
            raise errors.SpoolbusError("this transport cannot list its peers: name one, hello(dst)")
        dsts = [dst] if dst is not None else [p for p in self.transport.peers() if p != self.name]
        n = 0
        for d in dsts:
            if self._send_quietly(self._hello_env(d, None)):
                n += 1
        return n

    def peer_version(self, dst, service):
        """The API version of `service` that `dst` advertised in its hello, or None."""
        peer = self.peers.get(dst)
        return peer[0].get(service) if peer is not None else None

    def now_ms(self):
        """Unix time in ms from the wall clock, or learned from a peer's hello; None if unknown."""
        if self._wall:
            return _wall_ms()
        ref = self._clock_ref
        if ref is None:
            return None
        return ref[1] + _ticks_diff(_ticks_ms(), ref[0])

    def close(self):
        self.transport.close()

    # ------------------------------------------------------------ receiving

    def poll(self, timeout_ms=0, limit=16):
        """Process up to `limit` waiting messages, waiting timeout_ms for the first; returns how many.

        A link event (LinkReset, LinkDown) is counted and ends the poll normally: the transport
        recovers the link by itself, so a board loop of poll() outlives a bridge that restarts. The
        calls waiting then are lost with the peer's state: one with retries left is sent again at
        once, the others end with the event (call() raises it at once, not a Timeout later). A message
        that runs the heap out is counted (`out_of_memory`) and, if it was a call, answered with an
        `out_of_memory` error when the node can still send one: the bare loop `while True:
        node.poll(1000)` is a board's whole main loop.
        """
        n = 0
        if self.on_poll is not None:
            try:
                self.on_poll()
            except Exception as e:  # noqa: BLE001 - a service's timer must not end the board's loop
                self._internal_error(e)
        try:
            data = self.transport.recv(timeout_ms)
            while data is not None:
                try:
                    self._handle(data)
                except MemoryError as e:  # before the envelope was decoded: nobody to answer
                    data = None  # the frame is let go of before the heap is collected
                    self._out_of_memory(e, None)
                except Exception as e:  # noqa: BLE001 - the loop must survive anything a message causes
                    self._internal_error(e)
                n += 1
                if n >= limit:
                    break
                data = self.transport.recv(0)
        except errors.LinkReset as e:
            self.stats["link_resets"] += 1
            self._lost(e)
        except errors.LinkDown as e:
            self.stats["link_downs"] += 1
            self._lost(e)
        except MemoryError as e:  # a frame too large for what is left of the heap, lost while read
            self._out_of_memory(e, None)
        return n

    def _lost(self, event):
        now = _ticks_ms()
        for ticket in self._calls.values():
            if ticket.retries > 0:
                self._resend(ticket, now)
            else:
                ticket.reply = event

    def log(self, text):
        """Tell the operator `text` (internal errors): a line on stderr, on a board the console.

        An application may replace it: `nd.log = fn` with fn(text).
        """
        print(text, file=sys.stderr)

    def _internal_error(self, e, counter="internal_errors", what="internal error"):
        """Count a bug met while handling a message; log it once per exception type and log_interval_ms."""
        self.stats[counter] += 1
        kind = type(e)
        now = _ticks_ms()
        last = self._logged.get(kind)
        if last is not None and _ticks_diff(now, last) < self.log_interval_ms:
            return
        if last is None and len(self._logged) >= 8:
            self._logged.clear()  # bounded: a board cannot keep a table of every kind
        self._logged[kind] = now
        hint = "" if self.debug else "; debug=True adds the traceback"
        args = (self.name, what, kind.__name__, e, counter, self.stats[counter], self.log_interval_ms // 1000,
                hint)
        self.log("spoolbus node %s: %s, message dropped: %s: %s (%s=%d; this kind is logged at most every "
                 "%d s%s)" % args)
        if self.debug:
            self.log(_trace(e))

    def _out_of_memory(self, e, env):
        """A message that ran the heap out: counted; a call is answered, if the heap has room again once
        what the call held is collected, with a typed error, so that its caller does not wait for a
        timeout as if the link were dead (a retry gets the same answer, from the dedup cache); then it
        is logged, if there is room for that too."""
        if env is not None:
            self._dedup.update(_dedup_key(env), None)  # lets go of a reply too big to send
            gc.collect()
            try:
                free = getattr(gc, "mem_free", None)
                text = "%s ran out of memory serving %s (%s bytes free now); the call did not complete" % (
                    self.name, env.method, free() if free else "?")
                body = wire.error_body("out_of_memory", text)
                self._dedup.update(_dedup_key(env), (wire.ERROR, body))
                if env.kind == wire.CALL:
                    self._reply(env, wire.ERROR, body)
            except MemoryError:  # no room even for that: the caller's deadline ends the call
                self.stats["send_failed"] += 1
        gc.collect()
        try:
            self._internal_error(e, "out_of_memory", "out of memory")  # counts first: that needs no heap
        except MemoryError:
            pass

    def _handle(self, data):
        st = self.stats
        st["received"] += 1
        if len(data) > self.max_message:
            st["oversized"] += 1
            return
        try:
            env = wire.decode(data, max_size=self.max_message)
        except errors.UnsupportedWireVersion as e:
            st["bad_wire_version"] += 1
            if e.kind != wire.REPLY and e.kind != wire.ERROR:  # two nodes must not ping-pong errors
                self._refuse(e, {"supported": list(wire.WIRE_VERSION)})
            return
        except errors.EnvelopeError as e:
            st["malformed"] += 1
            if e.kind == wire.CALL:
                self._refuse(e, None)
            return
        except errors.DecodeError:
            st["malformed"] += 1
            return
        if env.dst != self.name and env.dst is not None:  # no dst: the peer of a one-peer link
            st["misrouted"] += 1
            return
        reason = self.auth.check(env)
        if reason is not None:
            st[reason] += 1
            return
        kind = env.kind
        if kind == wire.REPLY or kind == wire.ERROR:
            self._on_reply(env)
            return
        if env.deadline is not None:
            now = self.now_ms()
            if now is not None and now > env.deadline:
                st["expired"] += 1
                return
        if kind == wire.CALL or kind == wire.CAST:
            try:
                self._on_call(env)
            except MemoryError as e:
                self._out_of_memory(e, env)
        elif kind == wire.NOTIFY:
            self._on_notify(env)
        elif kind == wire.HELLO:
            self._on_hello(env)
        else:
            st["malformed"] += 1

    def _on_call(self, env):
        key = _dedup_key(env)
        dedup = self._dedup
        entry = dedup.get(key)
        if entry is not None:
            self.stats["duplicate"] += 1
            if entry is not _RUNNING and env.kind == wire.CALL:
                self._reply(env, entry[0], entry[1])
            return
        if self._depth >= self.max_depth:
            self.stats["busy"] += 1
            if env.kind == wire.CALL:
                self._reply(env, wire.ERROR, wire.error_body(
                    "busy", "%s is %d calls deep; retry later" % (self.name, self._depth)))
            return
        if dedup.add(key, _RUNNING):
            self.stats["dedup_evicted"] += 1
        kind, body = self._execute(env)
        dedup.update(key, (kind, body))
        if env.kind == wire.CALL:
            self.stats["calls_served"] += 1
            self._reply(env, kind, body)
        else:
            self.stats["casts_served"] += 1

    def _execute(self, env):
        """(REPLY, result) or (ERROR, error body): never raises."""
        method = env.method
        try:
            dot = method.rfind(".") if isinstance(method, str) else -1
            if dot <= 0:
                raise errors.NoSuchMethod("method must be 'service.method', got %r" % (method,))
            svc = self._services.get(method[:dot])
            if svc is None:
                raise errors.NoSuchService("%s serves no service %r; it serves: %s"
                                           % (self.name, method[:dot], ", ".join(sorted(self._services))))
            name = method[dot + 1 :]
            args = svc[0].check_call(name, env.body, env.version)
            fn = self._handler(svc[1], name)
        except errors.ContractError as e:
            self.stats["contract_errors"] += 1
            return wire.ERROR, wire.error_body(_wire_type(e), str(e), getattr(e, "details", None))
        self._depth += 1
        outer = self.current
        self.current = env
        try:
            return wire.REPLY, fn(**args)
        except MemoryError:
            raise  # answered by _handle, once what the call held is collected
        except Exception as e:  # noqa: BLE001 - a handler's error becomes the caller's RemoteError
            self.stats["handler_errors"] += 1
            body = wire.error_body(_wire_type(e), str(e), getattr(e, "details", None))
            if self.debug:
                body["trace"] = _trace(e)
            return wire.ERROR, body
        finally:
            self._depth -= 1
            self.current = outer

    def _handler(self, impl, name):
        if isinstance(impl, dict):
            return impl.get(name)
        return getattr(impl, name, None)

    def _reply(self, call, kind, body):
        env = wire.Envelope(kind=kind, id=self._next_id(), src=self.name, dst=call.src, reply_to=call.id,
                            body=body)
        try:
            self._send(env)
        except MemoryError:
            raise
        except errors.CBOREncodeError as e:
            env.kind = wire.ERROR
            env.body = wire.error_body("invalid_reply", "the reply has no CBOR encoding: %s" % e)
            self._send_quietly(env)
        except Exception:  # noqa: BLE001 - a reply that cannot be sent is counted, not fatal
            self.stats["send_failed"] += 1

    def _on_reply(self, env):
        if self._calls.answer(env) is None:
            self.stats["late_replies"] += 1

    def _on_notify(self, env):
        fns = self._subs.get(env.method)
        if not fns:
            self.stats["misrouted"] += 1
            return
        self.stats["notified"] += 1
        for fn in fns:
            try:
                fn(env.method, env.body, env.src)
            except Exception:  # noqa: BLE001 - one subscriber's error must not stop the node
                self.stats["handler_errors"] += 1

    def _on_hello(self, env):
        body = env.body
        if not isinstance(body, dict):
            self.stats["malformed"] += 1
            return
        services = body.get("services")
        events = body.get("events", [])
        if not isinstance(services, dict) or not isinstance(events, list):
            self.stats["malformed"] += 1
            return
        for k in services:
            if not isinstance(k, str) or not isinstance(services[k], str):
                self.stats["malformed"] += 1
                return
        self.stats["hellos"] += 1
        self._learn_peer(env.src, (services, [e for e in events if isinstance(e, str)],
                                   env.seq[0] if isinstance(env.seq, list) and env.seq else None))
        now = body.get("now")
        if not self._wall and isinstance(now, int) and now > 0:
            self._clock_ref = (_ticks_ms(), now)
        if env.reply_to is None:
            self._send_quietly(self._hello_env(env.src, env.id))

    def _learn_peer(self, name, entry):
        """Record a peer's hello in the peer table, forgetting the oldest peer beyond max_peers."""
        peers = self.peers
        if name not in peers and len(peers) >= self._max_peers:
            del peers[next(iter(peers))]
            self.stats["peers_evicted"] += 1
        peers[name] = entry

    def _hello_env(self, dst, reply_to):
        services = {}
        for name in self._services:
            services[name] = self._services[name][0].version
        body = {"services": services, "events": list(self._subs), "now": self.now_ms(),
                "firmware": self.firmware}
        return wire.Envelope(kind=wire.HELLO, id=self._next_id(), src=self.name, dst=dst, body=body,
                             reply_to=reply_to)

    def _refuse(self, e, details):
        """Answer an envelope that could not be decoded (EnvelopeError e) with an ERROR, if its id and
        source could be read."""
        if e.src is not None and e.id is not None:
            self._reply(wire.Envelope(src=e.src, id=e.id), wire.ERROR,
                        wire.error_body(_wire_type(e), str(e), details))

    # ------------------------------------------------------------ internals

    def _next_id(self):
        self._id = self._id % _MAX_ID + 1
        return self._id

    def _deadline(self, seconds):
        if seconds is None:
            return None
        now = self.now_ms()
        return None if now is None else now + int(seconds * 1000)

    def _send(self, env):
        self._counter = self._counter % _MAX_ID + 1
        env.seq = [self._nonce, self._counter]
        self.auth.sign(env)
        self.transport.send(env.dst, wire.encode(env))

    def _send_quietly(self, env):
        try:
            self._send(env)
            return True
        except Exception:  # noqa: BLE001 - counted: notify, hello and replies are best effort
            self.stats["send_failed"] += 1
            return False

    def _wait_ms(self, ticket):
        now = _ticks_ms()
        left = ticket.timeout_ms - _ticks_diff(now, ticket.start)
        if ticket.retries > 0:
            left = min(left, _ticks_diff(ticket.next_retry, now))
        return max(0, min(left, 50))
