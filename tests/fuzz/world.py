"""hopwire's request path in one process, with fake transports, for the fuzzers.

A real worker's entrypoint runtime (routing table, exchanges, metrics meter), a real
``Downstream`` per client connection and a real ``Upstream`` per backend connection; only the
transports are fake.  The backend answers each request head it receives with ``response``.
No loop runs and no socket is opened, so thousands of inputs go through per second.

``check`` holds the invariants every input must keep; a violation raises ``Violation`` (and an
exception escaping a protocol callback is a crash too).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import tempfile
from typing import Any

import h11

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-B: 1\r\n\r\nok"
# 5xx answers that name the client's fault (RFC 9110 §15.6.2, §15.6.6): an unknown transfer
# coding, an unsupported version (RELIABILITY 3, 9)
CLIENT_5XX = frozenset({501, 505})


class Violation(AssertionError):
    """An invariant of the request path does not hold for this input."""


class ErrorLog(logging.Handler):
    """Counts log records at ERROR and above (an ERROR line pages an operator)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class ClientTransport:
    def __init__(self, world: World):
        self.world = world
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.paused = False
        self.unwritten = 0  # what get_write_buffer_size says
        self.protocol: Any = None  # the protocol that took the connection over (h2c)

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.out += data

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.out += part

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return self.unwritten  # 0: every write is taken at once

    def abort(self) -> None:
        self.closed = self.aborted = True

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


class BackendTransport(ClientTransport):
    """What hopwire writes to one backend connection; answers each complete request head."""

    def __init__(self, world: World, conn: Any):
        super().__init__(world)
        self.conn = conn
        self.heads = 0
        self.answered = 0

    def write(self, data: bytes) -> None:
        if self.world.client is not None and self.world.client.closed:
            raise Violation("bytes forwarded after the client connection was closed")
        self.out += data
        self.world.forwarded += len(data)
        self.heads = self.out.count(b"\r\n\r\n")

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.write(part)


def catch_all(
    tracer: Any = None, stages: tuple[Any, Any] = ((), None), flags: tuple[str, ...] = ()
) -> tuple[Any, Any, Any]:
    """(entrypoint runtime, worker, service) of a default config with one catch-all router to
    one backend: the real per-generation objects, a metrics meter as the router's observer
    (chained after ``tracer`` when given), no socket and a loop that never runs.  Shared by
    the fuzz world and ``bench/callpath.py`` (``stages``: the router's middleware stages)."""
    from hopwire import worker as worker_mod
    from hopwire.routing import RouteTable
    from hopwire.telemetry import metrics
    from hopwire.telemetry.observer import observers_of

    # bench/instructions.py --ref REV runs this file against older server trees too: before
    # hopwire.checks and hopwire.entrypoints, the loader and the runtime types were elsewhere
    try:
        from hopwire.checks import load
        from hopwire.entrypoints import EntryPointRuntime, Observing, RouterTarget
    except ImportError:
        from hopwire.config import load
        from hopwire.worker import EntryPointRuntime, RouterTarget  # type: ignore[attr-defined,no-redef]

        Observing = None  # type: ignore[assignment,misc]

    config = load(
        None,
        [
            "--http.routers.all.rule=PathPrefix(`/`)",
            "--http.routers.all.service=be",
            "--http.services.be.loadBalancer.servers[0].url=http://127.0.0.1:9",
            *flags,
        ],
        {},
    )
    loop = asyncio.new_event_loop()  # never run: the Service and Pool want one
    atexit.register(loop.close)
    worker = worker_mod.Worker(config, {}, bytearray(8), 0, 0, [])  # type: ignore[arg-type]
    worker.loop = loop
    svc = config.http.services["be"]
    service = worker_mod.Service("be", svc.loadBalancer, config.serversTransport, loop, {})
    worker.services["be"] = service
    if not metrics.enabled():
        metrics.init(tempfile.mkdtemp(prefix="hopwire-inproc-"), metrics.default_buckets())
    worker.metrics = metrics.WorkerMetrics(config)
    ep_cfg = config.entryPoints["web"]
    if config.accessLog is not None:  # the bench's access-log settings
        from hopwire.telemetry.accesslog import Writer

        worker.access = Writer(config.accessLog, worker)
    made: Any = (
        worker if Observing is None else Observing(config, None, worker.metrics, worker.access)
    )
    meter = made.meter("web", "all", "be", None, ep_cfg.observability)
    logger = made.logger("web", "all", "be", None, ep_cfg.observability)
    observers = observers_of(tracer, meter, logger)
    target = RouterTarget("all", service, observers, *stages)
    table = RouteTable([("all", "PathPrefix(`/`)", 0, target)])
    ep = EntryPointRuntime("web", ep_cfg, table, False, worker)
    ep.traced = tracer is not None
    return ep, worker, service


