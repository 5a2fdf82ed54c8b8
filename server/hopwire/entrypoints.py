"""An entrypoint's runtime for one config generation, and the observers of what it routes.

``EntryPointRuntime`` is what a connection reads on every request (``hopwire.contracts.
EntryPoint``): its route tables, timeouts, limits and the observers of requests no router
takes.  ``RouterTarget`` is where a matched route leads.  ``Observing`` makes the observers
of one place (a router, the unrouted requests, the internal endpoints, a redirection):
tracing, metrics and the access log, each switched on or off there, in the one order the
exchange calls them (``observers_of``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hopwire.addresses import networks, within
from hopwire.balancer import Service
from hopwire.config import Config
from hopwire.config.schema import inherited, switched_on
from hopwire.contracts import Observer, Stage, WorkerState
from hopwire.http.path import ENCODED_CHARACTERS, denied_encodings
from hopwire.middlewares import expand, span_name
from hopwire.proxy import Exchange
from hopwire.routing import RouteTable
from hopwire.telemetry.accesslog import Writer, access_logger
from hopwire.telemetry.metrics import Meter, WorkerMetrics
from hopwire.telemetry.observer import observers_of
from hopwire.telemetry.propagation import Propagation
from hopwire.telemetry.tracing import Details, PropagatingTracer, SpanSink, Tracer, w3c_context


class RouterTarget:
    """What a matched route leads to: a service, or an answer hopwire gives itself."""

    __slots__ = ("name", "observers", "request", "response", "service")

    def __init__(
        self,
        name: str,
        service: Service | None,
        observers: tuple[Observer, ...],
        request: tuple[Stage, ...] = (),
        response: Any = None,
    ):
        self.name = name
        self.service = service
        self.observers = observers
        # the middlewares' stages (hopwire.middlewares); empty: today's request path
        self.request = request
        self.response = response


class EntryPointRuntime:
    """One entrypoint of one config generation, with every per-request setting resolved."""

    __slots__ = (
        "default_port",
        "denied",
        "http2",
        "idle_timeout",
        "insecure",
        "internal_observers",
        "max_fields",
        "max_header_bytes",
        "max_line",
        "max_requests",
        "metrics_page",
        "name",
        "new_exchange",
        "ping",
        "read_timeout",
        "sanitize",
        "scheme",
        "scheme_str",
        "stall_timeout",
        "table",
        "tls",
        "traced",
        "trusted",
        "unrouted_observers",
        "worker",
        "write_timeout",
    )

    def __init__(
        self,
        name: str,
        cfg: Any,
        table: RouteTable,
        ping: bool,
        worker: WorkerState,
        tls: bool = False,
    ):
        timeouts = cfg.transport.respondingTimeouts
        self.name = name
        # the connections it serves: TLS ones (a TLS entrypoint's second runtime) or plain
        self.tls = tls
        self.scheme_str = "https" if tls else "http"
        self.scheme = self.scheme_str.encode()  # X-Forwarded-Proto
        self.default_port = b"443" if tls else b"80"  # X-Forwarded-Port without a Host port
        self.worker = worker
        self.table = table
        self.ping = ping
        self.read_timeout = timeouts.readTimeout
        self.idle_timeout = timeouts.idleTimeout
        self.write_timeout = timeouts.writeTimeout
        # when no other deadline covers a connection, nothing moving either way for this long
        # ends it (Downstream.watch): idleTimeout, or readTimeout when idleTimeout is 0
        self.stall_timeout = timeouts.idleTimeout or timeouts.readTimeout
        self.max_requests = cfg.transport.keepAliveMaxRequests
        self.max_line = cfg.http.maxRequestLineBytes
        self.max_header_bytes = cfg.http.maxHeaderBytes
        self.max_fields = cfg.http.maxHeaderFields
        self.sanitize = cfg.http.sanitizePath
        self.http2 = cfg.http2  # the HTTP/2 settings (hopwire.http.h2)
        # a tracer observes some of its requests (set with the observers): the trace context
        # the request scan sets apart for it (hopwire.http.head's W3C | B3 mask), else 0
        self.traced = 0
        encoded = cfg.http.encodedCharacters
        self.denied = denied_encodings(
            {name: getattr(encoded, name) for name in ENCODED_CHARACTERS}
        )
        self.insecure = cfg.forwardedHeaders.insecure
        self.trusted = networks(cfg.forwardedHeaders.trustedIPs)
        self.new_exchange = Exchange
        self.unrouted_observers: tuple[Any, ...] = ()  # requests no router matched (404)
        self.internal_observers: tuple[Any, ...] = ()  # /ping and /metrics, with addInternals
        self.metrics_page: Any = None  # serves /metrics here when set

    def is_trusted(self, ip: str) -> bool:
        return self.insecure or within(ip, self.trusted)


class Observing:
    """The observers of one config generation's routers and entrypoints, made from the
    worker's sinks (span sink, metrics, access-log writer: None when off)."""

    def __init__(
        self,
        config: Config,
        sink: SpanSink | None,
        metrics: WorkerMetrics | None,
        access: Writer | None,
    ):
        self.config = config
        self.sink = sink
        self.metrics = metrics
        self.access = access

    def observers(
        self,
        ep_name: str,
        name: str,
        service: str | None,
        router: Any,
        ep: Any,
        scheme: str = "http",
        details: Details | None = None,
        only: tuple[bool, bool, bool] = (True, True, True),
    ) -> tuple[Observer, ...]:
        """The observers of router ``name`` (empty for an entrypoint's own requests) on
        ``ep_name``, in the exchange's order; ``router``/``ep``: the Observability sections
        (or None); ``only``: which of tracing, metrics and the access log may observe here at
        all (the internal endpoints': their ``addInternals``)."""
        return observers_of(
            self.tracer(ep_name, name, router, ep, details) if only[0] else None,
            self.meter(ep_name, name or None, service, router, ep, scheme) if only[1] else None,
            self.logger(ep_name, name, service or "", router, ep) if only[2] else None,
        )

    def tracer(
        self, ep_name: str, name: str, router: Any, ep: Any, details: Details | None = None
    ) -> Tracer | None:
        """The tracer of a router on entrypoint ``ep_name`` (``router``/``ep``: the
        Observability sections, or None); ``details``: its detailed spans, when its
        traceVerbosity is detailed."""
        tracing = self.config.tracing
        if tracing is None or self.sink is None or not switched_on("tracing", router, ep):
            return None
        args = (
            name,
            inherited("sampleRate", router, ep, tracing.sampleRate),
            self.sink,
            tracing.capturedRequestHeaders,
            tracing.capturedResponseHeaders,
            tracing.traceResponse,
            details,
            tracing.keep.errors,
            tracing.keep.slowerThan,
        )
        context = self.config.entryPoints[ep_name].traceContext
        if Propagation.needed(tracing.propagators, context):
            propagation = Propagation(tracing.propagators, context, w3c_context)
            return PropagatingTracer(propagation, *args)
        return Tracer(*args)

    def details(
        self, name: str, router: Any, middlewares: Sequence[str], ep: Any
    ) -> Details | None:
        """What a router's detailed spans name, when its traceVerbosity is detailed."""
        if inherited("traceVerbosity", router.observability, ep, "minimal") != "detailed":
            return None
        defined = self.config.http.middlewares
        return Details(
            name,
            router.service,
            router.rule,
            [(span_name(defined[m]), m) for m in expand(middlewares, defined)],
        )

    def meter(
        self,
        ep_name: str,
        router_name: str | None,
        service: str | None,
        router: Any,
        ep: Any,
        scheme: str = "http",
    ) -> Meter | None:
        """``scheme``: of the connections the router answers (url.scheme of the OTLP
        http.server.request.duration)."""
        if self.metrics is None or not switched_on("metrics", router, ep):
            return None
        return self.metrics.meter(ep_name, router_name, service, scheme)

    def logger(self, ep_name: str, router_name: str, service: str, router: Any, ep: Any) -> Any:
        """A router's access-log observer (accesslog.access_logger), or None."""
        if self.access is None or not switched_on("accessLogs", router, ep):
            return None
        return access_logger(self.access, ep_name, router_name, service)
