"""HTTP/2 from clients (RFC 9113): one connection, many streams, each stream an exchange.

The second downstream protocol beside ``hopwire.http.downstream`` (HTTP/1.1).  A TLS
connection whose client chose ``h2`` by ALPN, or a plain one that opens with the HTTP/2
preface (h2c by prior knowledge), is handed to an ``H2Connection``.  Its codec is libnghttp2
(``hopwire.http._h2``): framing, HPACK, flow control and the RFC 9113 §8.2 checks of every
request field happen there, before anything reaches an exchange.

Each stream is a ``Stream``: what an exchange knows as its connection (``contracts.
Connection``).  The exchange runs its ordinary phases and writes its answer as it would for
HTTP/1.1 (its one response path: a head of a status line and field lines, then the body);
the stream submits the head as HEADERS (the connection-specific fields dropped) and the body
as DATA, with the body never chunked (``framed``).  Memory stays bounded both ways: a stream's
request body reopens the client's window only as the exchange passes it on (``Stream.resume``),
and a stream's response queue above ``STREAM_HIGH_WATER`` pauses reading from its backend
until the client's windows have taken it down to ``STREAM_LOW_WATER``; one slow stream holds
only itself.

Graceful stop and reload: a draining worker sends GOAWAY (a shutdown notice first, as the
RFC advises), the open streams finish, then the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from hopwire import errors, grpc
from hopwire.errors import ErrorKind, ProxyError
from hopwire.http._h2 import H2Error, Session
from hopwire.http.flow import PEER_FULL, ReadFlow
from hopwire.http.tls import tls_fields

if TYPE_CHECKING:
    from hopwire.contracts import Connection

    def _is_a_connection(stream: Stream) -> Connection:
        return stream  # mypy: a Stream gives its exchange all that Connection promises


log = logging.getLogger("hopwire.http")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
STREAM_HIGH_WATER = 256 * 1024  # a stream's queued response bytes that pause its backend
STREAM_LOW_WATER = 64 * 1024  # ... and resume it
CONNECTION_HIGH_WATER = 1024 * 1024  # the transport's, for all streams together
CONNECTION_LOW_WATER = 256 * 1024
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, CANCEL = 0x0, 0x1, 0x2, 0x7, 0x8
ENHANCE_YOUR_CALM = 0xB
# streams a client may cut (reset before their answer) beyond the answered ones: past this,
# and more cut than answered, the connection ends with GOAWAY (rapid reset, CVE-2023-44487)
RAPID_RESETS = 100
IDLE = 2
READ = 1
F_END, F_HOST, F_LENGTH, F_COOKIES = 1, 2, 4, 8  # what the codec says of a request (_h2.c)
# the codec's counters (Session.counters) by the kind hopwire_http2_refused_total names
COUNTED = (
    ("invalid_frame", "invalid_frames"),
    ("oversized_head", "oversized_heads"),
    ("client_reset", "resets_in"),
)


class _Version:
    """What an exchange asks the parser of a request: HTTP/2 is read as an HTTP/1.1 head."""

    __slots__ = ("method",)

    def __init__(self, method: bytes):
        self.method = method

    def get_method(self) -> bytes:
        return self.method

    def get_http_version(self) -> str:
        return "1.1"


class Stream:
    """One request and its answer on an HTTP/2 connection: the exchange's connection, and
    what it knows as that connection's transport (what it writes its answer to: the head
    becomes HEADERS, the rest DATA) and read flow (paused, the client's window for the stream
    is not reopened for the body bytes received; resumed, it is).  One object, not three:
    a stream is made for every request."""

    __slots__ = (
        "active",
        "after_large",
        "closed",
        "conn",
        "ended",
        "full",
        "fwd_block",
        "fwd_host",
        "head",
        "head_sent",
        "id",
        "method_override",
        "queued",
        "reasons",
        "req_open",
        "served",
        "slow",
        "stall_at",
        "stall_mark",
        "unconsumed",
        "writer",
    )

    framed = True  # the exchange never chunks a body: DATA frames carry it
    version = "2"  # network.protocol.version of its request (the spans)

    def __init__(self, conn: H2Connection, stream_id: int):
        self.conn = conn
        self.id = stream_id
        self.active: Any = None  # the exchange
        self.reasons = 0  # why reading is paused (flow), 0: not
        self.closed = False  # reset, or the connection is gone
        self.ended = False  # the answer is complete (END_STREAM sent or queued)
        self.req_open = True  # the client may still send body bytes
        self.head = b""  # the answer's head, as the exchange wrote it so far
        self.head_sent = False
        self.queued = 0  # response bytes waiting for the client's windows
        self.unconsumed = 0  # request body bytes not yet given back as window
        self.full = self.slow = self.after_large = False
        self.served = 0
        self.writer: Any = None
        self.stall_at = 0.0  # H2Connection.watch: when an uncovered exchange counts as stalled
        self.stall_mark = -1
        self.method_override: bytes | None = None
        self.fwd_host: bytes | None = None
        self.fwd_block = b""

    # -- what the exchange reads of its connection -----------------------------------------

    @property
    def transport(self) -> Stream:
        return self

    @property
    def flow(self) -> Stream:
        return self

    # -- as its transport ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.writelines((data,))

    def writelines(self, parts: Any) -> None:
        output = self.output
        try:
            for part in parts:
                output(part)
        except H2Error as exc:  # the codec has already closed the stream: nothing to write
            self.gone(exc)
        self.conn.soon()

    def gone(self, exc: Exception) -> None:
        """A codec call for a stream the codec has closed meanwhile (a client's reset in
        the same read): the stream is over; never the exchange's problem."""
        log.debug("HTTP/2 stream %d: %s", self.id, exc)
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return self.queued

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.conn.transport.get_extra_info(name, default)

    # -- as its read flow ------------------------------------------------------------------

    def pause(self, reason: int) -> None:
        self.reasons |= reason

    def resume(self, reason: int) -> None:
        self.reasons &= ~reason
        if not self.reasons:
            self.reopen()

    @property
    def ep(self) -> Any:
        return self.conn.ep

    @property
    def worker(self) -> Any:
        return self.conn.worker

    @property
    def client_ip(self) -> str:
        return self.conn.client_ip

    @property
    def client_ip_bytes(self) -> bytes:
        return self.conn.client_ip_bytes

    @property
    def client_port(self) -> int:
        return self.conn.client_port

    @property
    def trusted(self) -> bool:
        return self.conn.trusted

    @property
    def log_fields(self) -> bytes | None:
        """The access log's part of a line: the connection's, made once for its streams."""
        return self.conn.log_fields

    @log_fields.setter
    def log_fields(self, part: bytes) -> None:
        self.conn.log_fields = part

    def tls_fields(self) -> tuple[str, str, str | None] | None:
        return self.conn.tls_fields()

    def closes(self, kind: ErrorKind | None, keep_alive: bool, body_pending: bool) -> bool:
        """A stream carries one exchange: it ends after its answer whatever this says; True
        only where the request's body is left unread (the stream is then reset with
        NO_ERROR after the answer, RFC 9113 §8.1)."""
        return body_pending

    def reading_for(self, conn: Any) -> None:
        if self.full:
            conn.flow.pause(PEER_FULL)

    def start_tunnel(self, upstream: Any) -> None:  # no Upgrade exists in HTTP/2
        raise ProxyError(errors.BAD_REQUEST, "Upgrade over HTTP/2")

    # -- the request -----------------------------------------------------------------------

    def begin(
        self,
        method: bytes,
        path: bytes,
        scheme: bytes,
        authority: bytes,
        headers: list[tuple[bytes, bytes]],
        flags: int,
        size: int,
    ) -> None:
        """The request's head (its pseudo-header fields set apart by the codec) as an
        HTTP/1.1 head (RFC 9113 §8.3.1: :authority is the Host), then the exchange's phases."""
        conn = self.conn
        ep = conn.ep
        ex = ep.new_exchange(self)
        self.active = ex
        if not flags & F_HOST and authority:
            headers.insert(0, (b"host", authority))
        if flags & F_COOKIES:  # RFC 9113 §8.2.3: split cookie fields are one field again
            crumbs = [v for n, v in headers if n == b"cookie"]
            at = next(i for i, (n, _) in enumerate(headers) if n == b"cookie")
            headers[:] = [(n, v) for n, v in headers if n != b"cookie"]
            headers.insert(at, (b"cookie", b"; ".join(crumbs)))
        for name, value in headers:  # a gRPC call: counted as one (its status at the end)
            if name == b"content-type":
                if value[:16] == b"application/grpc" and value[16:20] != b"-web":
                    ex.grpc = grpc.UNKNOWN
                break
        end = flags & F_END
        if not end and not flags & F_LENGTH:
            headers.append((b"transfer-encoding", b"chunked"))  # the body's length is unknown
        ex.headers = headers
        ex.head_size = size
        ex.head_done = True
        ex.target = path
        view = _Version(method or b"GET")
        try:
            if method == b"CONNECT":
                raise ProxyError(errors.METHOD_NOT_ALLOWED, "CONNECT is not supported")
            if not path or scheme not in (b"http", b"https"):
                raise ProxyError(errors.BAD_REQUEST, "HTTP/2 request without :path or :scheme")
            if size > ep.max_header_bytes or len(headers) > ep.max_fields:
                raise ProxyError(errors.HEADERS_TOO_LARGE, "request header section over the limit")
            if len(path) > ep.max_line:
                raise ProxyError(errors.URI_TOO_LONG, f"request target over {ep.max_line} bytes")
            ex.parsed(view)
        except ProxyError as exc:
            ex.reject(exc.kind, exc.detail, view)
            return
        if end:
            self.req_open = False
        ex.start()
        if end and not ex.done:
            ex.request_complete()

    def body(self, data: bytes) -> None:
        ex = self.active
        n = len(data)
        if ex is None or ex.done:
            self.conn.session.consume(self.id, n)  # nobody reads it: the window stays open
            return
        ex.body(data)
        if ex.up_out:
            ex.flush_up()
        if self.reasons:
            self.unconsumed += n
        else:
            self.conn.session.consume(self.id, n)

    def request_end(self) -> None:
        self.req_open = False
        ex = self.active
        if ex is not None and not ex.done:
            ex.request_complete()
            if ex.up_out:  # the last chunk, to an attached backend now (as Downstream does)
                ex.flush_up()

    def reopen(self) -> None:
        """The exchange passed the held body on: the client may send as much again."""
        n = self.unconsumed
        if n and not self.closed:
            self.unconsumed = 0
            self.conn.session.consume(self.id, n)
            self.conn.soon()

    # -- the answer ------------------------------------------------------------------------

    def output(self, data: bytes) -> None:
        """A piece of what the exchange writes: head bytes until the head's end, then body."""
        if self.closed or not data:
            return
        if self.head_sent:
            self.send(data)
            return
        head = self.head + data
        while True:
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self.head = head
                return
            block, head = head[: end + 4], head[end + 4 :]
            status = int(block[9:12])
            session = self.conn.session
            if status < 200:
                session.respond(self.id, block, False)  # an interim answer (100 Continue)
                continue
            self.head = b""
            self.head_sent = True
            ex = self.active
            no_body = ex is not None and (
                ex.method == "HEAD" or status in (204, 304) or _length_zero(block)
            )
            session.respond(self.id, block, no_body)
            self.ended = no_body
            if head and not no_body:
                self.send(head)
            return

    def send(self, data: bytes) -> None:
        if self.ended:
            return
        queued = self.queued = self.conn.session.send(self.id, data)
        if queued > STREAM_HIGH_WATER and not self.full:
            self.full = self.slow = True
            self.conn.session.watch(self.id)
            ex = self.active
            up = ex.upstream if ex is not None else None
            if up is not None:
                up.flow.pause(PEER_FULL)

    def drained(self) -> None:
        """The client's windows took the queue down to the low-water mark."""
        self.queued = self.conn.session.queued(self.id)
        self.full = False
        ex = self.active
        up = ex.upstream if ex is not None else None
        if up is not None:
            up.flow.resume(PEER_FULL)
        writer = self.writer
        if writer is not None:
            writer()

    def exchange_done(self, ex: Any, close: bool) -> None:
        """The exchange has ended: end the stream (reset it when its answer was cut short)."""
        self.served += 1
        self.writer = None
        self.active = None  # the exchange points at its stream: no cycle left for the collector
        if self.closed:
            return
        session = self.conn.session
        if not self.head_sent:
            # an exchange that ended without a head (the client went away): nothing to send
            self.reset(CANCEL)
            return
        if not self.ended:
            if ex.error_type and not ex.resp_complete and ex.resp_head:
                self.reset(INTERNAL_ERROR)  # a response cut short is never a complete one
                return
            try:
                session.end(self.id, getattr(ex, "trailers", None))
            except H2Error as exc:
                self.gone(exc)
                return
            self.ended = True
        if self.req_open and not ex.req_complete:
            # the answer is complete and the rest of the body is not read: RST_STREAM
            # (NO_ERROR) once the answer is written (before, it would discard the answer)
            self.conn.late.append(self)
        self.conn.soon()

    def reset(self, code: int) -> None:
        if not self.closed:
            self.closed = True
            self.conn.session.reset(self.id, code)
            self.conn.soon()

    def close(self) -> None:
        """What closing its connection means to an exchange: the stream ends now."""
        if not self.closed and not self.ended:
            self.reset(CANCEL if not self.head_sent else INTERNAL_ERROR)
        self.closed = True

    def abort(self) -> None:
        self.reset(CANCEL)

    def lost(self, code: int) -> None:
        """The stream is gone (reset by the client, or the connection closed)."""
        self.closed = True
        ex = self.active
        if ex is not None and not ex.done:
            ex.client_lost()  # routed or answered already: begin runs start() at once


