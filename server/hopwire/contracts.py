"""The contracts between the layers: ``Protocol`` classes only, no code.

A request is an *exchange*; a *connection protocol* (``hopwire.http.downstream`` for HTTP/1.1)
parses bytes into exchanges and carries their answers back; an *upstream* protocol
(``hopwire.http.upstream``) carries one attempt to a backend and calls the exchange back; the
*observers* (metrics, access log, tracing), the *matchers* (``hopwire.routing``) and the
*middlewares* see the exchange through a narrower view.  Each side is typed here, so that
mypy checks every call and write that crosses a layer, and a second connection protocol (one
that carries several exchanges on one connection) implements ``Connection`` for each of them.

The phases of an exchange, in order (``hopwire.proxy.Exchange``; the model is pingora's
``ProxyHttp`` phases):

    parsed(parser)        the head is complete: validated, framing decided.  Raises
                          ProxyError for a bad request (the connection answers and closes).
    start()               route: /ping, /metrics, the entrypoint's table, else 404.  The
                          observers of where it was routed get ``Observer.start``; the
                          route's request stages run in order (``Stage``: True = the stage
                          answered or holds the request; it calls ``resume`` to go on).
    forward()             pick a server, build the head, acquire a connection (idle or new).
    attach(conn)          the attempt starts: head and buffered body in one write.
    response_head/body/complete   the ``UpstreamHooks`` below, in that order.
    failed(kind, detail)  the one decision for a failed attempt: a new attempt (``again``:
                          the keep-alive race, or the retry middleware's policy), an answer
                          with the kind's status, or a response cut short.
    end(kind, close)      the one ending, exactly once: counter and log line, the backend
                          connection's release, ``Observer.finish``, then the connection's
                          ``exchange_done`` (close, or the next request).  Whether the
                          connection closes is ``Connection.closes``: the one close rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

from hopwire.errors import ErrorKind

Fields = list[tuple[bytes, bytes]]


# -- the worker and its entrypoints ---------------------------------------------------------


class Clock(Protocol):
    """Coarse time, refreshed by the worker's tick (``hopwire.http.wire.Clock``)."""

    now: float
    date: bytes


class LineBudget(Protocol):
    def allow(self, key: str, level: int, now: float) -> bool: ...


