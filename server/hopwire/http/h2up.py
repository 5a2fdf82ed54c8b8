"""HTTP/2 to backends: ``h2c://`` servers (gRPC's usual case) and ``https://`` servers that
choose ``h2`` by ALPN.  One connection carries the streams of many exchanges.

The exchange does not know which protocol its backend speaks: it writes its request for
HTTP/1.1 and reads a response head and body pieces, as from ``hopwire.http.upstream.Upstream``.
``BackendStream`` is that contract for one stream: what the exchange writes is read back by
a request parser (llhttp, as the exchange's own bytes: head, then the body de-chunked) and
submitted as HEADERS and DATA; the response's HEADERS become an HTTP/1.1 head for the
exchange's one response path, its DATA the body pieces, its trailers ``response_trailers``.

Flow control is per stream: the backend's window for a stream is reopened only as the
exchange's client takes the bytes (a slow client holds at most one window of its own, the
other streams go on); the connection's window is reopened on receipt (in the codec).
``H2Pool`` is the pool of such a server: one connection while it has room for streams (the
codec queues requests over the backend's SETTINGS_MAX_CONCURRENT_STREAMS), a dial shared by
the exchanges waiting for it, PINGs when the connection has been silent (``readIdleTimeout``)
and the connection closed when one goes unanswered (``pingTimeout``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from time import monotonic
from typing import TYPE_CHECKING, Any

from hopwire import grpc
from hopwire.http._h2 import H2Error, Session
from hopwire.http.flow import PEER_FULL
from hopwire.http.head import split_fields
from hopwire.http.pool import Pool
from hopwire.http.upstream import Upstream

if TYPE_CHECKING:
    from hopwire.contracts import UpstreamHooks as Exchange

log = logging.getLogger("hopwire.upstream")

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, CANCEL = 0, 1, 2, 7, 8
WINDOW = 256 * 1024  # what a backend may send ahead on one stream (HIGH_WATER, as HTTP/1.1)
SEND_HIGH_WATER = 256 * 1024  # request body queued for one stream before the client waits
SEND_LOW_WATER = 64 * 1024
HEAD_LIMIT = 1 << 20  # bytes of a response head (as hopwire.http.upstream)


class BackendStream:
    """One exchange's request and response on a backend's HTTP/2 connection: a backend
    connection as the exchange knows one (the Upstream contract), and that connection's
    transport (``write``: the exchange's HTTP/1.1 bytes, read back and framed)."""

    __slots__ = (
        "body",
        "closed",
        "conn",
        "ex",
        "fields_at",
        "finished",
        "fresh",
        "head",
        "headers",
        "id",
        "idle_since",
        "left",
        "narrowed",
        "pool",
        "reason",
        "reasons",
        "req_ended",
        "req_trailers",
        "resp_ended",
        "sent_head",
        "tunnel",
        "unconsumed",
        "waiting",
    )

    def __init__(self, conn: H2Backend):
        self.conn = conn
        self.pool = conn.pool
        self.id = 0  # the stream's id once its HEADERS are submitted
        self.ex: Exchange | None = None
        self.fresh = False
        self.closed = False  # reset, or its connection is gone
        self.head = b""  # the response head, written for HTTP/1.1
        self.fields_at = 0
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.reason = b""
        self.idle_since = 0.0
        self.tunnel = None  # never a byte tunnel
        self.narrowed = False
        self.reasons = 0  # why the response's window is held (flow), 0: not
        self.unconsumed = 0  # response bytes received while paused: the window given back later
        self.left = 0  # request body bytes still to come (-1: chunked)
        self.finished = False  # the request's END_STREAM is queued
        self.req_trailers: list[tuple[bytes, bytes]] | None = None  # the request's, if any
        self.sent_head = False
        self.body: list[bytes] = []  # body pieces read in this write
        self.req_ended = False
        self.resp_ended = False
        self.waiting = False  # the client is paused: the request body's queue is high

    @property
    def transport(self) -> BackendStream:
        return self

    @property
    def flow(self) -> BackendStream:
        """Paused, the stream's window is not reopened for the bytes the backend sends (the
        slow client's backpressure, as ReadFlow pauses a socket).  The stream itself, as
        ``Stream.flow`` is: a separate object would make a reference cycle per request."""
        return self

    def pause(self, reason: int) -> None:
        self.reasons |= reason

    def resume(self, reason: int) -> None:
        if self.reasons & reason:
            self.reasons &= ~reason
            if not self.reasons:
                self.reopen()

    # -- what the exchange writes: its HTTP/1.1 request, read back ------------------------

    def write(self, data: bytes) -> None:
        """The exchange writes what it built (``Exchange.build_head``), whole: the head in
        one write, then complete chunks or body pieces of a known length."""
        if self.closed or self.req_ended:
            return
        try:
            if not self.sent_head:
                self.submit(data)
            elif self.left < 0:
                self.dechunk(data, 0)
            else:
                self.counted(data)
            if self.body or self.req_ended:
                self.send_body()
        except (ValueError, H2Error) as exc:
            self.fail(f"HTTP/2 request: {exc}")
            return
        self.conn.soon()

    def submit(self, data: bytes) -> None:
        """The request's HEADERS (the codec reads the head), and what of its body this write
        holds."""
        rest = data.find(b"\r\n\r\n") + 4
        session = self.conn.session
        self.id, self.left, limit = session.request_head(data, self.pool.scheme, len(data) > rest)
        self.sent_head = True
        self.conn.streams[self.id] = self
        if self.left < 0:
            self.dechunk(data, rest)
        elif self.left:
            self.counted(data[rest:])
        else:  # no body: END_STREAM went with the HEADERS
            self.req_ended = self.finished = True
        if limit is not None and self.ex is not None:  # the call's deadline bounds the wait
            seconds = grpc.timeout(limit)
            if seconds is not None:
                self.ex.answer_within(seconds)

    def counted(self, data: bytes) -> None:
        if data:
            self.body.append(data)
            self.left -= len(data)
        if self.left <= 0:
            self.req_ended = True

    def dechunk(self, data: bytes, pos: int) -> None:
        """Complete chunks (as the exchange frames them), from ``pos``: their data goes to
        the body; the last chunk ends it (its trailer section, empty, is dropped)."""
        body = self.body
        n = len(data)
        while pos < n:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                raise ValueError("a chunk size line is incomplete")
            size = int(data[pos:eol].partition(b";")[0], 16)
            if size == 0:  # the last chunk, and the trailer section (HEADERS after the DATA)
                end = data.find(b"\r\n\r\n", eol)
                if end > eol:
                    self.req_trailers = split_fields(data[eol + 2 : end + 4], 0)
                self.req_ended = True
                return
            start = eol + 2
            body.append(data[start : start + size])
            pos = start + size + 2

    def writelines(self, parts: Any) -> None:
        self.write(b"".join(parts))

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.conn.transport.get_extra_info(name, default)

    def send_body(self) -> None:
        session = self.conn.session
        queued = 0
        if self.body:
            for piece in self.body:
                queued = session.send(self.id, piece)
            self.body = []
        if self.req_ended and not self.finished:
            self.finished = True
            session.end(self.id, self.req_trailers)
            self.drained()
        elif queued > SEND_HIGH_WATER and not self.waiting:
            # the backend reads slower than the client sends: the client waits
            self.waiting = True
            session.watch(self.id)
            ex = self.ex
            if ex is not None:
                ex.down.flow.pause(PEER_FULL)

    def drained(self) -> None:
        """The request body's queue fell to its low-water mark: the client may send again."""
        if self.waiting:
            self.waiting = False
            ex = self.ex
            if ex is not None:
                ex.down.flow.resume(PEER_FULL)

    # -- the response ----------------------------------------------------------------------

    def response(self, status: int, head: bytes, end: bool) -> None:
        """The response's HEADERS, as the codec wrote them for HTTP/1.1 (a status line, the
        field lines; ``content-length: 0`` added when END_STREAM came with them)."""
        ex = self.ex
        if ex is None:
            return
        self.fresh = False
        self.head = head
        self.fields_at = 15  # after "HTTP/1.1 200 \r\n"
        self.headers = None
        if status < 200:
            if status != 101:
                ex.response_interim(status, self)
            return
        if end:  # a Trailers-Only answer: a gRPC call's status is in its head
            ex.grpc_status(self.fields())
        ex.response_head(status, self)
        if ex.out:
            ex.flush_down()

    def data(self, data: bytes) -> None:
        ex = self.ex
        if ex is None:  # the exchange is gone: nothing holds the window
            self.conn.session.consume(self.id, len(data))
            return
        ex.response_body(data)
        if ex.out:
            ex.flush_down()
        if self.reasons:
            self.unconsumed += len(data)
        else:
            self.conn.session.consume(self.id, len(data))

    def reopen(self) -> None:
        n = self.unconsumed
        if n and not self.closed:
            self.unconsumed = 0
            self.conn.session.consume(self.id, n)
            self.conn.soon()

    def trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        ex = self.ex
        if ex is not None:
            ex.response_trailers(fields)

    def complete(self) -> None:
        self.resp_ended = True
        ex = self.ex
        if ex is not None and not ex.resp_complete:
            ex.response_complete(True)
            if ex.out:
                ex.flush_down()

    def gone(self, code: int) -> None:
        """The stream closed (either side, or the connection went)."""
        self.closed = True
        ex = self.ex
        if ex is None or self.resp_ended:
            return
        self.ex = None
        if code == REFUSED_STREAM or code == -1:
            # the backend never processed it (RFC 9113 §8.7), or the connection went: as a
            # connection lost before the answer (the exchange may retry)
            ex.upstream_lost(self, None)
        else:
            ex.bad_response(self, f"the backend reset the stream (HTTP/2 error {code})")

    def fail(self, detail: str) -> None:
        ex = self.ex
        self.reset(INTERNAL_ERROR)
        if ex is not None:
            self.ex = None
            ex.bad_response(self, detail)

    # -- the Upstream contract -------------------------------------------------------------

    def fields(self) -> list[tuple[bytes, bytes]]:
        """The response's fields, split from its head once asked for."""
        headers = self.headers
        if headers is None:
            headers = self.headers = split_fields(self.head, self.fields_at)
        return headers

    def release(self, reuse: bool, now: float) -> None:
        """The exchange is done with it: a stream still open is cancelled (RST_STREAM), so that
        the backend stops working for a request nobody waits for."""
        self.ex = None
        if not self.resp_ended or not self.req_ended:
            self.reset(CANCEL)

    def reset(self, code: int) -> None:
        if not self.closed:
            self.closed = True
            if self.sent_head:
                try:
                    self.conn.session.reset(self.id, code)
                except H2Error:
                    pass
                self.conn.soon()

    def close(self) -> None:
        self.reset(CANCEL)

    def half_close(self) -> None:
        pass

    def narrow(self) -> None:
        """A slow client: its stream's window already bounds what is held for it."""
        self.narrowed = True

    def widen(self) -> None:
        self.narrowed = False


class H2Backend(asyncio.Protocol):
    """One HTTP/2 connection to a backend: the codec (client side) and its streams."""

    def __init__(self, pool: H2Pool):
        self.pool = pool
        self.session = Session(
            self,
            initial_window=WINDOW,
            max_field_bytes=HEAD_LIMIT,
            low_water=SEND_LOW_WATER,
            client=True,
        )
        self.streams: dict[int, BackendStream] = {}
        self.transport: Any = None
        self.closed = False
        self.going_away = False  # GOAWAY received: no new stream
        self.flushing = False
        self.loop = pool.loop
        self.idle_since = 0.0
        self.heard = 0.0  # the last read (readIdleTimeout)
        self.handed: Upstream | None = None  # the HTTP/1.1 connection it became (ALPN)
        self.ping_at = 0.0  # when the unanswered PING was sent, 0: none

    def stream(self) -> BackendStream:
        return BackendStream(self)

    def usable(self) -> bool:
        return not self.closed and not self.going_away

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.pool.ssl is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                # the server chose HTTP/1.1 (or nothing): the connection is an Upstream's
                self.closed = True
                self.handed = self.pool.speaks_http11(transport)
                return
        self.heard = monotonic()
        self.flush()  # the preface and SETTINGS

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.heard = monotonic()
        self.ping_at = 0.0
        try:
            self.session.receive(data)
        except H2Error as exc:
            log.info("HTTP/2 connection error from backend %s: %s", self.pool.label, exc)
            self.flush()
            self.close()
            return
        self.flush()

    def soon(self) -> None:
        if not self.flushing:
            self.flushing = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flushing = False
        if self.closed:
            return
        try:
            out = self.session.pending()
        except H2Error as exc:
            log.info("HTTP/2 send to backend %s failed: %s", self.pool.label, exc)
            self.close()
            return
        if out:
            self.transport.write(out)
        for stream_id in self.session.drained():
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.drained()

    # -- the codec's callbacks -------------------------------------------------------------

    def h2_response(self, stream_id: int, status: int, head: bytes, end: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.response(status, head, end)

    def h2_data(self, stream_id: int, data: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.data(data)
        else:
            self.session.consume(stream_id, len(data))

    def h2_trailers(self, stream_id: int, fields: list[tuple[bytes, bytes]]) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.trailers(fields)

    def h2_end(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.complete()

    def h2_closed(self, stream_id: int, code: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.gone(code)
        if not self.streams:
            self.idle_since = monotonic()
            if self.going_away:
                self.close()

    def h2_goaway(self, last_stream_id: int, code: int) -> None:
        self.going_away = True
        self.pool.discard(self)

    def h2_request(self, *args: Any) -> None:  # a server push would open one: refused
        raise H2Error("a request from the backend")

    def h2_pong(self) -> None:
        self.ping_at = 0.0

    # -- the connection's life -------------------------------------------------------------

    def watch(self, now: float, read_idle: float, ping_timeout: float) -> None:
        """The pool's sweep: a PING after ``read_idle`` seconds without a frame; closed when
        the PING goes unanswered for ``ping_timeout``."""
        if self.closed or not read_idle:
            return
        if self.ping_at:
            if now - self.ping_at > ping_timeout:
                log.info(
                    "backend %s: PING unanswered for %gs; closing", self.pool.label, ping_timeout
                )
                self.close()
            return
        if now - self.heard > read_idle:
            self.ping_at = now
            self.session.ping()
            self.flush()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.discard(self)
            if self.transport is not None:
                self.transport.close()
            self.fail_streams()

    def fail_streams(self) -> None:
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.gone(-1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handed is not None:
            return
        self.closed = True
        self.pool.discard(self)
        self.session.close()
        self.fail_streams()

    def pause_writing(self) -> None:
        pass  # the codec's queues bound what is held (the streams' send watermarks)

    def resume_writing(self) -> None:
        pass


class H2Pool(Pool):
    """The connections to one HTTP/2 backend server: a ``Pool``'s settings, but ``take`` and
    ``connect`` give a new stream on a connection (one carries many)."""

    __slots__ = (
        "config",
        "conns",
        "dialing",
        "h1",
        "ping_timeout",
        "read_idle_timeout",
        "retired",
        "scheme",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        transport: Any,
        label: str,
        check_ssl: ssl.SSLContext | None = None,
    ):
        super().__init__(loop, host, port, ssl_context, transport, label)
        # https:// only: the context offering only http/1.1 (the health checks', and the
        # connections' once the server has chosen HTTP/1.1)
        self.check_ssl = check_ssl
        self.config = transport
        self.h1: Pool | None = None  # the server chose HTTP/1.1: its connections are these
        self.scheme = b"https" if ssl_context is not None else b"http"
        timeouts = transport.forwardingTimeouts
        self.read_idle_timeout = timeouts.readIdleTimeout
        self.ping_timeout = timeouts.pingTimeout
        self.conns: list[H2Backend] = []
        self.dialing: asyncio.Future[H2Backend | None] | None = None
        self.retired = False

    def speaks_http11(self, transport: Any) -> Upstream:
        """A TLS connection on which the server chose HTTP/1.1: an Upstream of the HTTP/1.1
        pool this pool now hands out (the server offers no h2: as Traefik falls back)."""
        h1 = self.h1
        if h1 is None:
            log.info("backend %s chose HTTP/1.1 by ALPN", self.label)
            h1 = self.h1 = Pool(
                self.loop, self.host, self.port, self.check_ssl, self.config, self.label
            )
            if self.retired:
                h1.retire()
        conn = Upstream(h1)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        return conn

    def take(self) -> Any:
        if self.h1 is not None:
            return self.h1.take()
        for conn in self.conns:
            if conn.usable():
                return conn.stream()
        return None

    def put(self, conn: Any, now: float) -> None:
        """Nothing to keep: a stream is done with when its exchange releases it."""

    def discard(self, conn: Any) -> None:
        try:
            self.conns.remove(conn)
        except ValueError:
            pass

    async def connect(self) -> Any:
        """A stream on a new connection; one dial at a time (the exchanges that wait share it).
        Raises TimeoutError or OSError.  An Upstream when the server chose HTTP/1.1."""
        if self.h1 is not None:
            return await self.h1.connect()
        dialing = self.dialing
        if dialing is None:
            dialing = self.dialing = self.loop.create_future()
            try:
                _, conn = await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: H2Backend(self),
                        self.host,
                        self.port,
                        ssl=self.ssl,
                        server_hostname=self.server_hostname,
                    ),
                    self.dial_timeout,
                )
            except (OSError, TimeoutError) as exc:
                self.dialing = None
                dialing.set_exception(exc)
                dialing.exception()  # retrieved: those waiting raise it themselves
                raise
            self.dialing = None
            if conn.handed is not None:  # HTTP/1.1: those waiting dial their own
                dialing.set_result(None)
                return conn.handed
            if self.retired:
                conn.going_away = True
            else:
                self.conns.append(conn)
            dialing.set_result(conn)
            return conn.stream()
        shared = await asyncio.shield(dialing)
        if shared is None:
            return await self.connect()
        return shared.stream()

    def sweep(self, now: float) -> None:
        if self.h1 is not None:
            self.h1.sweep(now)
        for conn in list(self.conns):
            conn.watch(now, self.read_idle_timeout, self.ping_timeout)
            if (
                not conn.streams
                and self.idle_timeout
                and conn.idle_since
                and now - conn.idle_since > self.idle_timeout
            ):
                conn.close()

    def close_all(self) -> None:
        if self.h1 is not None:
            self.h1.close_all()
        for conn in list(self.conns):
            if not conn.streams:
                conn.close()

    def retire(self) -> None:
        """No longer used by new requests: idle connections close now, busy ones when their
        last stream closes."""
        self.retired = True
        if self.h1 is not None:
            self.h1.retire()
        for conn in list(self.conns):
            conn.going_away = True
            if not conn.streams:
                conn.close()
        self.conns.clear()
