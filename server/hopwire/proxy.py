"""One proxied request, as named phases on one ``__slots__`` object.

    parse    ``parsed``           the head rules of ``hopwire.http.head``, framing decided
    route    ``start``            compiled router table of the entrypoint, or /ping, /metrics
    acquire  ``acquire``/``dial`` LIFO idle connection, else dial
    send     ``attach``           request head (+ any buffered body) in one write
    stream   ``body``/``response_*``  both directions, flow control on both transports
    failed   ``failed``/``again`` a failed attempt: tried again, answered, or cut short
    end      ``end``              the one way out, whatever the outcome

The contract of each phase (when it runs, what its return means) is ``hopwire.contracts``.

Every ending goes through ``end(kind, close)``: a complete response, a local answer, an error
before or after the response head, a request rejected while parsing, a client gone, an
upgrade.  ``end`` does, exactly once: the error counter and log line (``kind`` decides both,
see ``hopwire.errors``), the release of an attached backend connection, the observer (metrics,
access log, span), and the client connection's bookkeeping (close, or the next request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from time import monotonic
from typing import TYPE_CHECKING, Any

from hopwire import errors, grpc
from hopwire.contracts import BodyFilter, BodySink, Connection, ParserView, RetryState
from hopwire.errors import ErrorKind
from hopwire.http._head import field_lines, forward_head
from hopwire.http.flow import BUFFER_LIMIT, BUFFERING
from hopwire.http.head import RequestHead, read_request, response_fields
from hopwire.http.path import has_denied
from hopwire.http.wire import (
    CHUNKED,
    CONN_CLOSE,
    CONN_KEEP_ALIVE,
    CONTINUE_100,
    CRLF,
    IDEMPOTENT,
    LAST_CHUNK,
    STATUS_LINE,
    UNFORWARDED,
    simple_response,
    status_line,
)

if TYPE_CHECKING:
    from hopwire.balancer import Server, Service
    from hopwire.http.h2up import BackendStream
    from hopwire.http.upstream import Upstream as Upstream1
    from hopwire.routing import Route
    from hopwire.telemetry.observer import Observer
    from hopwire.telemetry.tracing import Trace

    Upstream = Upstream1 | BackendStream  # a backend connection, HTTP/1.1 or an HTTP/2 stream

log = logging.getLogger("hopwire.proxy")

_head_init = RequestHead.__init__


Fields = list[tuple[bytes, bytes]]


PASS = 0  # response body bytes go to the client as they are
CHUNK = 1  # response body is re-framed as chunked for an HTTP/1.1 client


# fields a trailer section never carries on (RFC 9110 §6.5.1: framing, routing, the
# connection's own)
UNTRAILED = frozenset(
    (
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-connection",
    )
)


def trailer_section(fields: list[tuple[bytes, bytes]]) -> bytes:
    """The last chunk of a chunked body with its trailer fields."""
    return b"".join((b"0\r\n", field_lines(fields), CRLF))


class Exchange(RequestHead):
    __slots__ = (
        "attempts",
        "chunks",
        "client_eof",
        "client_ip",
        "close_after",
        "continue_at",
        "deadline",
        "done",
        "down",
        "error_type",
        "filters",
        "framing",
        "grpc",
        "head_done",
        "head_sent",
        "head_size",
        "headers",
        "held",
        "notes",
        "observers",
        "origin_status",
        "origin_t0",
        "out",
        "replay",
        "req_bytes",
        "req_complete",
        "req_trailers",
        "resp_bytes",
        "resp_complete",
        "resp_head",
        "resp_mode",
        "resp_to_close",
        "retry",
        "reused",
        "route",
        "server",
        "sink",
        "status",
        "t0",
        "t1",
        "target",
        "timed",
        "trace",
        "trailers",
        "tunnel_rest",
        "up_buffered",
        "up_head",
        "up_out",
        "upstream",
    )

    # set only where they apply, so that no other request pays for them (read with getattr):
    # the request's trailer fields (request_trailer), the response's (response_trailers, an
    # HTTP/2 backend's), and a gRPC call's status as the metrics count it (a gRPC call only)
    req_trailers: list[tuple[bytes, bytes]]
    trailers: list[tuple[bytes, bytes]]
    grpc: int

    def __init__(self, down: Connection):
        _head_init(self)
        # the connection
        self.down = down
        self.client_ip = down.client_ip
        # the request message, as the parser delivers it
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.head_done = False
        self.req_complete = False
        self.client_eof = False
        self.chunks = 0  # chunk headers seen, and framing bytes counted (chunk_framing_over)
        self.framing = 0
        self.req_bytes = 0  # body bytes, for metrics
        # where it goes
        self.route: Route | None = None
        self.server: Server | None = None
        # chosen once per router; empty: nothing observes
        self.observers: tuple[Observer, ...] = ()
        self.trace: Trace | None = None  # set by a tracing observer
        self.held: list[Callable[[], object]] | None = None  # what middlewares give back at end
        # middlewares (hopwire.middlewares.bodies): where request body bytes go instead of the
        # backend, the response body filters, the retry state and the body a retry resends
        self.sink: BodySink | None = None
        self.filters: BodyFilter | None = None
        self.retry: RetryState | None = None
        self.replay: bytes | None = None
        self.notes: dict[str, Any] | None = None  # what a middleware keeps for the response
        self.t0 = self.t1 = 0.0  # start and end (monotonic), when observers time it
        # the backend attempt
        self.upstream: Upstream | None = None
        self.up_head = b""
        self.up_out: list[bytes] = []
        self.up_buffered = 0
        self.attempts = 0
        self.reused = False
        self.deadline = 0.0  # response head (responseHeaderTimeout) or write (writeTimeout)
        self.continue_at = 0.0  # when hopwire answers 100 Continue itself (expectContinueTimeout)
        # set by observers (the OTLP metrics, the access log): note when the backend attempt
        # starts (origin_t0)
        self.timed = 0
        self.origin_t0 = 0.0
        self.origin_status = 0
        # the response
        self.status = 0
        self.resp_head = False  # a response head is decided (written, or about to be)
        self.head_sent = False  # ... and written to the client: from now on, only cut short
        self.resp_complete = False
        self.resp_mode = PASS
        self.resp_to_close = False
        self.close_after = False
        self.out: list[bytes] = []
        self.resp_bytes = 0
        self.tunnel_rest = b""
        # the outcome
        self.done = False
        self.error_type = ""

    # -- parse -------------------------------------------------------------------------------

    def parsed(self, parser: ParserView) -> None:
        """Validate the head and decide framing; raise ProxyError for a bad request."""
        down = self.down
        override = down.method_override
        if override is not None:
            down.method_override = None
            method = override.decode("latin-1")
        else:
            method = parser.get_method().decode("latin-1")
        ep = down.ep
        read_request(
            self,
            parser.get_http_version(),
            method,
            self.target,
            self.headers,
            down.trusted,
            ep.sanitize,
            ep.traced,
        )

    # -- route -------------------------------------------------------------------------------

    def start(self) -> None:
        down = self.down
        ep = down.ep
        if ep.metrics_page and self.path == "/metrics":
            self.observe(ep.internal_observers)  # only with addInternals
            accept = b""
            for name, value in self.kept:
                if name.lower() == b"accept":
                    accept = value
            body, content_type = ep.metrics_page(accept)
            self.respond_local(200, body, content_type)
            return
        if ep.ping and self.path == "/ping":
            stopping = down.worker.stopping
            self.observe(ep.internal_observers)  # only with addInternals
            self.respond_local(
                503 if stopping else 200, b"Service Unavailable" if stopping else b"OK"
            )
            return
        route = ep.table.match(self)
        if route is None:
            self.observe(ep.unrouted_observers)
            self.respond_error(errors.NO_ROUTE, f"no router for {self.host}{self.path}")
            return
        self.route = route
        target = route.target
        self.observe(target.observers)
        if ep.denied:
            code = has_denied(self.path_query.partition(b"?")[0], ep.denied)
            if code is not None:  # Traefik's encodedCharacters, checked for the matched router
                self.respond_error(errors.BAD_REQUEST, f"encoded {code.decode()} in the path")
                return
        stages = target.request
        if stages:  # middlewares (hopwire.middlewares): inline, run_stages is for resume
            for stage in stages:
                if stage(self):
                    return
        self.forward()

    def run_stages(self, first: int) -> bool:
        """The route's request stages from ``first`` on; True when one answered the request
        itself or holds it (a rate limit's wait, which calls ``resume``)."""
        assert self.route is not None
        stages = self.route.target.request
        return any(stages[i](self) for i in range(first, len(stages)))

    def resume(self, next_stage: int) -> None:
        """Carry on after a stage held the request (unless it ended meanwhile)."""
        if not self.done and not self.run_stages(next_stage):
            self.forward()

    def forward(self) -> None:
        """Pick a server of the route's service and send the request there."""
        assert self.route is not None
        service = self.route.target.service
        server = service.pick()
        if server is None:
            self.respond_error(errors.NO_SERVER, f"service {service.name}: no healthy server")
            return
        self.server = server
        self.up_head = self.build_head(service, server)
        self.acquire(server.pool.take())

    def observe(self, observers: tuple[Observer, ...]) -> None:
        """Hand the exchange to the observers chosen for where it was routed (none: nothing)."""
        if observers:
            self.observers = observers
            self.t0 = monotonic()
            for observer in observers:
                observer.start(self)

    def build_head(self, service: Service, server: Server) -> bytes:
        down = self.down
        fwd = self.fwd
        authority = self.authority
        parts = [
            self.method.encode("latin-1"),
            b" ",
            self.path_query,
            b" HTTP/1.1\r\nhost: ",
            authority if service.pass_host and authority else server.host_header,
            CRLF,
        ]
        kept = self.kept
        if kept:
            parts.append(field_lines(kept))
        if fwd:
            parts.append(self.forwarded_block(fwd))
        elif authority == down.fwd_host:  # the connection's last block: the same Host
            parts.append(down.fwd_block)
        else:
            block = down.fwd_block = self.forwarded_block(fwd)
            down.fwd_host = authority
            parts.append(block)
        if self.chunked:
            parts.append(CHUNKED)
        elif self.cl is not None:
            parts += (b"content-length: ", self.cl, CRLF)
        if self.upgrade is not None:
            parts += (b"upgrade: ", self.upgrade, b"\r\nconnection: upgrade\r\n")
        if self.trace is not None:
            parts.append(self.trace.line)  # the inbound context (tfields) is replaced
        elif self.tfields is not None:  # untraced: forwarded as it came
            parts.append(field_lines(self.tfields))
        parts.append(CRLF)
        return b"".join(parts)

    def forwarded_block(self, fwd: Mapping[bytes, bytes]) -> bytes:
        """The X-Forwarded-* and X-Real-Ip lines: from the connection and the Host, or the
        values a trusted client (or a headers middleware) gave in ``fwd``."""
        down = self.down
        ep = down.ep
        ip = down.client_ip_bytes
        xff = fwd.get(b"x-forwarded-for")
        authority = self.authority
        proto = fwd.get(b"x-forwarded-proto", ep.scheme)
        # as Traefik: a trusted X-Forwarded-Port, else the Host's port, else the scheme's
        port = fwd.get(b"x-forwarded-port") or self.port
        if not port:
            if proto is ep.scheme:
                port = ep.default_port
            else:  # a trusted hop's X-Forwarded-Proto
                port = b"443" if proto.lower() in (b"https", b"wss") else b"80"
        written = (
            (b"x-forwarded-for", xff + b", " + ip if xff else ip),
            (b"x-forwarded-proto", proto),
            (b"x-forwarded-host", fwd.get(b"x-forwarded-host", authority)),
            (b"x-forwarded-port", port),
            (b"x-real-ip", fwd.get(b"x-real-ip", ip)),
        )
        # a headers middleware removes some of them (an empty customRequestHeaders value)
        removed = fwd.get(UNFORWARDED)
        if removed:
            return field_lines([field for field in written if field[0] not in removed])
        return field_lines(written)

    # -- acquire and send ----------------------------------------------------------------------

    def acquire(self, conn: Upstream | None) -> None:
        trace = self.trace
        # an unsampled trace records nothing: it only needs to hear of a retry (a new span id)
        if (
            trace is not None
            and (trace.sampled or self.attempts)
            and trace.begin_attempt(self.server)
        ):
            # a retry: a new CLIENT span id, so the head is rebuilt
            assert self.server is not None and self.route is not None
            self.up_head = self.build_head(self.route.target.service, self.server)
        if conn is None:
            self.reused = False
            self.down.worker.loop.create_task(self.dial())
        else:
            self.reused = True
            self.attach(conn)

    def log_ids(self) -> dict[str, str] | None:
        """trace_id/span_id for log lines written while a sampled request is in scope."""
        trace = self.trace
        return trace.ids() if trace is not None else None

    async def dial(self) -> None:
        assert self.server is not None
        pool = self.server.pool
        try:
            conn = await pool.connect()
        except TimeoutError:
            self.failed(errors.CONNECT_TIMEOUT, f"dial {pool.label} timed out")
            return
        except OSError as exc:
            self.failed(errors.CONNECT_FAILED, f"dial {pool.label}: {exc.strerror or exc}")
            return
        if self.done:
            conn.release(True, self.down.worker.clock.now)
            return
        self.attach(conn)

    def attach(self, conn: Upstream) -> None:
        down = self.down
        self.upstream = conn
        conn.ex = self
        conn.fresh = True
        assert self.server is not None
        self.server.inflight += 1
        self.attempts += 1
        if self.timed and self.attempts == 1:
            self.origin_t0 = monotonic()
        if down.slow or down.after_large:
            down.reading_for(conn)
        pool = conn.pool
        now = down.worker.clock.now
        if pool.response_header_timeout:
            self.deadline = now + pool.response_header_timeout
        if self.expect_continue and self.has_body and pool.expect_continue_timeout:
            # Go's transport for Traefik: if the backend has not answered 100 (or at all) in
            # time, the client is told to send its body anyway
            self.continue_at = now + pool.expect_continue_timeout
        out = self.up_out
        if out:
            out.insert(0, self.up_head)
            conn.transport.write(b"".join(out))
            out.clear()
            if self.up_buffered > BUFFER_LIMIT:
                down.flow.resume(BUFFERING)
            self.up_buffered = 0
        else:
            conn.transport.write(self.up_head)

    def continue_now(self) -> None:
        """``continue_at`` passed: answer 100 Continue so that the client sends its body."""
        self.continue_at = 0.0
        if not self.done and not self.resp_head and self.expect_continue:
            self.expect_continue = False
            self.down.transport.write(CONTINUE_100)

    def body(self, data: bytes) -> None:
        if self.done:
            return
        self.req_bytes += len(data)
        self.expect_continue = False  # the client is sending: it waits for nothing
        if self.sink is not None:
            self.sink.data(data)
            return
        if self.chunked:
            self.up_out += (b"%x\r\n" % len(data), data, CRLF)
        else:
            self.up_out.append(data)
        if self.upstream is None:
            self.up_buffered += len(data)
            if self.up_buffered > BUFFER_LIMIT:
                self.down.flow.pause(BUFFERING)

    def body_pending(self) -> bool:
        """Request body bytes are still to come: the connection cannot serve another request."""
        return self.has_body and not self.req_complete

    def request_complete(self) -> None:
        self.req_complete = True
        if self.sink is not None and not self.done:
            self.sink.complete()
            return
        if self.chunked and not self.done:
            # the last chunk, with the request's trailer fields when it had some (set only
            # then: no request pays for the slot)
            trailers = getattr(self, "req_trailers", None)
            self.up_out.append(trailer_section(trailers) if trailers else LAST_CHUNK)

    def request_trailer(self, name: bytes, value: bytes) -> None:
        """A trailer field of the request (after a chunked body, or an HTTP/2 request's
        trailers; the connection bounds their size): relayed after the body unless it is
        one the framing or the connection owns (RFC 9110 §6.5.1)."""
        if name.lower() in UNTRAILED:
            return
        trailers: list[tuple[bytes, bytes]] | None = getattr(self, "req_trailers", None)
        if trailers is None:
            trailers = []
            self.req_trailers = trailers
        trailers.append((name, value))

    def flush_up(self) -> None:
        conn = self.upstream
        if conn is not None and self.up_out:
            conn.transport.write(b"".join(self.up_out))
            self.up_out.clear()

    # -- responses -------------------------------------------------------------------------

    def response_interim(self, status: int, conn: Upstream) -> None:
        if self.http10 or self.resp_head:
            return  # RFC 9110 §15.2: no 1xx to an HTTP/1.0 client
        if status == 100:
            if not self.expect_continue:
                return  # hopwire already answered 100 itself (or nobody asked)
            self.expect_continue = False
            self.continue_at = 0.0
        lines = response_fields(conn.fields(), status_line(status, conn.reason))[0]
        lines.append(CRLF)
        self.out.append(b"".join(lines))

    def response_head(self, status: int, conn: Upstream) -> None:
        """The backend's response head (``conn.head``; its fields: ``conn.fields()``)."""
        if status == 101:
            return  # handled by response_upgraded once the parser stops
        retry = self.retry
        if retry is not None and retry.on_status(self, status):
            return  # this response is discarded and the request tried again
        self.resp_head = True
        self.status = self.origin_status = status
        self.deadline = 0.0
        self.continue_at = 0.0
        route = self.route
        edit = route.target.response if route is not None else None
        first = STATUS_LINE.get(status) or status_line(status, conn.reason)
        if edit is None:
            # the common response: its field block forwarded as it came
            framed = forward_head(conn.head, conn.fields_at, first)
            if framed is None:
                framed = response_fields(conn.fields(), first)
            trace = self.trace
            responds = trace is not None and trace.tracer.responds
            self.send_head(framed[0], framed[1], framed[2], conn.fields() if responds else ())
            return
        # the middlewares' fields replace the backend's (hopwire.middlewares)
        headers = conn.fields()
        parts, cl, up_chunked, _ = response_fields(headers, first, edit.skip)
        edit.extend(self, parts, headers)
        if edit.bodies:  # compress, buffering, errors: they send the head when ready
            filters = edit.open_filters(self, headers)
            if filters is not None:
                self.filters = filters
                filters.send_head(parts, cl, up_chunked, headers)
                return
        self.send_head(parts, cl, up_chunked, headers)

    def send_head(
        self,
        parts: list[bytes],
        cl: bytes | None,
        up_chunked: bool,
        headers: Sequence[tuple[bytes, bytes]],
    ) -> None:
        """Frame and queue the response head: ``parts`` (status line and end-to-end fields),
        ``cl`` (Content-Length) or ``up_chunked`` (the body's own framing), ``headers`` (the
        fields as received, for the tracer's captured response fields)."""
        down = self.down
        ep = down.ep
        status = self.status
        close = down.closes(None, self.keep_alive, self.has_body and not self.req_complete)
        no_body = self.method == "HEAD" or status == 204 or status == 304
        self.resp_to_close = not no_body and cl is None and not up_chunked
        if no_body or cl is not None or down.framed:
            self.resp_mode = PASS
        elif self.http10:
            self.resp_mode = PASS  # close-delimited: never chunked to HTTP/1.0 (RFC 9112 §7.1)
            close = True
        else:
            self.resp_mode = CHUNK
            parts.append(CHUNKED)
        self.close_after = bool(close)
        trace = self.trace
        if trace is not None and trace.tracer.responds:
            trace.tracer.respond(self, parts, headers)
        if close:
            parts.append(CONN_CLOSE)
        elif self.http10:
            parts.append(CONN_KEEP_ALIVE)
        parts.append(CRLF)
        self.out.append(b"".join(parts))
        write_timeout = ep.write_timeout
        if write_timeout:
            self.deadline = down.worker.clock.now + write_timeout

    def response_body(self, data: bytes) -> None:
        filters = self.filters
        if filters is not None:
            filters.send_data(data)
            return
        self.resp_bytes += len(data)
        if self.resp_mode == CHUNK:
            self.out += (b"%x\r\n" % len(data), data, CRLF)
        else:
            self.out.append(data)

    def send_data(self, data: bytes) -> None:
        """A piece of response body after the filters (as response_body without them)."""
        self.resp_bytes += len(data)
        if self.resp_mode == CHUNK:
            self.out += (b"%x\r\n" % len(data), data, CRLF)
        else:
            self.out.append(data)

    def send_end(self) -> None:
        """The response is complete after the filters."""
        if self.done:
            return
        if self.resp_mode == CHUNK:
            self.out.append(LAST_CHUNK)
        self.flush_down()
        self.end(None, self.close_after)

    def answer_within(self, seconds: float) -> None:
        """The request's own deadline (gRPC's ``grpc-timeout``): the response head is due
        within ``seconds``, or sooner if responseHeaderTimeout says so."""
        at = self.down.worker.clock.now + seconds
        if not self.deadline or at < self.deadline:
            self.deadline = at

    def response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """The response's trailer fields (an HTTP/2 backend's; gRPC's status travels in
        them): relayed after the body, as a chunked body's trailer section to an HTTP/1.1
        client, as HEADERS after the DATA to an HTTP/2 one."""
        self.trailers = fields
        self.grpc_status(fields)

    def grpc_status(self, fields: list[tuple[bytes, bytes]]) -> None:
        """A gRPC call's status, from its trailers or its Trailers-Only head (for the
        metrics); nothing for any other exchange."""
        code = getattr(self, "grpc", None)
        if code is not None:
            self.grpc = grpc.status_in(fields, code)

    def last_chunk(self) -> bytes:
        """The end of a chunked response: the last chunk, with the trailers when any."""
        trailers = getattr(self, "trailers", None)
        return trailer_section(trailers) if trailers else LAST_CHUNK

    def response_complete(self, upstream_keep_alive: bool) -> None:
        self.resp_complete = True
        filters = self.filters
        if filters is not None:
            conn = self.upstream
            if conn is not None:
                self.end_attempt("")
                self.release(conn, upstream_keep_alive and self.req_complete and not self.up_out)
            filters.send_end()
            return
        if self.resp_mode == CHUNK:
            self.out.append(self.last_chunk())
        self.flush_down()
        conn = self.upstream
        if conn is not None:
            trace = self.trace
            if trace is not None and trace.sampled:
                trace.end_attempt(self.origin_status, "")
            # release(conn, ...), inline: once a request
            self.upstream = None
            self.server.inflight -= 1  # type: ignore[union-attr]
            reuse = upstream_keep_alive and self.req_complete and not self.up_out
            conn.release(reuse, self.down.worker.clock.now)
        self.end(None, self.close_after)

    def flush_down(self) -> None:
        out = self.out
        if out:
            down = self.down
            if not down.closed:
                down.transport.writelines(out)
            out.clear()
            self.head_sent = self.resp_head

    def end_attempt(self, error: str) -> None:
        trace = self.trace
        if trace is not None and trace.sampled:  # only a sampled trace records attempts
            trace.end_attempt(self.origin_status, error)

    def release(self, conn: Upstream, reuse: bool) -> None:
        """The attempt's connection goes back to its pool (``reuse``) or is closed."""
        self.upstream = None
        assert self.server is not None
        self.server.inflight -= 1
        conn.release(reuse, self.down.worker.clock.now)

    def response_upgraded(self, conn: Upstream, rest: bytes) -> None:
        """The backend answered 101: relay it and turn both connections into a byte tunnel."""
        down = self.down
        if self.upgrade is None:
            self.bad_response(conn, "101 Switching Protocols without an Upgrade request")
            return
        parts, _, _, upgrade = response_fields(conn.fields(), status_line(101))
        parts += (b"upgrade: ", upgrade or b"websocket", b"\r\nconnection: upgrade\r\n\r\n", rest)
        self.resp_head = self.resp_complete = True
        self.status = self.origin_status = 101
        self.end_attempt("")
        self.deadline = 0.0
        self.upstream = None
        conn.ex = None  # not released: the connection is the tunnel's now
        assert self.server is not None
        self.server.inflight -= 1
        down.transport.write(b"".join(parts))
        down.start_tunnel(conn)
        if self.tunnel_rest:
            conn.transport.write(self.tunnel_rest)
        self.end(None, False)

    def tunnel_pending(self, rest: bytes) -> None:
        self.tunnel_rest = rest

    # -- the one ending ----------------------------------------------------------------------

    def end(self, kind: ErrorKind | None, close: bool, detail: str = "") -> None:
        """End the exchange with its outcome: ``kind`` None for a complete answer, else the
        error; ``close``: the client connection closes after it.  Idempotent."""
        if self.done:
            return
        self.done = True
        down = self.down
        trace = self.trace
        if trace is not None and trace.sampled:
            trace.end_attempt(self.origin_status, kind.name if kind is not None else "")
        conn = self.upstream
        if conn is not None:
            self.release(conn, False)  # cancelled, never returned to the pool (RELIABILITY 17)
        if kind is not None:
            if not self.error_type:
                self.error_type = kind.name
            worker = down.worker
            worker.errors[kind.name] += 1
            level = kind.log_level
            if log.isEnabledFor(level) and (
                level >= logging.ERROR or worker.lines.allow(kind.name, level, worker.clock.now)
            ):
                log.log(
                    level,
                    "%s %s %s from %s: %s",
                    kind.name,
                    self.method or "-",
                    self.path or "-",
                    self.client_ip,
                    detail,
                    extra=self.log_ids(),
                )
        held = self.held
        if held is not None:  # an inFlightReq slot, given back whatever the outcome
            self.held = None
            for give_back in held:
                give_back()
        observers = self.observers
        if observers:
            self.t1 = monotonic()
            for observer in observers:
                observer.finish(self)
        down.exchange_done(self, close)

    def respond_local(
        self,
        status: int,
        body: bytes,
        content_type: bytes = b"text/plain; charset=utf-8",
        extra: list[bytes] | None = None,
    ) -> None:
        """An answer hopwire gives itself (/ping, /metrics, a redirection); ``extra``: more
        field lines, each ending in CRLF."""
        down = self.down
        close = down.closes(None, self.keep_alive, self.body_pending())
        self.status = status
        self.resp_bytes = len(body)
        self.resp_head = self.resp_complete = True
        self.out.append(
            simple_response(down.worker.clock, status, body, close, content_type, extra)
        )
        self.flush_down()
        self.end(None, close)

    def respond_error(
        self,
        kind: ErrorKind,
        detail: str,
        body: bytes | None = None,
        content_type: bytes = b"text/plain; charset=utf-8",
    ) -> None:
        """Answer an error with its status; after the response head, cut the response short.
        ``body``: the answer's body (default: the kind's name), as a middleware gives it."""
        if self.done:
            return
        down = self.down
        if self.head_sent:
            self.out.clear()
            down.close()  # a truncated response must never look complete (RELIABILITY 23)
            self.end(kind, True, detail)
            return
        self.out.clear()  # a response head not yet written is replaced by the error
        close = down.closes(kind, self.keep_alive, self.body_pending())
        self.status = kind.status
        self.resp_head = self.resp_complete = True
        if body is None:
            body = kind.name.encode() + b"\n"
        extra: list[bytes] | None = None
        trace = self.trace
        if trace is not None and trace.tracer.responds:
            extra = []
            trace.tracer.respond(self, extra, ())
        if grpc.is_grpc(self.kept):  # a gRPC status, not a page (logged with kind's status)
            self.grpc = grpc.status_of(kind)
            if close:
                extra = [*(extra or ()), CONN_CLOSE]
            self.resp_bytes = 0
            self.out.append(grpc.answer(kind, kind.name, extra))
        else:
            self.resp_bytes = len(body)
            self.out.append(
                simple_response(down.worker.clock, kind.status, body, close, content_type, extra)
            )
        self.flush_down()
        self.end(kind, close, detail)

    def reject(self, kind: ErrorKind, detail: str, parser: ParserView) -> None:
        """A request refused while it was parsed (it was never routed): answer, then close."""
        if self.done:
            self.down.close()
            return
        if not self.method:
            try:
                self.method = parser.get_method().decode("latin-1")
            except Exception:  # httptools raises when the request line was not parsed yet
                self.method = ""
        if not self.path_query and self.target:
            self.path_query = self.target[:1024]  # as received, for the log and the span
            self.path = self.path_query.partition(b"?")[0].decode("latin-1")
        self.keep_alive = False
        self.observe(self.down.ep.unrouted_observers)
        self.respond_error(kind, detail)

    def bad_response(self, conn: Upstream, detail: str) -> None:
        self.failed(errors.BAD_RESPONSE, f"{conn.pool.label}: {detail}")

    def upstream_lost(self, conn: Upstream, exc: Exception | None) -> None:
        """The attached backend connection closed (``conn.ex`` is already cleared)."""
        self.upstream = None
        assert self.server is not None
        self.server.inflight -= 1
        if self.done:
            return
        if not self.resp_head:
            self.failed(errors.UPSTREAM_CLOSED, f"{conn.pool.label} closed before responding")
        elif self.resp_to_close:
            self.response_complete(False)  # a close-delimited body ends at the close
        else:
            self.failed(errors.UPSTREAM_TRUNCATED, "backend closed mid-response")

    # -- a failed attempt --------------------------------------------------------------------

    def failed(self, kind: ErrorKind, detail: str) -> None:
        """The one decision for a failed backend attempt, whatever failed (the dial, the
        connection, the response, a deadline): tried again, answered, or cut short.

        Before any response: the keep-alive race (a pooled connection the backend had
        closed) is tried once more on a fresh connection (RELIABILITY 25), and a network
        failure as often as the retry middleware's policy says; else the client is answered
        with the kind's status.  After the response head went out, the response is cut short
        (RELIABILITY 23)."""
        if self.done:
            return
        if not self.resp_head:
            if errors.may_retry(
                kind,
                self.reused,
                self.attempts,
                self.method in IDEMPOTENT and not self.has_body,
                bool(self.out),
            ):
                self.end_attempt(kind.name)
                assert self.server is not None
                log.info(
                    "retrying %s %s: pooled connection to %s was closed",
                    self.method,
                    self.path,
                    self.server.pool.label,
                    extra=self.log_ids(),
                )
                self.again(fresh=True)
                return
            retry = self.retry
            if kind.retry == errors.NETWORK and retry is not None:
                self.end_attempt(kind.name)
                if retry.on_error(self):
                    return  # the middleware calls again() when its backoff has passed
        self.respond_error(kind, detail)

    def again(self, fresh: bool = False) -> None:
        """The one place a new attempt starts (``failed`` decided it, or the retry
        middleware after a status it retries): what the last attempt left is reset and the
        request goes out again, over a fresh connection to the same server (``fresh``: the
        keep-alive race), else to the service's next pick."""
        if self.done:
            return
        assert self.route is not None
        self.down.worker.retries[self.route.target.service.name] += 1
        self.filters = None
        self.resp_head = self.resp_complete = False
        self.status = self.origin_status = 0
        self.deadline = 0.0
        if self.replay:
            self.up_out = [self.replay]
        if fresh:
            self.acquire(None)
        else:
            self.forward()

    def abort(self, kind: ErrorKind, detail: str) -> None:
        """The client's stream broke mid-request: nothing more may reach the backend."""
        self.up_out.clear()
        self.respond_error(kind, detail)

    def client_lost(self) -> None:
        """The client connection closed before the exchange ended."""
        if not self.resp_head:
            self.status = errors.CLIENT_CLOSED.status
        self.end(errors.CLIENT_CLOSED, True, "the client went away")

    def stalled(self, client_full: bool) -> None:
        """Nothing moved either way for the stall bound while no other deadline covered the
        exchange (``Downstream.watch``): the backend sent nothing (504, or a cut-short
        response), or the client read nothing of what was written (``client_full``)."""
        if client_full and self.head_sent:
            self.drop(errors.WRITE_TIMEOUT, "the client read nothing for the stall bound")
        elif not self.resp_head:
            self.failed(errors.RESPONSE_TIMEOUT, "nothing from the backend in time")
        else:
            self.abort(errors.RESPONSE_TIMEOUT, "the backend stopped sending mid-response")

    def timed_out(self) -> None:
        """``deadline`` passed: no response head in time, or the response write took too long."""
        self.deadline = 0.0
        if self.done:
            return
        if not self.resp_head:
            self.failed(errors.RESPONSE_TIMEOUT, "no response head before the deadline")
        elif self.head_sent:
            self.drop(errors.WRITE_TIMEOUT, "response not written within writeTimeout")
        else:
            self.abort(errors.WRITE_TIMEOUT, "response not written within writeTimeout")

    def drop(self, kind: ErrorKind, detail: str) -> None:
        """The client reads nothing: cut its connection without flushing what waits for it
        (a close would keep the socket, and the bytes, until the client read them)."""
        self.out.clear()
        self.up_out.clear()
        self.down.abort()
        self.end(kind, True, detail)