class WorkerState(Protocol):
    """The worker's state that the request path and the middlewares may use: the loop, the
    clock, whether it stops, and the plain counters it folds into metrics once a second."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def draining(self) -> bool: ...

    @property
    def drain_idle(self) -> float: ...

    @property
    def lines(self) -> LineBudget: ...

    @property
    def errors(self) -> MutableMapping[str, int]: ...

    @property
    def counters(self) -> MutableMapping[str, int]: ...

    @property
    def retries(self) -> MutableMapping[str, int]: ...

    @property
    def middleware_errors(self) -> MutableMapping[tuple[str, str], int]: ...

    @property
    def connections(self) -> set[Any]: ...

    @property
    def tls_errors(self) -> MutableMapping[tuple[str, str], int]: ...

    # what a generation's compilers read (middlewares, sinks, the metrics fold)
    @property
    def config(self) -> Any: ...

    @property
    def services(self) -> dict[str, Any]: ...

    @property
    def entrypoint_names(self) -> list[str]: ...

    @property
    def span_paths(self) -> list[str]: ...

    @property
    def side_pools(self) -> list[Any]: ...


class RouteTableView(Protocol):
    def match(self, ex: Any) -> Any: ...


class EntryPoint(Protocol):
    """One entrypoint of one config generation, every per-request setting resolved
    (``hopwire.entrypoints.EntryPointRuntime``)."""

    @property
    def name(self) -> str: ...

    @property
    def worker(self) -> WorkerState: ...

    @property
    def tls(self) -> bool: ...

    @property
    def scheme(self) -> bytes: ...

    @property
    def scheme_str(self) -> str: ...

    @property
    def default_port(self) -> bytes: ...

    @property
    def table(self) -> RouteTableView: ...

    @property
    def ping(self) -> bool: ...

    @property
    def metrics_page(self) -> Callable[[bytes], tuple[bytes, bytes]] | None: ...

    @property
    def internal_observers(self) -> tuple[Observer, ...]: ...

    @property
    def unrouted_observers(self) -> tuple[Observer, ...]: ...

    @property
    def denied(self) -> Any: ...

    @property
    def sanitize(self) -> bool: ...

    @property
    def traced(self) -> int: ...

    @property
    def read_timeout(self) -> float: ...

    @property
    def idle_timeout(self) -> float: ...

    @property
    def write_timeout(self) -> float: ...

    @property
    def stall_timeout(self) -> float: ...

    @property
    def max_requests(self) -> int: ...

    @property
    def max_line(self) -> int: ...

    @property
    def max_header_bytes(self) -> int: ...

    @property
    def max_fields(self) -> int: ...

    @property
    def new_exchange(self) -> Callable[[Any], Any]: ...

    def is_trusted(self, ip: str) -> bool: ...


# -- an exchange and its connection ---------------------------------------------------------


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def writelines(self, data: Sequence[bytes]) -> None: ...


class ReadFlow(Protocol):
    """Why reading is paused, as a bit set (``hopwire.http.flow.ReadFlow``)."""

    reasons: int

    def pause(self, reason: int) -> None: ...

    def resume(self, reason: int) -> None: ...


class Connection(Protocol):
    """What an exchange may use of the connection that carries it.  For HTTP/1.1 this is the
    connection itself (``Downstream``); HTTP/2 (``hopwire.http.h2``) gives each stream its own
    (``Stream``), which turns what the exchange writes (an HTTP/1.1 head, then the body) into
    HEADERS and DATA frames."""

    @property
    def version(self) -> str:
        """The HTTP version its requests came in ("1.1", "2"; an HTTP/1.0 request says so
        itself), for the spans' network.protocol.version."""
        ...

    @property
    def framed(self) -> bool:
        """True: the connection frames a body itself (HTTP/2's DATA); the exchange never
        chunks one of unknown length."""
        ...

    @property
    def worker(self) -> WorkerState: ...

    @property
    def ep(self) -> EntryPoint: ...

    @property
    def transport(self) -> Transport: ...

    @property
    def flow(self) -> ReadFlow: ...

    @property
    def client_ip(self) -> str: ...

    @property
    def client_ip_bytes(self) -> bytes: ...

    @property
    def client_port(self) -> int: ...

    @property
    def trusted(self) -> bool: ...

    @property
    def closed(self) -> bool: ...

    @property
    def slow(self) -> bool: ...

    @property
    def after_large(self) -> bool: ...

    @property
    def full(self) -> bool: ...

    @property
    def served(self) -> int: ...

    method_override: bytes | None
    fwd_host: bytes | None
    fwd_block: bytes
    writer: Callable[[], None] | None

    def tls_fields(self) -> tuple[str, str, str | None] | None: ...

    def closes(self, kind: ErrorKind | None, keep_alive: bool, body_pending: bool) -> bool:
        """The one close rule: whether the connection closes after this exchange's answer
        (``kind`` None: a normal one)."""
        ...

    def reading_for(self, conn: Any) -> None: ...

    def exchange_done(self, ex: Any, close: bool) -> None: ...

    def start_tunnel(self, upstream: Any) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class ParserView(Protocol):
    """What an exchange reads from the request parser (httptools.HttpRequestParser)."""

    def get_method(self) -> bytes: ...

    def get_http_version(self) -> str: ...


