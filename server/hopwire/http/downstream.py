"""The client side of a connection: parse requests with httptools, hand each one to an exchange.

State is grouped by lifetime: this object is the connection; each request is an exchange created
by the entrypoint's factory when a message begins (``ep.new_exchange``).  One exchange is active
at a time; pipelined requests queue behind it (reading pauses while they wait) and are answered
in order (RFC 9112 §9.3.2).

Parse failures end the connection with the status the error taxonomy names: the rest of a stream
whose framing was wrong cannot be trusted (RFC 9112 §6.3, §11.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import socket
import struct
import sys
import termios
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from hopwire import errors
from hopwire.errors import ErrorKind, ProxyError
from hopwire.http.flow import (
    BUFFERING,
    CLIENT_HIGH_WATER,
    CLIENT_LOW_WATER,
    PEER_FULL,
    QUEUED,
    ReadFlow,
)
from hopwire.http.h2 import PREFACE as H2_PREFACE
from hopwire.http.h2 import H2Connection
from hopwire.http.tls import tls_fields

if TYPE_CHECKING:
    from hopwire.contracts import Backend as Upstream
    from hopwire.contracts import Connection, EntryPoint
    from hopwire.contracts import ExchangeIn as Exchange

if TYPE_CHECKING:

    def _is_a_connection(down: Downstream) -> Connection:
        return down  # mypy: Downstream gives an exchange all that Connection promises


log = logging.getLogger("hopwire.http")

READ = 1  # the request must be fully read by the deadline (readTimeout) → 408
IDLE = 2  # keep-alive idle (idleTimeout) or tunnel idle → close quietly
LINGER = 3  # a lingering close: the rest of the request is read and dropped, then close
CLOSING = 4  # closed with bytes still to write: the client has this long to read them
LINGER_IDLE = 5.0  # ... for as long as the client keeps sending (nginx: lingering_timeout)
LINGER_MAX = 30.0  # ... and never longer than this in all (nginx: lingering_time)
_OUTQ = bytes(4)  # TIOCOUTQ (SIOCOUTQ): the bytes the kernel has not sent yet, an int
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends RST and drops the buffer
CLOSE_FLUSH = 30.0  # a closed connection's unwritten bytes, when no stall bound is set

_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_SUBSTITUTE_METHOD = b"OPTIONS"
CHUNK_EXT_LIMIT = 4096  # bytes of chunk framing tolerated without a body byte or chunk event


def _parser_error_kind(exc: Exception) -> tuple[ErrorKind, str]:
    message = str(exc)
    if isinstance(exc, HttpParserCallbackError):
        inner = exc.__cause__ or exc.__context__
        if isinstance(inner, ProxyError):
            return inner.kind, inner.detail
        if inner is not None:
            # a bug of ours inside a callback, not a bad request: 500, with the traceback
            log.error("internal error while handling a request", exc_info=inner)
            return errors.INTERNAL_ERROR, f"{type(inner).__name__}: {inner}"
    if "HTTP version" in message:
        return errors.VERSION_NOT_SUPPORTED, message
    return errors.BAD_REQUEST, message


class Downstream(asyncio.Protocol):
    framed = False  # bodies of unknown length are chunked (HTTP/2's streams frame their own)

    __slots__ = (
        "active",
        "after_large",
        "body_seen",
        "chunk_req",
        "client_ip",
        "client_ip_bytes",
        "client_port",
        "closed",
        "completed",
        "deadline",
        "deadline_kind",
        "deferred_error",
        "ep",
        "flow",
        "full",
        "fwd_block",
        "fwd_host",
        "linger_until",
        "log_fields",
        "method_override",
        "parser",
        "queue",
        "req",
        "served",
        "slow",
        "stall_at",
        "stall_mark",
        "tls",
        "transport",
        "trusted",
        "tunnel",
        "version",
        "worker",
        "writer",
    )

    def __init__(self, ep: EntryPoint):
        self.ep = ep  # the entrypoint runtime of this config generation
        self.worker = ep.worker
        # network.protocol.version of its requests (HTTP/1.0 ones say so apart); an instance
        # field, as the access log reads it for every request
        self.version = "1.1"
        self.parser = HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: ReadFlow = None  # type: ignore[assignment]
        # the exchange whose message is being parsed: never None inside the parser callbacks
        # between on_message_begin and on_message_complete, which is where it is used unchecked
        self.req: Exchange = None  # type: ignore[assignment]
        self.active: Exchange | None = None  # the exchange being proxied
        self.queue: deque[Exchange] | None = None
        self.deferred_error: tuple[Exchange, ErrorKind, str] | None = None
        self.tunnel: Upstream | None = None  # the upstream connection after a 101
        self.served = 0
        self.full = False  # the transport is over its high-water mark (pause_writing)
        self.slow = False  # ... has been once, or left a large response unread (check_backlog)
        self.after_large = False  # the last response was large: look at the backlog next time
        # what writes more of an answer when the client has room again (a buffered response)
        self.writer: Callable[[], None] | None = None
        # Every state of a connection has a deadline (RELIABILITY 39): ``deadline`` for the
        # connection's own states (reading a request, idle, lingering, tunnel, closing), the
        # exchange's ``deadline`` (responseHeaderTimeout, writeTimeout) while it proxies; and
        # when neither is set, the worker's tick calls ``watch``, which ends the connection
        # once nothing has moved either way for the stall bound (``ep.stall_timeout``).
        self.deadline = 0.0
        self.deadline_kind = 0
        self.stall_at = 0.0
        self.stall_mark = -1
        self.body_seen = 0  # request body bytes parsed on this connection
        self.chunk_req: Exchange | None = None  # the chunked request whose framing is counted
        self.closed = False
        self.linger_until = 0.0  # set while lingering (see linger)
        self.client_ip = ""
        self.client_ip_bytes = b""
        self.client_port = 0
        self.trusted = False
        self.method_override: bytes | None = None
        self.completed = 0  # messages parsed on this connection
        self.tls: tuple[str, str, str | None] | None = None  # see tls_fields
        self.log_fields: bytes | None = None  # the access log's part of a line (_accesslog)
        # the X-Forwarded-* lines of the last request without trusted ones, and its Host:
        # the same for the next request with that Host (Exchange.build_head)
        self.fwd_host: bytes | None = None
        self.fwd_block = b""

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(CLIENT_HIGH_WATER, CLIENT_LOW_WATER)
        self.flow = ReadFlow(transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip, self.client_port = peer[0], peer[1]
        self.client_ip_bytes = self.client_ip.encode()
        self.trusted = self.ep.is_trusted(self.client_ip)
        if self.ep.tls:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                H2Connection(self.ep).take_over(transport, b"")
                return
        self.worker.connections.add(self)
        self.set_deadline(self.ep.read_timeout, READ)
        if self.worker.draining:
            self.set_deadline(self.worker.drain_idle, IDLE)

    def to_h2(self, data: bytes) -> None:
        """Hand the connection to the HTTP/2 protocol (ALPN h2, or the h2c preface)."""
        self.worker.connections.discard(self)
        self.closed = True  # this object is done with it
        H2Connection(self.ep).take_over(self.transport, data)

    def tls_fields(self) -> tuple[str, str, str | None] | None:
        """(TLSVersion, TLSCipher, TLSClientSubject) of a TLS connection, read once."""
        if self.tls is None and self.ep.tls:
            ssl_object = self.transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                self.tls = tls_fields(ssl_object)
        return self.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.worker.connections.discard(self)
        if self.tunnel is not None:
            self.tunnel.close()
        active = self.active
        if active is not None and not active.done:
            active.client_lost()
        # requests that were never routed: one being read, or pipelined behind the active one
        pending: list[Exchange] = []
        if self.req is not None and self.req is not active:
            pending.append(self.req)
        if self.queue:
            pending += self.queue
            self.queue.clear()
        for ex in pending:
            if not ex.done:
                ex.observe(self.ep.unrouted_observers)
                ex.client_lost()

    def eof_received(self) -> bool:
        if self.linger_until:
            return False  # the lingering close is over: close
        # A half-closed client still gets the response to a complete request (RELIABILITY 16).
        if self.tunnel is not None:
            self.tunnel.half_close()
            return True
        if self.active is not None and self.req is None:
            self.active.client_eof = True
            return True
        return False  # a request cut short ends as client_closed in connection_lost

    def pause_writing(self) -> None:
        self.full = self.slow = True
        other = self.tunnel or (self.active.upstream if self.active is not None else None)
        if other is not None:
            other.flow.pause(PEER_FULL)
            other.narrow()  # a slow reader: read from its backend only as fast as it drains

    def resume_writing(self) -> None:
        self.full = False
        other = self.tunnel or (self.active.upstream if self.active is not None else None)
        if other is not None:
            other.flow.resume(PEER_FULL)
        writer = self.writer
        if writer is not None:
            writer()

    def check_backlog(self) -> None:
        """The exchange after a large response starts: the bytes the kernel still holds for
        this client.  One that reads as it asks has read the last response before sending
        this request; one that left more than the high-water mark unread (a pipelining slow
        reader) is slow, and its new backend connection is narrowed before any byte of the
        response is read (the kernel's send buffer, megabytes on loopback, hides a slow
        reader from ``pause_writing`` for whole responses)."""
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return
        try:
            unsent = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, _OUTQ)
        except OSError:
            return
        if int.from_bytes(unsent, sys.byteorder) > CLIENT_HIGH_WATER:
            self.slow = True

    def reading_for(self, conn: Upstream) -> None:
        """A backend connection now answers this client (``Exchange.attach``): a client whose
        transport is still over its high-water mark (a pipelined request behind a response it
        has not read) pauses it at once, as ``pause_writing`` would have; one that has been
        slow gets it narrowed."""
        if self.after_large:
            self.after_large = False
            self.check_backlog()
        if self.slow:
            if self.full:
                conn.flow.pause(PEER_FULL)
            conn.narrow()

    def set_deadline(self, seconds: float, kind: int) -> None:
        self.deadline = self.worker.clock.now + seconds if seconds else 0.0
        self.deadline_kind = kind

    def timed_out(self) -> None:
        """Called by the worker's tick when ``deadline`` has passed."""
        if self.closed:
            # closed with unwritten bytes the client does not read: give up on them
            self.deadline = 0.0
            self.abort()
            return
        if self.linger_until:
            self.close()  # the client is done sending, or took too long
            return
        if self.deadline_kind == READ and self.req is not None:
            self.fail(errors.REQUEST_TIMEOUT, "request not read within readTimeout")
            return
        self.close()  # idle, or nothing of a request was ever sent

    def watch(self, now: float) -> None:
        """The worker's tick, for a connection no deadline covers: an exchange waiting for
        its backend or writing its response with no responseHeaderTimeout or writeTimeout.
        Progress is any request body byte read, response byte relayed, attempt or answer;
        when none has happened for the stall bound, the exchange ends (``Exchange.stalled``).
        """
        bound = self.ep.stall_timeout
        if not bound:
            return  # the operator turned every client-side timeout off
        ex = self.active
        mark = self.body_seen + self.served
        if ex is not None:
            mark += ex.resp_bytes + ex.attempts
        if mark != self.stall_mark or not self.stall_at:
            self.stall_mark = mark
            self.stall_at = now + bound
            return
        if now < self.stall_at:
            return
        self.stall_at = 0.0
        if ex is None or ex.done:
            self.close()  # a state nothing else ends (there should be none): end it
        else:
            ex.stalled(self.transport.get_write_buffer_size() > 0)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()
            if self.transport.get_write_buffer_size():
                # uvloop keeps the socket until the bytes are written: bound that too
                self.deadline = self.worker.clock.now + (self.ep.stall_timeout or CLOSE_FLUSH)
                self.deadline_kind = CLOSING

    def abort(self) -> None:
        """Drop the connection at once, unwritten bytes and all (a client that reads nothing).

        A reset, as nginx's ``reset_timedout_connection``: a plain close would leave the
        kernel sending its buffer (megabytes on loopback) to a peer that does not read."""
        self.closed = True
        if not self.transport.is_closing() or self.transport.get_write_buffer_size():
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            self.transport.abort()

    def close_after_answer(self, ex: Exchange) -> None:
        """Close after an answer; linger when the client may still be sending its request.

        Closing a socket with unread bytes, or with bytes still to arrive, makes the kernel send
        a reset, and the client's stack may then discard the answer before the application
        reads it.  So, as nginx does: half-close (the answer is flushed first), read and drop
        what the client still sends, and close on its EOF or after LINGER_IDLE quiet seconds
        (LINGER_MAX in all).
        """
        if self.closed:
            return
        if not (ex.body_pending() or self.req is not None) or not self.transport.can_write_eof():
            self.close()
            return
        now = self.worker.clock.now
        self.linger_until = now + LINGER_MAX
        self.deadline, self.deadline_kind = now + LINGER_IDLE, LINGER
        if self.queue:
            self.queue.clear()
        self.transport.write_eof()
        self.transport.resume_reading()  # whatever paused it, the rest is only dropped now

    # -- bytes in --------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.linger_until:  # the rest of a request that has been answered: dropped
            self.deadline = min(self.worker.clock.now + LINGER_IDLE, self.linger_until)
            return
        if self.tunnel is not None:
            self.deadline = self.worker.clock.now + self.ep.idle_timeout
            self.tunnel.transport.write(data)
            return
        fresh = self.req is None  # no message in progress: a new one would start at offset 0
        completed = self.completed
        chunk_req = self.chunk_req
        body_seen = self.body_seen
        unknown: HttpParserInvalidMethodError | None = None
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self.upgrade_requested(data[exc.args[0] :])
        except HttpParserInvalidMethodError as exc:
            unknown = exc  # re-parsed below, outside this handler (see unknown_method)
        except (HttpParserError, ProxyError) as exc:
            if fresh and not completed and not self.ep.tls and data.startswith(H2_PREFACE[:16]):
                self.to_h2(data)  # h2c by prior knowledge (RFC 9113 §3.3)
                return
            kind, detail = (
                (exc.kind, exc.detail) if isinstance(exc, ProxyError) else _parser_error_kind(exc)
            )
            self.fail(kind, detail)
        else:
            if self.chunk_req is not None:
                self.chunk_framing_over(data, chunk_req is not None, completed, body_seen)
        # Whatever ended the parse, the body pieces of the active request that this read held
        # go to its backend now: a pooled connection is attached inside the parser's
        # callbacks, and nothing else would write them (the backend would wait for its body
        # while the exchange waits for the backend's answer).
        active = self.active
        if active is not None and active.up_out:
            active.flush_up()
        if unknown is not None:
            self.unknown_method(data, unknown, fresh and completed == self.completed)

    def chunk_framing_over(
        self, data: bytes, in_body: bool, completed: int, body_seen: int
    ) -> None:
        """Bound the framing bytes of a chunked request body (chunk-size lines, extensions).

        httptools reports no chunk extensions, so the framing is what this read held beyond
        body bytes (and the head, when the head was in it).  A read that also holds the start
        of another message cannot be attributed and is not counted.
        """
        req = self.chunk_req
        assert req is not None  # called only while a chunked request is being read
        if self.completed != completed:
            self.chunk_req = None
            if self.req is not None or not data.endswith(b"\r\n\r\n"):
                return
        framing = len(data) - (self.body_seen - body_seen)
        if not in_body:
            framing -= len(req.method) + len(req.target) + 12 + req.head_size + 2
        req.framing += framing
        if req.framing > CHUNK_EXT_LIMIT + 64 * req.chunks:
            self.fail(errors.BAD_REQUEST, "chunk framing over the limit (chunk extension?)", req)

    def unknown_method(self, data: bytes, exc: Exception, at_start: bool) -> None:
        """llhttp knows a fixed list of methods; RFC 9110 §9.1 allows any token.

        When the failed message began at the start of this read, parse it again with a
        stand-in method and forward the real one.  The re-parse runs outside the handler of
        the first error, so that an error it raises is read for what it is (inside the handler
        the parser's callback error would chain to the first one, and a bad request would
        look like a bug of ours).  A malformed token is a 400.  (An unknown
        method pipelined behind another request in the same read is refused with 400: httptools
        does not report where that message began.)
        """
        space = data.find(b" ")
        token = data[:space] if space > 0 else b""
        if at_start and token and len(token) <= 32 and all(c in _TOKEN_CHARS for c in token):
            self.parser = HttpRequestParser(self)
            self.req = None  # type: ignore[assignment]
            self.method_override = token  # consumed by the exchange at headers complete
            self.data_received(_SUBSTITUTE_METHOD + data[space:])
            return
        self.fail(errors.BAD_REQUEST, f"invalid method: {exc}")

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.req = self.ep.new_exchange(self)
        if self.active is None:  # set_deadline(read_timeout, READ), inline: once a request
            seconds = self.ep.read_timeout
            self.deadline = self.worker.clock.now + seconds if seconds else 0.0
            self.deadline_kind = READ

    def on_url(self, url: bytes) -> None:
        req = self.req
        req.target += url
        if len(req.target) > self.ep.max_line:
            raise ProxyError(errors.URI_TOO_LONG, f"request target over {self.ep.max_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.req
        req.head_size += len(name) + len(value) + 4
        if req.head_size > self.ep.max_header_bytes:
            raise ProxyError(errors.HEADERS_TOO_LARGE, "request header section over the limit")
        if req.head_done:  # a trailer field: never a header (RFC 9112 §7.1.2), relayed after
            req.request_trailer(name, value)
            return
        req.headers.append((name, value))

    def on_headers_complete(self) -> None:
        req = self.req
        req.head_done = True
        # counted once here: the byte limit above already bounds what the fields hold
        if len(req.headers) > self.ep.max_fields:
            raise ProxyError(errors.HEADERS_TOO_LARGE, "request header section over the limit")
        req.parsed(self.parser)  # validates; raises ProxyError
        if req.chunked:
            self.chunk_req = req
        if self.active is None:
            self.active = req
            req.start()
        else:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(req)
            self.flow.pause(QUEUED)

    def on_body(self, body: bytes) -> None:
        self.body_seen += len(body)
        self.req.body(body)

    def on_chunk_header(self) -> None:
        self.req.chunks += 1

    def on_message_complete(self) -> None:
        req = self.req
        self.req = None  # type: ignore[assignment]
        self.completed += 1
        if self.active is req:
            self.deadline = 0.0  # the exchange's own deadlines apply now
        elif self.active is None and not self.closed:
            self.set_deadline(self.ep.idle_timeout, IDLE)  # answered before it was read
        req.request_complete()

    # -- exchanges ---------------------------------------------------------------------------

    def closes(self, kind: ErrorKind | None, keep_alive: bool, body_pending: bool) -> bool:
        """The one close rule: whether the connection closes after the answer being made
        (``kind`` None: a normal one, else the error's ``keep_alive``).  It closes when the
        client asked (``keep_alive`` False), when the request's body is still unread, when
        the worker drains, and after ``keepAliveMaxRequests`` answers, local ones and errors
        included."""
        max_requests = self.ep.max_requests
        return (
            (kind is not None and not kind.keep_alive)
            or not keep_alive
            or body_pending
            or self.worker.draining
            or (max_requests > 0 and self.served + 1 >= max_requests)
        )

    def exchange_done(self, ex: Exchange, close: bool) -> None:
        """An exchange has ended (``Exchange.end``): close, or go on with the next request."""
        self.served += 1
        self.writer = None
        if self.active is ex:
            self.active = None
        if ex.resp_bytes > CLIENT_HIGH_WATER and not self.slow:
            self.after_large = True
        if self.tunnel is not None:
            return  # the connection is a byte tunnel now
        if close or self.closed:
            self.close_after_answer(ex)
            return
        queue = self.queue
        if queue:
            nxt = queue.popleft()
            if not queue:
                self.flow.resume(QUEUED)
            self.active = nxt
            nxt.start()
            if nxt.up_out:
                nxt.flush_up()
            return
        if self.deferred_error is not None:
            bad, kind, detail = self.deferred_error
            self.deferred_error = None
            self.fail(kind, detail, bad)
            return
        if ex.client_eof:
            self.close()
            return
        if self.req is None:  # set_deadline(idle, IDLE), inline: once a request
            worker = self.worker
            idle = worker.drain_idle if worker.draining else self.ep.idle_timeout
            self.deadline = worker.clock.now + idle if idle else 0.0
            self.deadline_kind = IDLE
        else:
            self.set_deadline(self.ep.read_timeout, READ)
        if self.flow.reasons:
            self.flow.resume(BUFFERING | PEER_FULL)  # the exchange's upstream is gone

    def fail(self, kind: ErrorKind, detail: str, ex: Exchange | None = None) -> None:
        """A request could not be parsed or read; answer in order, then close.

        ``ex`` is the exchange the error belongs to (default: the one being parsed; a new one
        when the error came before any message began), so that the answer is observed like
        any other.
        """
        if self.closed:
            return
        ex = ex or self.req or self.ep.new_exchange(self)
        self.flow.pause(QUEUED)  # the stream cannot be trusted past this point
        self.chunk_req = None
        active = self.active
        if active is not None and not active.done:
            if ex is active:
                active.abort(kind, detail)  # nothing more reaches the backend
                return
            # Answer the requests before the bad one first (RFC 9112 §9.3.2).
            if self.queue and ex in self.queue:
                self.queue.remove(ex)
            self.deferred_error = (ex, kind, detail)
            return
        ex.reject(kind, detail, self.parser)

    def upgrade_requested(self, rest: bytes) -> None:
        """The parser stopped after a request with Upgrade (or CONNECT); ``rest`` follows it."""
        req = self.active
        if req is None or req.method == "CONNECT" or not req.upgrade:
            self.fail(errors.METHOD_NOT_ALLOWED, "CONNECT is not supported by a reverse proxy")
            return
        self.flow.pause(QUEUED)  # nothing more is parsed as HTTP on this connection
        req.tunnel_pending(rest)

    def start_tunnel(self, upstream: Upstream) -> None:
        self.tunnel = upstream
        upstream.tunnel = self
        self.flow.resume(QUEUED | BUFFERING)
        self.set_deadline(self.ep.idle_timeout, IDLE)