def _length_zero(block: bytes) -> bool:
    at = block.lower().find(b"\ncontent-length:")
    if at < 0:
        return False
    value = block[at + 16 : block.find(b"\r\n", at + 1)].strip()
    return value == b"0"


class H2Connection(asyncio.Protocol):
    """An HTTP/2 client connection: the codec, the streams, the connection's deadlines."""

    def __init__(self, ep: Any):
        self.ep = ep
        self.worker = ep.worker
        cfg = ep.http2
        self.session = Session(
            self,
            max_concurrent_streams=cfg.maxConcurrentStreams,
            decoder_table_size=cfg.maxDecoderHeaderTableSize,
            encoder_table_size=cfg.maxEncoderHeaderTableSize,
            max_field_bytes=ep.max_header_bytes,
            low_water=STREAM_LOW_WATER,
        )
        self.streams: dict[int, Stream] = {}
        self.transport: Any = None
        self.flow: ReadFlow = None  # type: ignore[assignment]
        self.closed = False
        self.full = False
        self.active = None  # the worker's tick: the streams' exchanges are watched here
        self.tunnel = None  # never a byte tunnel (the open-connections gauge asks)
        self.deadline = 0.0
        self.deadline_kind = 0
        self.stall_at = 0.0
        self.client_ip = ""
        self.client_ip_bytes = b""
        self.client_port = 0
        self.trusted = False
        self.tls: tuple[str, str, str | None] | None = None
        self.log_fields: bytes | None = None  # the access log's part of a line (_accesslog)
        self.going_away = False
        self.served = 0
        self.counted: dict[str, int] = {}  # the codec's counters already in the worker's
        self.flushing = False  # a flush is due after this turn of the loop (soon)
        self.lost = False  # connection_lost: the session is gone
        self.ending = False  # draining and the last stream closed: the final GOAWAY is due
        self.late: list[Stream] = []  # streams to reset (NO_ERROR) once their answer is out
        self.loop = self.worker.loop
        self.cut = 0  # streams the client reset before their answer

    @property
    def req(self) -> Any:
        """Non-None while streams are open (the worker's drain leaves such connections be)."""
        return self.streams or None

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(CONNECTION_HIGH_WATER, CONNECTION_LOW_WATER)
        self.flow = ReadFlow(transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip, self.client_port = peer[0], peer[1]
        self.client_ip_bytes = self.client_ip.encode()
        self.trusted = self.ep.is_trusted(self.client_ip)
        self.worker.connections.add(self)
        self.idle(self.ep.read_timeout, READ)
        self.flush()

    def take_over(self, transport: Any, data: bytes) -> None:
        """A connection that began as HTTP/1.1 (its first bytes are the h2c preface)."""
        transport.set_protocol(self)
        self.connection_made(transport)
        if data:
            self.data_received(data)

    def tls_fields(self) -> tuple[str, str, str | None] | None:
        if self.tls is None and self.ep.tls:
            ssl_object = self.transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                self.tls = tls_fields(ssl_object)
        return self.tls

    def idle(self, seconds: float, kind: int) -> None:
        self.deadline = self.worker.clock.now + seconds if seconds else 0.0
        self.deadline_kind = kind

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.session.receive(data)
        except H2Error as exc:
            self.worker.counters["h2_connection_error"] += 1
            log.debug("HTTP/2 connection error from %s: %s", self.client_ip, exc)
            self.flush()
            self.close()
            return
        self.flush()

    def soon(self) -> None:
        """Write what the streams queued once, after this turn of the loop: the answers of
        every stream that progressed in it go out in one write (a flush per answer cost a
        send per answer)."""
        if not self.flushing:
            self.flushing = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what the codec has to send, then wake the streams it drained."""
        self.flushing = False
        if self.lost:
            return
        session = self.session
        try:
            out = session.pending()
        except H2Error as exc:
            log.debug("HTTP/2 send failed: %s", exc)
            self.abort()
            return
        if self.late:  # streams answered before their body ended: reset once written
            waiting: list[Stream] = []
            for stream in self.late:
                if stream.closed:
                    continue
                if session.queued(stream.id):
                    waiting.append(stream)
                else:
                    session.reset(stream.id, NO_ERROR)
            self.late = waiting
            out += session.pending()
        if out and not self.transport.is_closing():
            self.transport.write(out)
        for stream_id in session.drained():
            low = self.streams.get(stream_id)
            if low is not None:
                low.drained()
        if self.ending and not self.closed:
            self.ending = False
            self.goaway_now()
            return
        if not self.closed and not session.want():
            self.close()

    # -- the codec's callbacks -------------------------------------------------------------

    def h2_request(
        self,
        stream_id: int,
        method: bytes,
        path: bytes,
        scheme: bytes,
        authority: bytes,
        fields: list[tuple[bytes, bytes]],
        flags: int,
        size: int,
    ) -> None:
        if self.going_away:
            self.session.reset(stream_id, REFUSED_STREAM)
            return
        stream = Stream(self, stream_id)
        self.streams[stream_id] = stream
        self.deadline = 0.0  # the streams' exchanges have their own deadlines now
        stream.begin(method, path, scheme, authority, fields, flags, size)

    def h2_data(self, stream_id: int, data: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            self.session.consume(stream_id, len(data))
            return
        stream.body(data)

    def h2_trailers(self, stream_id: int, fields: list[tuple[bytes, bytes]]) -> None:
        """A request's trailer fields (the codec bounded their size): relayed after its body
        (the stream's end follows)."""
        stream = self.streams.get(stream_id)
        ex = stream.active if stream is not None else None
        if ex is not None and not ex.done:
            for name, value in fields:
                ex.request_trailer(name, value)

    def h2_end(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.request_end()

    def h2_closed(self, stream_id: int, code: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None and code == PROTOCOL_ERROR:
            # reset by the codec before its request reached hopwire (RFC 9113 §8.2)
            self.worker.counters["h2_invalid_field"] += 1
        if stream is not None:
            self.served += 1
            if code != NO_ERROR or not stream.ended:
                stream.lost(code)
                if not stream.ended:
                    self.cut += 1
                    if self.cut > RAPID_RESETS and self.cut > self.served - self.cut:
                        # CVE-2023-44487: streams opened and reset faster than answered
                        self.worker.counters["h2_rapid_reset"] += 1
                        self.goaway_now(ENHANCE_YOUR_CALM)
                        return
            stream.closed = True
        if not self.streams and not self.closed:
            if self.going_away:
                # the final GOAWAY once what is queued is written (this may run inside flush)
                self.ending = True
                self.soon()
            else:
                self.idle(self.ep.idle_timeout, IDLE)

    # -- flow ------------------------------------------------------------------------------

    def pause_writing(self) -> None:
        """The transport itself is full (every stream's bytes are behind it)."""
        self.full = True
        for stream in self.streams.values():
            ex = stream.active
            up = ex.upstream if ex is not None else None
            if up is not None:
                up.flow.pause(PEER_FULL)

    def resume_writing(self) -> None:
        self.full = False
        for stream in self.streams.values():
            if stream.full:
                continue  # its own queue still holds it
            ex = stream.active
            up = ex.upstream if ex is not None else None
            if up is not None:
                up.flow.resume(PEER_FULL)
            if stream.writer is not None:
                stream.writer()

    # -- deadlines, the worker's tick ------------------------------------------------------

    def timed_out(self) -> None:
        self.deadline = 0.0
        if self.closed:
            self.abort()
            return
        self.goaway_now()

    def watch(self, now: float) -> None:
        """The worker's tick: each stream's exchange deadlines, and a drain's GOAWAY."""
        worker = self.worker
        self.count()
        if worker.draining and not self.going_away:
            self.going_away = True
            self.session.goaway()  # the shutdown notice: no new stream after this
            self.flush()
            if not self.streams:
                self.goaway_now()
                return
        bound = self.ep.stall_timeout
        for stream in list(self.streams.values()):
            ex = stream.active
            if ex is None or ex.done:
                continue
            if ex.continue_at and ex.continue_at <= now:
                ex.continue_now()
            if ex.deadline:
                if ex.deadline <= now:
                    ex.timed_out()
                continue
            if not bound:
                continue
            # no deadline covers it: nothing moving either way for the stall bound ends it,
            # as Downstream.watch does for an HTTP/1.1 exchange
            mark = ex.req_bytes + ex.resp_bytes + ex.attempts
            if mark != stream.stall_mark or not stream.stall_at:
                stream.stall_mark, stream.stall_at = mark, now + bound
            elif now >= stream.stall_at:
                stream.stall_at = 0.0
                ex.stalled(stream.queued > 0)

    def goaway_now(self, code: int = NO_ERROR) -> None:
        with contextlib.suppress(H2Error):
            self.session.terminate(code)
        self.flush()
        self.close()

    # -- ending ----------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in list(self.streams.values()):
            if not stream.ended:
                stream.lost(CANCEL)
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def count(self) -> None:
        """What the codec refused on this connection, into the worker's counters (folded into
        ``hopwire_http2_refused_total``)."""
        counters = self.worker.counters
        seen = self.session.counters()
        for kind, key in COUNTED:
            n = seen[key] - self.counted.get(key, 0)
            if n:
                counters["h2_" + kind] += n
                self.counted[key] = seen[key]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = True
        self.worker.connections.discard(self)
        with contextlib.suppress(H2Error):
            self.count()
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            if not stream.closed:
                stream.lost(CANCEL)
        self.session.close()