class ExchangeIn(Protocol):
    """What a connection protocol calls on an exchange, and the state it reads of it."""

    done: bool
    target: bytes
    headers: Fields
    head_size: int
    head_done: bool
    chunks: int
    framing: int
    client_eof: bool
    deadline: float
    continue_at: float
    up_out: list[bytes]
    resp_bytes: int
    method: str
    attempts: int

    @property
    def upstream(self) -> Any: ...

    @property
    def upgrade(self) -> bytes | None: ...

    @property
    def chunked(self) -> bool: ...

    def parsed(self, parser: ParserView) -> None: ...

    def start(self) -> None: ...

    def body(self, data: bytes) -> None: ...

    def body_pending(self) -> bool: ...

    def request_trailer(self, name: bytes, value: bytes) -> None: ...

    def request_complete(self) -> None: ...

    def flush_up(self) -> None: ...

    def continue_now(self) -> None: ...

    def timed_out(self) -> None: ...

    def stalled(self, client_full: bool) -> None: ...

    def client_lost(self) -> None: ...

    def abort(self, kind: Any, detail: str) -> None: ...

    def reject(self, kind: Any, detail: str, parser: ParserView) -> None: ...

    def tunnel_pending(self, rest: bytes) -> None: ...

    def observe(self, observers: tuple[Observer, ...]) -> None: ...


# -- the backend side -----------------------------------------------------------------------


class Pool(Protocol):
    """Keep-alive connections to one backend server (``hopwire.http.pool.Pool``)."""

    @property
    def label(self) -> str: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def response_header_timeout(self) -> float: ...

    @property
    def expect_continue_timeout(self) -> float: ...

    def take(self) -> Any: ...

    def put(self, conn: Any, now: float) -> None: ...

    def discard(self, conn: Any) -> None: ...

    async def connect(self) -> Any: ...


class Backend(Protocol):
    """What a client connection uses of the backend connection feeding it: reading paused
    and narrowed for a slow client, and, after a 101, the other end of the byte tunnel."""

    @property
    def flow(self) -> ReadFlow: ...

    @property
    def transport(self) -> Any: ...

    tunnel: Any

    def narrow(self) -> None: ...

    def half_close(self) -> None: ...

    def close(self) -> None: ...


class UpstreamHooks(Protocol):
    """What an upstream connection calls back on the exchange it carries (an ``Exchange``, or
    a middleware's own ``Call``), in order: interim responses, the head, body pieces, the end
    (or the upgrade), else one of the failures."""

    @property
    def method(self) -> str: ...

    @property
    def out(self) -> list[bytes]: ...

    @property
    def resp_complete(self) -> bool: ...

    @property
    def down(self) -> Any: ...

    def response_interim(self, status: int, conn: Any) -> None: ...

    def response_head(self, status: int, conn: Any) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None: ...

    def answer_within(self, seconds: float) -> None: ...

    def grpc_status(self, fields: list[tuple[bytes, bytes]]) -> None: ...

    def response_complete(self, upstream_keep_alive: bool) -> None: ...

    def response_upgraded(self, conn: Any, rest: bytes) -> None: ...

    def bad_response(self, conn: Any, detail: str) -> None: ...

    def upstream_lost(self, conn: Any, exc: Exception | None) -> None: ...

    def flush_down(self) -> None: ...


# -- what observers, matchers and middlewares see -------------------------------------------


class BodySink(Protocol):
    """Takes the request body instead of the backend (a middleware buffering it)."""

    def data(self, chunk: bytes) -> None: ...

    def complete(self) -> None: ...


class BodyFilter(Protocol):
    """A response on its way to the client: head, body pieces, end (the Exchange is the last
    one of a chain of them)."""

    def send_head(
        self, parts: list[bytes], cl: bytes | None, chunked: bool, headers: Fields
    ) -> None: ...

    def send_data(self, data: bytes) -> None: ...

    def send_end(self) -> None: ...


class RetryState(Protocol):
    """The retry middleware's policy for one request (``hopwire.middlewares.retry``): whether
    a status or a failed attempt is tried again; the exchange starts the new attempt."""

    def on_status(self, ex: ExchangeView, status: int) -> bool: ...

    def on_error(self, ex: ExchangeView) -> bool: ...