class World:
    def __init__(self, response: bytes = OK_RESPONSE):
        from hopwire.http.upstream import Upstream

        self.response = response
        self.ep, self.worker, service = catch_all()
        self.exchanges: list[Any] = []
        make = self.ep.new_exchange

        def new_exchange(down: Any) -> Any:
            ex = make(down)
            self.exchanges.append(ex)
            return ex

        self.ep.new_exchange = new_exchange
        self.backends: list[BackendTransport] = []
        pool = service.servers[0].pool
        world = self

        class FreshPool(type(pool)):  # type: ignore[misc]
            """Every attempt gets a fresh backend connection: no dial, no loop."""

            __slots__ = ()

            def take(self) -> Any:
                conn = Upstream(self)
                transport = BackendTransport(world, conn)
                conn.connection_made(transport)
                world.backends.append(transport)
                return conn

        pool.__class__ = FreshPool
        self.pool = pool
        self.client: ClientTransport | None = None
        self.pooled: list[Any] = []
        self.forwarded = 0
        self.errors = ErrorLog()
        logging.getLogger("hopwire").addHandler(self.errors)
        logging.getLogger("hopwire").setLevel(logging.INFO)
        logging.getLogger("hopwire").propagate = False

    # -- one input ---------------------------------------------------------------------------

    def run(self, chunks: list[bytes], eof: bool) -> None:
        """One client connection: ``chunks`` as separate reads, then EOF or a reset."""
        from hopwire.http.downstream import Downstream

        self.exchanges = []
        self.backends = []
        self.forwarded = 0
        self.errors.records.clear()
        self.pool.idle.clear()
        down = Downstream(self.ep)
        client = ClientTransport(self)
        self.client = client
        down.connection_made(client)
        for chunk in chunks:
            if client.closed:
                break
            (client.protocol or down).data_received(chunk)
            if client.protocol is None:
                self.check_buffers(down)
            else:  # HTTP/2 writes once per turn of the loop (H2Connection.soon): one turn
                self.worker.loop.run_until_complete(asyncio.sleep(0))
            self.answer_backends()
        proto = client.protocol or down
        if eof and not client.closed and not proto.eof_received():
            client.closed = True
        self.pooled = [c for c in self.pool.idle if not c.closed]  # what hopwire would reuse
        proto.connection_lost(None)
        if client.protocol is not None:  # HTTP/2 (h2c)
            for backend in self.backends:
                if not backend.closed:
                    backend.conn.connection_lost(None)
            if self.errors.records:
                raise Violation(f"ERROR logged: {self.errors.records[0].getMessage()}")
            for backend in self.backends:  # what each backend got is one valid HTTP/1.1 request
                check_request(bytes(backend.out))
            return
        for backend in self.backends:
            if not backend.closed:
                backend.conn.connection_lost(None)
        self.check(client)

    def answer_backends(self) -> None:
        for backend in self.backends:
            while backend.answered < backend.heads and not backend.closed:
                backend.answered += 1
                backend.conn.data_received(self.response)

    def check_buffers(self, down: Any) -> None:
        from hopwire.http.flow import BUFFER_LIMIT

        ep = self.ep
        for ex in self.exchanges:
            if len(ex.target) > ep.max_line + 65536:
                raise Violation(f"request target held beyond the limit: {len(ex.target)}")
            if ex.head_size > ep.max_header_bytes + 65536:
                raise Violation(f"header section held beyond the limit: {ex.head_size}")
            held = sum(len(b) for b in ex.up_out)
            if ex.upstream is None and held > BUFFER_LIMIT + 65536:
                raise Violation(f"request body buffered beyond the limit: {held}")
        active = down.active
        if active is not None and active.upstream is not None and active.up_out:
            # the backend would wait for these bytes while the exchange waits for its answer
            raise Violation("request body held back from the attached backend after a read")

    # -- the invariants ------------------------------------------------------------------------

    def check(self, client: ClientTransport) -> None:
        if self.errors.records:
            record = self.errors.records[0]
            raise Violation(f"ERROR logged: {record.getMessage()}")
        # the exchanges that ended (one begun for an unknown method and replaced by its
        # re-parse never does), in order: each had an answer or the connection closed
        ended = [ex.method for ex in self.exchanges if ex.done or ex.resp_head]
        statuses = parse_responses(bytes(client.out), ended)
        reached = bool(self.backends)
        for status in statuses:
            if status in CLIENT_5XX:
                continue
            if status >= 500 and not reached:
                raise Violation(f"{status} for a request that never reached a backend")
            if status >= 500 and self.response is OK_RESPONSE:
                raise Violation(f"{status} although the backend answered well")

    def answered(self) -> list[Any]:
        return [ex for ex in self.exchanges if ex.resp_head]


def check_request(data: bytes) -> None:
    """``data`` (what one backend connection got) opens with a valid HTTP/1.1 request, as h11
    (strict) reads it; its body may be cut short (the stream was reset)."""
    h = h11.Connection(h11.SERVER)
    h.receive_data(data)
    try:
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return
    except h11.RemoteProtocolError as exc:
        raise Violation(f"an invalid request reached a backend ({exc}): {data[:300]!r}")


def parse_responses(data: bytes, methods: list[str]) -> list[int]:
    """Statuses of the responses in ``data``, parsed by h11 (strict) as answers to requests
    with ``methods``, in order; Violation when they do not parse."""
    h = h11.Connection(h11.CLIENT)
    statuses: list[int] = []
    h.receive_data(data)
    h.receive_data(b"")  # the connection ends after the data
    for method in methods:
        if h.our_state is not h11.IDLE:
            break
        h.send(h11.Request(method=method or "GET", target="/", headers=[("host", "x")]))
        h.send(h11.EndOfMessage())
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                if "without sending complete message body" in str(exc) or (
                    "ConnectionClosed" in str(exc) and "SEND_RESPONSE" in str(exc)
                ):
                    # a response cut short, or none yet when the connection ended: what was
                    # written is a valid prefix
                    return statuses
                raise Violation(f"a response h11 cannot parse: {exc} in {data[:300]!r}")
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return statuses
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                statuses.append(event.status_code)
            elif isinstance(event, h11.EndOfMessage):
                break
        if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
            break
        h.start_next_cycle()
    if h.their_state is h11.IDLE and h.trailing_data[0]:
        raise Violation(f"bytes after the last response: {h.trailing_data[0][:100]!r}")
    return statuses
