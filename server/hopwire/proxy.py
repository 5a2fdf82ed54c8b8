"""One proxied request, as named phases on one ``__slots__`` object.

    parse    ``parsed``           validate the head (RELIABILITY 1-14), decide framing
    route    ``start``            compiled router table of the entrypoint, or /ping
    acquire  ``acquire``/``dial`` LIFO idle connection, else dial
    send     ``attach``           request head (+ any buffered body) in one write
    stream   ``body``/``response_*``  both directions, flow control on both transports
    finish   ``finish``           the one place that ends an exchange (observer, counters)

Failures go through ``fail_upstream``/``respond_error`` with a kind from ``hopwire.errors``.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from hopwire import errors
from hopwire.errors import ErrorKind, ProxyError
from hopwire.http.flow import BUFFER_LIMIT, BUFFERING, PEER_FULL
from hopwire.http.wire import (
    CHUNKED,
    CONN_CLOSE,
    CONN_KEEP_ALIVE,
    CRLF,
    FORWARDED,
    HOP_BY_HOP,
    IDEMPOTENT,
    LAST_CHUNK,
    simple_response,
    status_line,
)

log = logging.getLogger("hopwire.proxy")

_SPECIAL = HOP_BY_HOP | FORWARDED | {b"host", b"content-length", b"expect"}
# RFC 9110 §7.2 / RFC 3986 §3.2.2: uri-host [ ":" port ]
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]*)?")
_CONN_KNOWN = frozenset({b"close", b"keep-alive", b"upgrade", b""})

PASS = 0  # response body bytes go to the client as they are
CHUNK = 1  # response body is re-framed as chunked for an HTTP/1.1 client


def _split_authority(authority: bytes) -> tuple[str, bytes]:
    """(host in lower case, port) of a Host value or absolute-form authority; port 80 if none."""
    text = authority.decode("latin-1").lower()
    if text.startswith("["):
        end = text.find("]") + 1
        host, rest = text[:end], text[end:]
    else:
        host, _, rest = text.partition(":")
        rest = ":" + rest if rest else ""
    port = rest[1:]
    return host, port.encode() if port.isdigit() else b"80"


class Exchange:
    __slots__ = (
        "attempts",
        "authority",
        "chunked",
        "chunks",
        "cl",
        "client_eof",
        "client_ip",
        "close_after",
        "deadline",
        "done",
        "down",
        "error_type",
        "framing",
        "fwd",
        "has_body",
        "head_done",
        "head_size",
        "headers",
        "host",
        "http10",
        "keep_alive",
        "kept",
        "method",
        "observer",
        "origin_duration",
        "origin_status",
        "origin_t0",
        "out",
        "path",
        "path_query",
        "port",
        "query",
        "req_bytes",
        "req_complete",
        "resp_bytes",
        "resp_complete",
        "resp_head",
        "resp_mode",
        "resp_to_close",
        "reused",
        "route",
        "server",
        "status",
        "t0",
        "target",
        "timed",
        "trace",
        "tunnel_rest",
        "up_buffered",
        "up_head",
        "up_out",
        "upgrade",
        "upstream",
        "wall",
    )

    def __init__(self, down: Any):
        self.down = down
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.head_done = False
        self.req_complete = False
        self.chunked = False
        self.chunks = 0
        self.framing = 0
        self.done = False
        self.client_eof = False
        self.upstream: Any = None
        self.up_out: list[bytes] = []
        self.up_buffered = 0
        self.out: list[bytes] = []
        self.resp_head = False
        self.resp_complete = False
        self.deadline = 0.0
        self.attempts = 0
        self.route: Any = None
        self.upgrade: bytes | None = None
        self.tunnel_rest = b""
        self.observer: Any = None  # chosen once per router; None when nothing observes
        self.trace: Any = None  # set by a tracing observer
        self.status = 0
        self.error_type = ""
        self.req_bytes = 0  # body bytes, for metrics
        self.resp_bytes = 0
        self.timed = False  # set by the access log: time the backend exchange
        self.origin_status = 0
        self.origin_duration = 0.0
        self.client_ip = down.client_ip

    # -- parse -------------------------------------------------------------------------------

    def parsed(self, parser: Any) -> None:
        """Validate the head and decide framing; raise ProxyError for a bad request."""
        down = self.down
        version = parser.get_http_version()
        if version == "1.1":
            self.http10 = False
        elif version == "1.0":
            self.http10 = True
        elif version == "0.9":
            raise ProxyError(errors.BAD_REQUEST, "HTTP/0.9 request line")
        else:
            raise ProxyError(errors.VERSION_NOT_SUPPORTED, f"HTTP/{version}")
        override = down.method_override
        if override is not None:
            down.method_override = None
            method = override.decode("latin-1")
        else:
            method = parser.get_method().decode("latin-1")
        self.method = method
        if method == "CONNECT":
            raise ProxyError(errors.METHOD_NOT_ALLOWED, "CONNECT to a reverse proxy")
        target = self.target
        authority = None
        if target[:1] == b"/":
            path_query = target
        elif target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
            # absolute-form: its authority wins over Host (RFC 9112 §3.2.2)
            rest = target.partition(b"://")[2]
            cut = len(rest)
            for sep in (b"/", b"?"):
                at = rest.find(sep)
                if 0 <= at < cut:
                    cut = at
            authority, path_query = rest[:cut], rest[cut:]
            if path_query[:1] != b"/":
                path_query = b"/" + path_query
            if not authority or not _HOST.fullmatch(authority) or b"@" in authority:
                raise ProxyError(errors.BAD_REQUEST, "invalid authority in absolute-form target")
        elif target == b"*" and method == "OPTIONS":
            path_query = target
        else:
            raise ProxyError(errors.BAD_REQUEST, "invalid request target")

        kept: list[tuple[bytes, bytes]] = []
        host: bytes | None = None
        hosts = 0
        tokens: list[bytes] = []
        te: bytes | None = None
        cl: bytes | None = None
        upgrade: bytes | None = None
        fwd: dict[bytes, bytes] = {}
        for name, value in self.headers:
            lname = name.lower()
            if lname not in _SPECIAL:
                kept.append((name, value))
            elif lname == b"host":
                hosts += 1
                host = value
            elif lname == b"connection":
                tokens.extend(t.strip() for t in value.lower().split(b","))
            elif lname == b"content-length":
                cl = value
            elif lname == b"transfer-encoding":
                te = value if te is None else te + b"," + value
            elif lname == b"expect":
                if value.lower() != b"100-continue":
                    raise ProxyError(errors.EXPECTATION_FAILED, f"expectation {value!r}")
                if not self.http10:  # RFC 9110 §10.1.1: ignore 100-continue from HTTP/1.0
                    kept.append((name, value))
            elif lname == b"upgrade":
                upgrade = value
            elif lname in FORWARDED and down.trusted:
                fwd[lname] = value
            # every other hop-by-hop field is dropped (RFC 9110 §7.6.1)
        if hosts > 1:
            raise ProxyError(errors.BAD_REQUEST, "more than one Host field")
        if host is None:
            if not self.http10 and authority is None:
                raise ProxyError(errors.BAD_REQUEST, "HTTP/1.1 request without Host")
        elif not _HOST.fullmatch(host):
            raise ProxyError(errors.BAD_REQUEST, f"invalid Host {host[:64]!r}")
        if authority is not None:
            host = authority
        if te is not None:
            if self.http10:
                raise ProxyError(errors.BAD_REQUEST, "Transfer-Encoding in an HTTP/1.0 request")
            codings = [c.strip().lower() for c in te.split(b",")]
            if any(c != b"chunked" for c in codings):
                raise ProxyError(errors.NOT_IMPLEMENTED, f"transfer coding {te[:64]!r}")
            if len(codings) != 1:
                raise ProxyError(errors.BAD_REQUEST, "chunked applied more than once")
            self.chunked = True
        extra = [t for t in tokens if t not in _CONN_KNOWN]
        if extra:
            named = frozenset(extra)
            kept = [(n, v) for n, v in kept if n.lower() not in named]
            fwd = {k: v for k, v in fwd.items() if k not in named}
        if self.http10:
            self.keep_alive = b"keep-alive" in tokens
        else:
            self.keep_alive = b"close" not in tokens
        if upgrade is not None and b"upgrade" in tokens and not self.http10:
            self.upgrade = upgrade
            self.keep_alive = False  # after an upgrade the connection is a tunnel or closes
        self.cl = cl
        self.has_body = self.chunked or (cl is not None and cl != b"0")
        self.kept = kept
        self.fwd = fwd
        self.authority = host or b""
        self.host, self.port = _split_authority(host) if host else ("", b"80")
        self.path_query = path_query
        path, _, query = path_query.partition(b"?")
        self.path = path.decode("latin-1")
        self.query = query.decode("latin-1")

    # -- route -------------------------------------------------------------------------------

    def start(self) -> None:
        down = self.down
        ep = down.ep
        if ep.metrics_page and self.path == "/metrics":
            self.observe(ep.internal_observer)  # only with addInternals
            accept = b""
            for name, value in self.kept:
                if name.lower() == b"accept":
                    accept = value
            body, content_type = ep.metrics_page(accept)
            self.respond_local(200, body, content_type)
            return
        if ep.ping and self.path == "/ping":
            stopping = down.worker.stopping
            self.observe(ep.internal_observer)  # only with addInternals
            self.respond_local(
                503 if stopping else 200, b"Service Unavailable" if stopping else b"OK"
            )
            return
        route = ep.table.match(self)
        if route is None:
            self.observe(ep.unrouted_observer)
            self.respond_error(errors.NO_ROUTE, f"no router for {self.host}{self.path}")
            return
        self.route = route
        self.observe(route.target.observer)
        service = route.target.service
        server = service.pick()
        if server is None:
            self.respond_error(errors.NO_SERVER, f"service {service.name}: no healthy server")
            return
        self.server = server
        self.up_head = self.build_head(service, server)
        self.acquire(server.pool.take())

    def observe(self, observer: Any) -> None:
        """Hand the exchange to the observer chosen for where it was routed (None: nothing)."""
        if observer is not None:
            self.observer = observer
            observer.start(self)

    def observed(self) -> None:
        """The exchange has ended, however: its observer sees it exactly once."""
        observer = self.observer
        if observer is not None:
            observer.finish(self)

    def build_head(self, service: Any, server: Any) -> bytes:
        down = self.down
        fwd = self.fwd
        parts = [
            self.method.encode("latin-1"),
            b" ",
            self.path_query,
            b" HTTP/1.1\r\nhost: ",
            self.authority if service.pass_host and self.authority else server.host_header,
            CRLF,
        ]
        for name, value in self.kept:
            parts += (name, b": ", value, CRLF)
        ip = down.client_ip_bytes
        xff = fwd.get(b"x-forwarded-for")
        authority = self.authority
        parts += (
            b"x-forwarded-for: ",
            xff + b", " + ip if xff else ip,
            CRLF,
            b"x-forwarded-proto: ",
            fwd.get(b"x-forwarded-proto", b"http"),
            CRLF,
            b"x-forwarded-host: ",
            fwd.get(b"x-forwarded-host", authority),
            CRLF,
            b"x-forwarded-port: ",
            fwd.get(b"x-forwarded-port", self.port),
            CRLF,
            b"x-real-ip: ",
            fwd.get(b"x-real-ip", ip),
            CRLF,
        )
        if self.chunked:
            parts.append(CHUNKED)
        elif self.cl is not None:
            parts += (b"content-length: ", self.cl, CRLF)
        if self.upgrade is not None:
            parts += (b"upgrade: ", self.upgrade, b"\r\nconnection: upgrade\r\n")
        if self.trace is not None:
            parts.append(self.trace.header())
        parts.append(CRLF)
        return b"".join(parts)

    # -- acquire and send ----------------------------------------------------------------------

    def acquire(self, conn: Any) -> None:
        trace = self.trace
        if trace is not None:
            self.begin_attempt(trace)
        if conn is None:
            self.reused = False
            self.down.worker.loop.create_task(self.dial())
        else:
            self.reused = True
            self.attach(conn)

    def begin_attempt(self, trace: Any) -> None:
        """A CLIENT span per attempt; a retry gets a new span id, so the head is rebuilt."""
        server = self.server
        if trace.begin_attempt(
            server.url, self.path, self.query, server.pool.host, server.pool.port
        ):
            self.up_head = self.build_head(self.route.target.service, server)

    def end_attempt(self, error: str) -> None:
        trace = self.trace
        if trace is not None:
            trace.end_attempt(self.status if self.resp_head else 0, error)

    def log_ids(self) -> dict[str, str] | None:
        """trace_id/span_id for log lines written while a sampled request is in scope."""
        trace = self.trace
        return trace.ids() if trace is not None and trace.sampled else None

    async def dial(self) -> None:
        pool = self.server.pool
        try:
            conn = await pool.connect()
        except TimeoutError:
            self.fail_upstream(errors.CONNECT_TIMEOUT, f"dial {pool.label} timed out")
            return
        except OSError as exc:
            self.fail_upstream(errors.CONNECT_FAILED, f"dial {pool.label}: {exc.strerror or exc}")
            return
        if self.done:
            pool.put(conn, self.down.worker.clock.now)
            return
        self.attach(conn)

    def attach(self, conn: Any) -> None:
        down = self.down
        self.upstream = conn
        conn.ex = self
        self.server.inflight += 1
        self.attempts += 1
        if self.timed and self.attempts == 1:
            self.origin_t0 = time.monotonic()
        timeout = conn.pool.response_header_timeout
        if timeout:
            self.deadline = down.worker.clock.now + timeout
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

    def body(self, data: bytes) -> None:
        if self.done:
            return
        self.req_bytes += len(data)
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
        if self.chunked and not self.done:
            self.up_out.append(LAST_CHUNK)  # trailers are dropped (RFC 9112 §7.1.2)

    def flush_up(self) -> None:
        conn = self.upstream
        if conn is not None and self.up_out:
            conn.transport.write(b"".join(self.up_out))
            self.up_out.clear()

    # -- responses -------------------------------------------------------------------------

    def response_interim(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        if self.http10 or self.resp_head:
            return  # RFC 9110 §15.2: no 1xx to an HTTP/1.0 client
        parts = [status_line(status, reason)]
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                parts += (name, b": ", value, CRLF)
        parts.append(CRLF)
        self.out.append(b"".join(parts))

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        down = self.down
        if status == 101:
            return  # handled by response_upgraded once the parser stops
        self.resp_head = True
        self.status = self.origin_status = status
        self.deadline = 0.0
        parts = [status_line(status, reason)]
        cl = None
        up_chunked = False
        tokens = None
        for name, value in headers:
            lname = name.lower()
            if lname in HOP_BY_HOP:
                if lname == b"connection":
                    tokens = [t.strip() for t in value.lower().split(b",")]
                elif lname == b"transfer-encoding":
                    up_chunked = True
                continue
            if lname == b"content-length":
                cl = value
            parts += (name, b": ", value, CRLF)
        if tokens is not None:
            extra = frozenset(t for t in tokens if t not in _CONN_KNOWN)
            if extra:
                parts = [parts[0]]
                for name, value in headers:
                    lname = name.lower()
                    if lname not in HOP_BY_HOP and lname not in extra:
                        parts += (name, b": ", value, CRLF)
        ep = down.ep
        close = (
            not self.keep_alive
            or down.worker.draining
            or self.body_pending()
            or (ep.max_requests and down.served + 1 >= ep.max_requests)
        )
        no_body = self.method == "HEAD" or status == 204 or status == 304
        self.resp_to_close = not no_body and cl is None and not up_chunked
        if no_body or cl is not None:
            self.resp_mode = PASS
        elif self.http10:
            self.resp_mode = PASS  # close-delimited: never chunked to HTTP/1.0 (RFC 9112 §7.1)
            close = True
        else:
            self.resp_mode = CHUNK
            parts.append(CHUNKED)
        self.close_after = close
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
        self.resp_bytes += len(data)
        if self.resp_mode == CHUNK:
            self.out += (b"%x\r\n" % len(data), data, CRLF)
        else:
            self.out.append(data)

    def response_complete(self, upstream_keep_alive: bool) -> None:
        self.resp_complete = True
        if self.timed:
            self.origin_duration = time.monotonic() - self.origin_t0
        if self.resp_mode == CHUNK:
            self.out.append(LAST_CHUNK)
        self.flush_down()
        conn = self.upstream
        if conn is not None:
            self.end_attempt("")
            self.release(conn, upstream_keep_alive and self.req_complete and not self.up_out)
        self.finish(self.close_after)

    def flush_down(self) -> None:
        out = self.out
        if out:
            down = self.down
            if not down.closed:
                down.transport.writelines(out)
            out.clear()

    def release(self, conn: Any, reuse: bool) -> None:
        self.upstream = None
        conn.ex = None
        self.server.inflight -= 1
        if reuse:
            # the last write to a slow client may have paused this connection's reading; an
            # idle pooled connection must read (to notice the backend closing it)
            conn.flow.resume(PEER_FULL)
            conn.pool.put(conn, self.down.worker.clock.now)
        else:
            conn.close()

    def response_upgraded(self, conn: Any, rest: bytes) -> None:
        """The backend answered 101: relay it and turn both connections into a byte tunnel."""
        down = self.down
        if self.upgrade is None:
            self.bad_response(conn, "101 Switching Protocols without an Upgrade request")
            return
        parts = [status_line(101)]
        upgrade = b"websocket"
        for name, value in conn.headers:
            lname = name.lower()
            if lname == b"upgrade":
                upgrade = value
            elif lname not in HOP_BY_HOP:
                parts += (name, b": ", value, CRLF)
        parts += (b"upgrade: ", upgrade, b"\r\nconnection: upgrade\r\n\r\n", rest)
        self.resp_head = self.resp_complete = True
        self.status = 101
        self.end_attempt("")
        self.deadline = 0.0
        self.upstream = None
        conn.ex = None
        self.server.inflight -= 1
        self.done = True
        down.transport.write(b"".join(parts))
        conn.tunnel = down
        down.start_tunnel(conn)
        if self.tunnel_rest:
            conn.transport.write(self.tunnel_rest)
        down.active = None
        down.served += 1
        self.observed()

    def tunnel_pending(self, rest: bytes) -> None:
        self.tunnel_rest = rest

    # -- finish and failures -------------------------------------------------------------------

    def finish(self, close: bool) -> None:
        if self.done:
            return
        self.done = True
        self.observed()
        self.down.exchange_done(self, close)

    def respond_local(
        self, status: int, body: bytes, content_type: bytes = b"text/plain; charset=utf-8"
    ) -> None:
        down = self.down
        close = not self.keep_alive or self.body_pending() or down.worker.draining
        self.status = status
        self.resp_bytes = len(body)
        self.resp_head = self.resp_complete = True
        self.out.append(simple_response(down.worker.clock, status, body, close, content_type))
        self.flush_down()
        self.finish(close)

    def respond_error(self, kind: ErrorKind, detail: str) -> None:
        down = self.down
        level = logging.WARNING if kind.log_level == "WARN" else getattr(logging, kind.log_level)
        log.log(
            level, "%s %s %s: %s", kind.name, self.method, self.path, detail, extra=self.log_ids()
        )
        down.worker.count(kind.name)
        if self.resp_head:
            self.out.clear()
            self.done = True
            down.close()  # a truncated response must never look complete (RELIABILITY 23)
            down.exchange_done(self, True)
            return
        self.status = kind.status
        self.error_type = kind.name
        close = (
            not kind.keep_alive
            or not self.keep_alive
            or self.body_pending()
            or down.worker.draining
        )
        self.resp_head = self.resp_complete = True
        body = kind.name.encode() + b"\n"
        self.resp_bytes = len(body)
        self.out.append(simple_response(down.worker.clock, kind.status, body, close))
        self.flush_down()
        self.finish(close)

    def fail_upstream(self, kind: ErrorKind, detail: str) -> None:
        self.end_attempt(kind.name)
        conn = self.upstream
        if conn is not None:
            self.release(conn, False)
        if not self.done:
            self.respond_error(kind, detail)

    def bad_response(self, conn: Any, detail: str) -> None:
        self.fail_upstream(errors.BAD_RESPONSE, f"{conn.pool.label}: {detail}")

    def upstream_lost(self, conn: Any, exc: Exception | None) -> None:
        """The attached backend connection closed (``conn.ex`` is already cleared)."""
        self.upstream = None
        self.server.inflight -= 1
        if self.done:
            return
        self.end_attempt("" if self.resp_head and self.resp_to_close else "upstream_closed")
        if self.resp_head:
            if self.resp_to_close:
                self.response_complete(False)  # a close-delimited body ends at the close
            else:
                self.respond_error(errors.UPSTREAM_CLOSED, "backend closed mid-response")
            return
        if (
            self.reused
            and self.attempts == 1
            and not self.has_body
            and self.method in IDEMPOTENT
            and not self.out
        ):
            # The keep-alive race: a pooled connection the backend had closed.  Retry once on
            # a fresh connection (RELIABILITY 25).
            self.down.worker.retries[self.route.target.service.name] += 1
            log.info(
                "retrying %s %s: pooled connection to %s was closed",
                self.method,
                self.path,
                conn.pool.label,
                extra=self.log_ids(),
            )
            self.acquire(None)
            return
        self.respond_error(errors.UPSTREAM_CLOSED, f"{conn.pool.label} closed before responding")

    def abort(self, kind: ErrorKind, detail: str) -> None:
        """The client's stream broke mid-request: nothing more may reach the backend."""
        self.up_out.clear()
        self.end_attempt(kind.name)
        conn = self.upstream
        if conn is not None:
            self.release(conn, False)
        if not self.done:
            self.respond_error(kind, detail)

    def client_lost(self) -> None:
        down = self.down
        down.worker.count("client_aborts")
        log.info(
            "client %s went away during %s %s",
            down.client_ip,
            self.method,
            self.path,
            extra=self.log_ids(),
        )
        self.end_attempt("client_closed")
        self.error_type = "client_closed"
        conn = self.upstream
        if conn is not None:
            self.release(conn, False)  # cancelled, never returned to the pool (RELIABILITY 17)
        self.done = True
        self.observed()

    def timed_out(self) -> None:
        """``deadline`` passed: no response head in time, or the response write took too long."""
        self.deadline = 0.0
        if self.done:
            return
        if not self.resp_head:
            self.fail_upstream(errors.RESPONSE_TIMEOUT, "no response head before the deadline")
        else:
            self.abort(errors.RESPONSE_TIMEOUT, "response write timeout")