class Observer(Protocol):
    """What telemetry sees of an exchange.  Every method must return quickly and never raise.

    ``start(ex)`` is called once, when the exchange is handed to the observer of where it was
    routed (a router, an entrypoint's unrouted requests, the internal endpoints), which may be
    right before it ends (a request rejected while parsing).

    ``finish(ex)`` is called exactly once per exchange that was started, from its one ending
    (``Exchange.end``), whatever the outcome: response written, error answered, response cut
    short, client gone, tunnel established.
    """

    def start(self, ex: ExchangeView) -> None: ...

    def finish(self, ex: ExchangeView) -> None: ...


class ExchangeView(Protocol):
    """What observers, matchers and middlewares see of an exchange: the request as parsed,
    where it was routed, the answer so far, and the few fields a middleware may set (the
    attributes); the rest is read-only (the properties).  A new attempt, an answer and the
    ending are the exchange's own phases, called, never re-enacted from outside."""

    # the request, as parsed (hopwire.http.head.RequestHead); a middleware may rewrite these
    method: str
    authority: bytes
    path_query: bytes
    kept: Fields
    fwd: Mapping[bytes, bytes]
    chunked: bool
    cl: bytes | None
    # what middlewares and observers attach
    observers: tuple[Observer, ...]
    trace: Any
    timed: int
    held: list[Callable[[], object]] | None
    notes: dict[str, Any] | None
    sink: BodySink | None
    filters: BodyFilter | None
    retry: RetryState | None
    replay: bytes | None
    up_out: list[bytes]
    up_buffered: int
    origin_status: int
    status: int

    @property
    def down(self) -> Connection: ...

    @property
    def http10(self) -> bool: ...

    # a gRPC call's status as the metrics count it (set on gRPC calls only)
    grpc: int

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> bytes: ...

    @property
    def path(self) -> str: ...

    @property
    def query(self) -> str: ...

    @property
    def headers(self) -> Fields: ...

    @property
    def tfields(self) -> Fields | None: ...

    @property
    def has_body(self) -> bool: ...

    @property
    def expect_continue(self) -> bool: ...

    @property
    def upgrade(self) -> bytes | None: ...

    @property
    def client_ip(self) -> str: ...

    @property
    def route(self) -> Any: ...

    @property
    def server(self) -> Any: ...

    @property
    def done(self) -> bool: ...

    @property
    def attempts(self) -> int: ...

    @property
    def req_bytes(self) -> int: ...

    @property
    def req_complete(self) -> bool: ...

    @property
    def resp_bytes(self) -> int: ...

    @property
    def resp_head(self) -> bool: ...

    @property
    def resp_complete(self) -> bool: ...

    @property
    def error_type(self) -> str: ...

    @property
    def t0(self) -> float: ...

    @property
    def t1(self) -> float: ...

    @property
    def origin_t0(self) -> float: ...

    def resume(self, next_stage: int) -> None: ...

    def forward(self) -> None: ...

    def again(self) -> None: ...

    def respond_local(
        self,
        status: int,
        body: bytes,
        content_type: bytes = ...,
        extra: list[bytes] | None = None,
    ) -> None: ...

    def respond_error(
        self, kind: Any, detail: str, body: bytes | None = None, content_type: bytes = ...
    ) -> None: ...

    def send_head(
        self, parts: list[bytes], cl: bytes | None, up_chunked: bool, headers: Sequence[Any]
    ) -> None: ...

    def send_data(self, data: bytes) -> None: ...

    def send_end(self) -> None: ...

    def flush_down(self) -> None: ...

    def continue_now(self) -> None: ...

    def log_ids(self) -> dict[str, str] | None: ...


Stage = Callable[[Any], bool]
"""A middleware's request stage: True when it answered the request itself, or holds it (and
calls ``Exchange.resume`` with the next stage's index to go on)."""
