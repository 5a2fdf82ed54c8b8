"""The configuration schema: one set of frozen dataclasses.

Every field carries its default, its documentation and how to check it (``setting``); the
loader, the validator and the generated reference all walk these classes.  Names and meanings
follow Traefik's static and dynamic configuration so that a Traefik user's file reads the same.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hopwire.config.values import (
    DURATION,
    REQUIRED,
    check_address,
    check_cidr,
    check_field_name,
    check_host_port,
    check_http_url,
    check_propagator,
    check_rate,
    check_server_url,
    check_status_range,
    check_status_ranges,
    not_negative,
    one_of,
    positive,
    status_code,
)


def setting(default: Any, doc: str, kind: str | None = None, check: Any = None) -> Any:
    """Declare one config field: its default, its documentation and how to check it."""
    meta = {"doc": doc, "kind": kind, "check": check}
    if isinstance(default, dict):
        return field(default_factory=lambda: types.MappingProxyType(dict(default)), metadata=meta)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class RespondingTimeouts:
    readTimeout: float = setting(
        60.0, "Maximum time to read a whole request, head and body; 408 when it passes.", DURATION
    )
    writeTimeout: float = setting(
        0.0,
        "Maximum time to write a response (then the connection is reset); 0 means no total "
        "limit, and a client that reads nothing is still reset after idleTimeout.",
        DURATION,
    )
    idleTimeout: float = setting(
        180.0,
        "How long an idle keep-alive connection or tunnel stays open; also the stall bound: "
        "a connection on which nothing moves either way for this long, and no other timeout "
        "applies, ends (504 before a response head).",
        DURATION,
    )


@dataclass(frozen=True, slots=True)
class LifeCycle:
    requestAcceptGraceTimeout: float = setting(
        0.0, "On stop, how long to keep accepting requests (with /ping answering 503).", DURATION
    )
    graceTimeOut: float = setting(
        10.0, "On stop, how long in-flight requests may take to finish.", DURATION
    )


@dataclass(frozen=True, slots=True)
class EntryPointTransport:
    respondingTimeouts: RespondingTimeouts = setting(RespondingTimeouts(), "Client-side timeouts.")
    lifeCycle: LifeCycle = setting(LifeCycle(), "Graceful-stop timings.")
    keepAliveMaxRequests: int = setting(
        0,
        "Requests served on one connection before it is closed; 0 means no limit.",
        check=not_negative,
    )


@dataclass(frozen=True, slots=True)
class ForwardedHeaders:
    trustedIPs: tuple[str, ...] = setting(
        (),
        "Clients (IPs or CIDRs) whose X-Forwarded-* headers are kept and appended to.",
        check=check_cidr,
    )
    insecure: bool = setting(False, "Trust X-Forwarded-* headers from every client.")


@dataclass(frozen=True, slots=True)
class EncodedCharacters:
    allowEncodedSlash: bool = setting(True, "Allow %2F in the request path (false: 400).")
    allowEncodedBackSlash: bool = setting(True, "Allow %5C in the request path (false: 400).")
    allowEncodedNullCharacter: bool = setting(True, "Allow %00 in the request path (false: 400).")
    allowEncodedSemicolon: bool = setting(True, "Allow %3B in the request path (false: 400).")
    allowEncodedPercent: bool = setting(True, "Allow %25 in the request path (false: 400).")
    allowEncodedQuestionMark: bool = setting(True, "Allow %3F in the request path (false: 400).")
    allowEncodedHash: bool = setting(True, "Allow %23 in the request path (false: 400).")


@dataclass(frozen=True, slots=True)
class RouterTLS:
    # keys Traefik has here that hopwire refuses, with the reason (see validate.build_struct)
    REJECTED: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {
            "certResolver": "ACME certificate resolvers are not supported yet: give the "
            "certificates in tls.certificates",
            "domains": "ACME domains are not supported yet: the certificates of "
            "tls.certificates are chosen by SNI",
        }
    )
    options: str = setting("", "Name of a tls.options entry; empty means `default`.")


@dataclass(frozen=True, slots=True)
class RedirectEntryPoint:
    to: str = setting(REQUIRED, "Entrypoint (or :port) requests are redirected to.")
    scheme: str = setting("https", "Scheme of the redirection.", check=one_of("http", "https"))
    permanent: bool = setting(True, "301/308 when true, else 302/307 (308/307 unless GET).")
    priority: int = setting(
        2**63 - 2, "Priority of the generated router (the highest by default).", check=not_negative
    )


@dataclass(frozen=True, slots=True)
class Redirections:
    entryPoint: RedirectEntryPoint | None = setting(None, "Redirect to another entrypoint.")


@dataclass(frozen=True, slots=True)
class EntryPointHTTP:
    tls: RouterTLS | None = setting(
        None, "TLS for every router of this entrypoint (`tls: {}`), as each router's `tls`."
    )
    redirections: Redirections = setting(Redirections(), "Redirect every request elsewhere.")
    middlewares: tuple[str, ...] = setting(
        (), "Names of http.middlewares applied before every router's own."
    )
    sanitizePath: bool = setting(
        True,
        "Resolve . and .. segments and merge repeated slashes before routing and forwarding.",
    )
    encodedCharacters: EncodedCharacters = setting(
        EncodedCharacters(), "Which encoded characters the path may hold (checked per router)."
    )
    maxRequestLineBytes: int = setting(
        8192, "Longest request line accepted (414 above).", check=positive
    )
    maxHeaderBytes: int = setting(
        32768, "Largest request header section (431 above).", check=positive
    )
    maxHeaderFields: int = setting(100, "Most request header fields (431 above).", check=positive)


@dataclass(frozen=True, slots=True)
class EntryPointHTTP2:
    maxConcurrentStreams: int = setting(
        250, "Streams a client may have open at once on one connection.", check=positive
    )
    maxDecoderHeaderTableSize: int = setting(
        4096, "HPACK table size the client may use for its requests (bytes).", check=positive
    )
    maxEncoderHeaderTableSize: int = setting(
        4096, "Largest HPACK table hopwire uses for its responses (bytes).", check=positive
    )


def switched_on(kind: str, router: Any, ep: Any) -> bool:
    """A router's own observability switch (``tracing``, ``metrics``, ``accessLogs``), else
    its entrypoint's, else on; the global section decides whether the feature exists at all.
    ``router``/``ep`` are Observability sections or None."""
    return bool(inherited(kind, router, ep, True))


@dataclass(frozen=True, slots=True)
class Observability:
    tracing: bool | None = setting(
        None, "Trace requests here; unset inherits (router <- entrypoint <- global `tracing`)."
    )
    metrics: bool | None = setting(
        None, "Count requests here; unset inherits (router <- entrypoint <- global `metrics`)."
    )
    accessLogs: bool | None = setting(
        None, "Access-log requests here; unset inherits (router <- entrypoint <- `accessLog`)."
    )
    traceVerbosity: str | None = setting(
        None,
        "minimal: a SERVER span and a CLIENT span per backend attempt; detailed: also INTERNAL "
        "spans between them (Router, one per middleware, Service), as Traefik's. Unset "
        "inherits (router <- entrypoint <- minimal).",
        check=one_of("minimal", "detailed"),
    )
    sampleRate: float | None = setting(
        None,
        "Probability of sampling a new (root) trace here; unset inherits (router <- "
        "entrypoint <- `tracing.sampleRate`). An inbound parent's decision is obeyed all the same.",
        check=check_rate,
    )


def inherited(kind: str, router: Any, ep: Any, default: Any) -> Any:
    """A router's own observability setting, else its entrypoint's, else ``default``."""
    for obs in (router, ep):
        value = getattr(obs, kind) if obs is not None else None
        if value is not None:
            return value
    return default


@dataclass(frozen=True, slots=True)
class AccessLogFilters:
    statusCodes: tuple[str, ...] = setting(
        (),
        "Keep lines whose status is in one of these codes or ranges (500-599).",
        check=check_status_range,
    )
    retryAttempts: bool = setting(False, "Keep lines of requests that were retried.")
    minDuration: float = setting(0.0, "Keep lines of requests that took longer.", DURATION)


_MODES = ("keep", "drop")
_HEADER_MODES = ("keep", "drop", "redact")


@dataclass(frozen=True, slots=True)
class AccessLogHeaders:
    defaultMode: str = setting(
        "drop", "Request headers: keep, drop or redact.", check=one_of(*_HEADER_MODES)
    )
    names: Mapping[str, str] = setting(
        {}, "Per header: keep, drop or redact.", check=one_of(*_HEADER_MODES)
    )


@dataclass(frozen=True, slots=True)
class AccessLogFields:
    defaultMode: str = setting("keep", "Fields: keep or drop.", check=one_of(*_MODES))
    names: Mapping[str, str] = setting(
        {}, "Per field (e.g. ClientHost): keep or drop.", check=one_of(*_MODES)
    )
    headers: AccessLogHeaders = setting(AccessLogHeaders(), "Request headers in the log.")


@dataclass(frozen=True, slots=True)
class AccessLog:
    filePath: str = setting(
        "", "File to write; empty writes to standard output. SIGUSR1 reopens it."
    )
    format: str = setting("json", "json or common.", check=one_of("json", "common"))
    bufferingSize: int = setting(
        0,
        "Lines held before a write; 0 writes every tick (250 ms). Never on the request path.",
        check=not_negative,
    )
    filters: AccessLogFilters | None = setting(None, "Keep only matching lines (any filter).")
    fields: AccessLogFields = setting(AccessLogFields(), "Which fields and headers.")
    addInternals: bool = setting(False, "Also log /ping and /metrics.")
    otlp: AccessLogOTLP | None = setting(
        None, "Send every record over OTLP as a LogRecord (off unless present)."
    )
    dualOutput: bool = setting(
        False, "With otlp: also write the file (or standard output); without: OTLP only."
    )


@dataclass(frozen=True, slots=True)
class Prometheus:
    entryPoint: str = setting("internal", "Entrypoint that serves /metrics.")
    buckets: tuple[float, ...] = setting(
        (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        "Request duration histogram bounds, in seconds.",
        check=positive,
    )
    addEntryPointsLabels: bool = setting(True, "hopwire_entrypoint_* families.")
    addRoutersLabels: bool = setting(False, "hopwire_router_* families (label router, service).")
    addServicesLabels: bool = setting(True, "hopwire_service_* families.")


@dataclass(frozen=True, slots=True)
class Metrics:
    prometheus: Prometheus | None = setting(Prometheus(), "Prometheus metrics (false: off).")
    addInternals: bool = setting(False, "Also count /ping and /metrics requests.")
    otlp: MetricsOTLP | None = setting(
        None, "Push the metrics over OTLP, for the whole instance (off unless present)."
    )


@dataclass(frozen=True, slots=True)
class ClientTLS:
    # keys Traefik has here that hopwire refuses, with the reason (see validate.build_struct)
    REJECTED: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {
            "insecureSkipVerify": "not supported for gRPC (grpcio cannot skip verification): "
            "give tls.ca instead"
        }
    )
    ca: str = setting("", "PEM file of the CA that signs the collector's certificate.")
    cert: str = setting("", "PEM client certificate (mutual TLS).")
    key: str = setting("", "PEM client key (mutual TLS).")


@dataclass(frozen=True, slots=True)
class HTTPClientTLS(ClientTLS):
    insecureSkipVerify: bool = setting(False, "Do not verify the collector's certificate.")


@dataclass(frozen=True, slots=True)
class OTLPGrpc:
    enabled: bool = setting(
        True, "false switches this exporter off, as if the section were absent."
    )
    endpoint: str = setting("localhost:4317", "Collector host:port.", check=check_host_port)
    insecure: bool = setting(False, "Plaintext gRPC (no TLS).")
    headers: Mapping[str, str] = setting({}, "gRPC metadata sent with every export.")
    tls: ClientTLS | None = setting(None, "TLS settings; not allowed with insecure.")
    compression: str = setting("none", "none or gzip.", check=one_of("none", "gzip"))
    timeout: float = setting(10.0, "Deadline of one export call.", DURATION, positive)


@dataclass(frozen=True, slots=True)
class OTLPHttp:
    enabled: bool = setting(
        True, "false switches this exporter off, as if the section were absent."
    )
    endpoint: str = setting(
        "http://localhost:4318/v1/traces", "Collector URL.", check=check_http_url
    )
    headers: Mapping[str, str] = setting({}, "HTTP headers sent with every export.")
    tls: HTTPClientTLS | None = setting(None, "TLS settings for https:// endpoints.")
    compression: str = setting("none", "none or gzip.", check=one_of("none", "gzip"))
    timeout: float = setting(10.0, "Deadline of one export request.", DURATION, positive)


@dataclass(frozen=True, slots=True)
class OTLP:
    grpc: OTLPGrpc | None = setting(None, "Export over OTLP/gRPC (the default).")
    http: OTLPHttp | None = setting(None, "Export over OTLP/HTTP (protobuf).")


@dataclass(frozen=True, slots=True)
class MetricsOTLPHttp(OTLPHttp):
    endpoint: str = setting(
        "http://localhost:4318/v1/metrics", "Collector URL.", check=check_http_url
    )


@dataclass(frozen=True, slots=True)
class LogsOTLPHttp(OTLPHttp):
    endpoint: str = setting("http://localhost:4318/v1/logs", "Collector URL.", check=check_http_url)


TEMPORALITIES = ("cumulative", "delta")
SERVICE_NAME = "hopwire"  # every signal's service.name when neither it nor tracing names one


@dataclass(frozen=True, slots=True)
class MetricsOTLP:
    grpc: OTLPGrpc | None = setting(None, "Push over OTLP/gRPC.")
    http: MetricsOTLPHttp | None = setting(
        None, "Push over OTLP/HTTP (protobuf); the default when neither is given."
    )
    serviceName: str = setting("", "service.name of the resource; empty: tracing's, or hopwire.")
    resourceAttributes: Mapping[str, str] = setting(
        {}, "Extra resource attributes, over tracing's."
    )
    addEntryPointsLabels: bool = setting(True, "hopwire_entrypoint_* metrics.")
    addRoutersLabels: bool = setting(False, "hopwire_router_* metrics (label router, service).")
    addServicesLabels: bool = setting(True, "hopwire_service_* metrics.")
    explicitBoundaries: tuple[float, ...] = setting(
        (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
        "Histogram bounds of the duration metrics, in seconds (what Traefik 3.7 sends).",
        check=positive,
    )
    pushInterval: float = setting(
        10.0, "Time between two exports of every metric.", DURATION, positive
    )
    temporality: str = setting(
        "cumulative",
        "cumulative (Prometheus, Grafana Mimir) or delta (Datadog, Elastic).",
        check=one_of(*TEMPORALITIES),
    )


@dataclass(frozen=True, slots=True)
class LogsOTLP:
    grpc: OTLPGrpc | None = setting(None, "Export over OTLP/gRPC.")
    http: LogsOTLPHttp | None = setting(
        None, "Export over OTLP/HTTP (protobuf); the default when neither is given."
    )
    serviceName: str = setting("", "service.name of the resource; empty: tracing's, or hopwire.")
    resourceAttributes: Mapping[str, str] = setting(
        {}, "Extra resource attributes, over tracing's."
    )


@dataclass(frozen=True, slots=True)
class AccessLogOTLP(LogsOTLP):
    onlySampled: bool = setting(
        False,
        "Send only the records of requests whose trace is sampled (log volume follows trace volume).",
    )
    sampleRate: float = setting(
        1.0, "Fraction of the (remaining) records sent, chosen at random.", check=check_rate
    )


@dataclass(frozen=True, slots=True)
class Batch:
    maxQueueSize: int = setting(
        2048, "Spans held by the exporter; more are dropped and counted.", check=positive
    )
    scheduleDelay: float = setting(
        5.0, "Longest wait before a partial batch is sent.", DURATION, positive
    )
    maxExportBatchSize: int = setting(512, "Spans per export request.", check=positive)
    exportTimeout: float = setting(
        30.0, "Longest time one batch may take, retries included.", DURATION, positive
    )


@dataclass(frozen=True, slots=True)
class TracingKeep:
    errors: bool = setting(
        False,
        "Export the SERVER and CLIENT spans of an unsampled request that ends in a 5xx or an "
        "error, with the ids it propagated, marked hopwire.sampling.kept=error.",
    )
    slowerThan: float = setting(
        0.0,
        "And of an unsampled request that took longer than this (0: off), marked "
        "hopwire.sampling.kept=slow.",
        DURATION,
        check=not_negative,
    )


@dataclass(frozen=True, slots=True)
class Tracing:
    serviceName: str = setting("hopwire", "service.name of the resource.")
    sampleRate: float = setting(
        1.0,
        "Probability of sampling a new (root) trace; an inbound "
        "parent's decision is always obeyed.",
        check=check_rate,
    )
    addInternals: bool = setting(False, "Also trace /ping and other internal endpoints.")
    resourceAttributes: Mapping[str, str] = setting({}, "Extra resource attributes.")
    otlp: OTLP = setting(OTLP(), "Where spans go (OTLP/gRPC unless otlp.http is set).")
    batch: Batch = setting(Batch(), "Batching in the exporter process (OTEL_BSP_* defaults).")
    exporters: int = setting(
        1, "Exporter processes; workers spread their encoded spans over them.", check=positive
    )
    encoder: str = setting(
        "c",
        "OTLP span encoder (workers encode, exporters check and wrap): c (compiled) or python.",
        check=one_of("c", "python"),
    )
    capturedRequestHeaders: tuple[str, ...] = setting(
        (),
        "Request headers recorded on SERVER spans as http.request.header.<name>.",
        check=check_field_name,
    )
    capturedResponseHeaders: tuple[str, ...] = setting(
        (),
        "Response headers recorded on SERVER spans as http.response.header.<name>.",
        check=check_field_name,
    )
    safeQueryParams: tuple[str, ...] = setting(
        (), "Query parameters whose values url.query and url.full keep (others: REDACTED)."
    )
    traceResponse: bool = setting(
        False, "Send a traceresponse header (W3C Trace Context Level 2) to the client."
    )
    keep: TracingKeep = setting(
        TracingKeep(), "Spans of unsampled requests kept after the fact: errors, slow ones."
    )
    propagators: tuple[str, ...] = setting(
        ("tracecontext", "baggage"),
        "Trace context read from requests and written to backends, as OTEL_PROPAGATORS "
        "(which sets it): tracecontext (W3C), b3 (one b3 field), b3multi (X-B3-*), baggage "
        "(carried untouched either way), none (nothing read or written).",
        check=check_propagator,
    )


@dataclass(frozen=True, slots=True)
class TraceContext:
    trustedIPs: tuple[str, ...] = setting(
        (), "Clients (IPs or CIDRs) whose inbound trace context is obeyed.", check=check_cidr
    )
    untrusted: str = setting(
        "obey",
        "Inbound trace context from any other client: obey (it decides sampling), replace "
        "(a new root trace linked to it; the backend gets hopwire's context) or forward (a new "
        "root trace linked to it; the backend gets the client's context as it came).",
        check=one_of("obey", "replace", "forward"),
    )


@dataclass(frozen=True, slots=True)
class EntryPoint:
    address: str = setting(
        REQUIRED, "Listening address: :8080, 127.0.0.1:8080, [::1]:8080.", check=check_address
    )
    reusePort: bool = setting(False, "Set SO_REUSEPORT on the listening socket.")
    transport: EntryPointTransport = setting(EntryPointTransport(), "Timeouts and life cycle.")
    forwardedHeaders: ForwardedHeaders = setting(ForwardedHeaders(), "X-Forwarded-* trust.")
    http: EntryPointHTTP = setting(EntryPointHTTP(), "Request size limits.")
    http2: EntryPointHTTP2 = setting(
        EntryPointHTTP2(), "HTTP/2 from clients (ALPN h2 on TLS, h2c by prior knowledge)."
    )
    observability: Observability = setting(Observability(), "Per-entrypoint telemetry.")
    traceContext: TraceContext = setting(
        TraceContext(), "Whose inbound trace context decides sampling here (tracing on)."
    )


@dataclass(frozen=True, slots=True)
class Router:
    rule: str = setting(REQUIRED, "Matching rule, e.g. Host(`a.example`) && PathPrefix(`/api`).")
    service: str = setting(REQUIRED, "Name of the service that receives matching requests.")
    entryPoints: tuple[str, ...] = setting(
        (), "Entrypoints this router listens on; empty means every non-internal entrypoint."
    )
    priority: int = setting(0, "Higher wins; 0 means the length of the rule.", check=not_negative)
    tls: RouterTLS | None = setting(
        None, "Answer on TLS connections only (`tls: {}`); absent: plain connections only."
    )
    middlewares: tuple[str, ...] = setting(
        (), "Names of http.middlewares applied in order (after the entrypoint's)."
    )
    observability: Observability = setting(Observability(), "Per-router telemetry.")


@dataclass(frozen=True, slots=True)
class Server:
    url: str = setting(
        REQUIRED,
        "Backend URL: http://, https://, or h2c:// (HTTP/2 without TLS, as gRPC servers speak).",
        check=check_server_url,
    )
    weight: int = setting(1, "Relative weight in weighted round robin.", check=not_negative)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    path: str = setting(REQUIRED, "Path requested on each server, e.g. /health.")
    interval: float = setting(30.0, "Time between checks.", DURATION, positive)
    timeout: float = setting(
        5.0, "Time a check may take before it counts as failed.", DURATION, positive
    )
    status: int = setting(0, "Expected status code; 0 accepts any 2xx or 3xx.", check=status_code)


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    servers: tuple[Server, ...] = setting(REQUIRED, "The backend servers.")
    passHostHeader: bool = setting(True, "Forward the client's Host; false sends the server's.")
    strategy: str = setting(
        "wrr",
        "wrr (smooth weighted round robin) or p2c (power of two choices, fewest in-flight).",
        check=one_of("wrr", "p2c"),
    )
    healthCheck: HealthCheck | None = setting(None, "Active health checks; off when absent.")
    serversTransport: str = setting("", "Name of an http.serversTransports entry.")


@dataclass(frozen=True, slots=True)
class Service:
    loadBalancer: LoadBalancer = setting(REQUIRED, "The servers and how to pick one.")


@dataclass(frozen=True, slots=True)
class ForwardingTimeouts:
    dialTimeout: float = setting(30.0, "Time to connect to a backend.", DURATION)
    responseHeaderTimeout: float = setting(
        0.0,
        "Time to wait for a response head once the request is sent; 0 means none (504).",
        DURATION,
    )
    idleConnTimeout: float = setting(
        90.0, "How long an idle pooled backend connection is kept.", DURATION
    )
    expectContinueTimeout: float = setting(
        1.0,
        "With Expect: 100-continue, how long the backend may take to answer 100 before hopwire "
        "tells the client to send its body anyway; 0 waits for the backend.",
        DURATION,
    )
    readIdleTimeout: float = setting(
        0.0,
        "HTTP/2 backends: a PING after this long without a frame from the connection; 0: none.",
        DURATION,
    )
    pingTimeout: float = setting(
        15.0,
        "HTTP/2 backends: the connection is closed when a PING goes unanswered this long.",
        DURATION,
    )


TLS_VERSION_NAMES = ("VersionTLS10", "VersionTLS11", "VersionTLS12", "VersionTLS13")


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    certFile: str = setting(REQUIRED, "PEM certificate, with its chain after it.")
    keyFile: str = setting(REQUIRED, "PEM private key.")


@dataclass(frozen=True, slots=True)
class ClientAuth:
    caFiles: tuple[str, ...] = setting((), "PEM files of the CAs client certificates chain to.")
    clientAuthType: str = setting(
        "NoClientCert",
        "NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or "
        "RequireAndVerifyClientCert (the two that skip verification verify: see docs/https.md).",
        check=one_of(
            "NoClientCert",
            "RequestClientCert",
            "RequireAnyClientCert",
            "VerifyClientCertIfGiven",
            "RequireAndVerifyClientCert",
        ),
    )


@dataclass(frozen=True, slots=True)
class TLSOptions:
    minVersion: str = setting(
        "VersionTLS12", "Lowest TLS version accepted.", check=one_of(*TLS_VERSION_NAMES)
    )
    maxVersion: str = setting(
        "", "Highest TLS version; empty: the highest.", check=one_of("", *TLS_VERSION_NAMES)
    )
    cipherSuites: tuple[str, ...] = setting(
        (),
        "TLS 1.2 cipher suites by IANA name (TLS 1.3 suites are not configurable, as in Go); "
        "empty: ECDHE with AES-GCM or ChaCha20.",
    )
    curvePreferences: tuple[str, ...] = setting(
        (), "Key exchange curve: one of CurveP256, CurveP384, CurveP521, X25519 (one only)."
    )
    sniStrict: bool = setting(False, "Refuse handshakes whose SNI matches no certificate.")
    alpnProtocols: tuple[str, ...] = setting(
        ("h2", "http/1.1", "acme-tls/1"),
        "ALPN protocols, in order of preference; hopwire offers h2 and http/1.1 (when listed) and logs the others.",
    )
    disableSessionTickets: bool = setting(False, "No TLS session tickets.")
    clientAuth: ClientAuth = setting(ClientAuth(), "Client certificates (mutual TLS).")


@dataclass(frozen=True, slots=True)
class TLSStore:
    REJECTED: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {"defaultGeneratedCert": "ACME is not supported yet: give defaultCertificate"}
    )
    defaultCertificate: CertificateFiles | None = setting(
        None, "Certificate for handshakes no other matches; absent: a self-signed one."
    )


@dataclass(frozen=True, slots=True)
class TLSCertificate:
    certFile: str = setting(REQUIRED, "PEM certificate, with its chain after it.")
    keyFile: str = setting(REQUIRED, "PEM private key.")
    stores: tuple[str, ...] = setting((), "Stores it belongs to; only `default` exists.")


@dataclass(frozen=True, slots=True)
class TLS:
    certificates: tuple[TLSCertificate, ...] = setting(
        (), "Certificates, chosen by SNI among their SANs (wildcards included)."
    )
    options: Mapping[str, TLSOptions] = setting(
        {}, "TLS options by name; `default` applies where a router names none."
    )
    stores: Mapping[str, TLSStore] = setting({}, "Certificate stores; only `default`.")


@dataclass(frozen=True, slots=True)
class ServersTransport:
    forwardingTimeouts: ForwardingTimeouts = setting(ForwardingTimeouts(), "Backend timeouts.")
    maxIdleConnsPerHost: int = setting(
        200, "Idle keep-alive connections kept per server.", check=not_negative
    )
    disableHTTP2: bool = setting(
        False,
        "Never HTTP/2 to https:// servers (ALPN offers only http/1.1); h2c:// is HTTP/2 still.",
    )
    insecureSkipVerify: bool = setting(False, "Do not verify backend TLS certificates.")
    rootCAs: tuple[str, ...] = setting((), "PEM files of CAs trusted for https:// backends.")
    serverName: str = setting("", "SNI and verified name for https:// backends; empty: the host.")
    certificates: tuple[CertificateFiles, ...] = setting(
        (), "Client certificates presented to https:// backends (mutual TLS)."
    )
    minVersion: str = setting(
        "VersionTLS12", "Lowest TLS version to backends.", check=one_of(*TLS_VERSION_NAMES)
    )
    maxVersion: str = setting(
        "",
        "Highest TLS version to backends; empty: the highest.",
        check=one_of("", *TLS_VERSION_NAMES),
    )


@dataclass(frozen=True, slots=True)
class HeadersMiddleware:
    customRequestHeaders: Mapping[str, str] = setting(
        {}, "Fields set on the request to the backend; an empty value removes the field."
    )
    customResponseHeaders: Mapping[str, str] = setting(
        {}, "Fields set on the response; an empty value removes the field."
    )
    stsSeconds: int = setting(
        0, "Strict-Transport-Security max-age (on HTTPS).", check=not_negative
    )
    stsIncludeSubdomains: bool = setting(False, "Add includeSubDomains to HSTS.")
    stsPreload: bool = setting(False, "Add preload to HSTS.")
    forceSTSHeader: bool = setting(False, "Send HSTS on plain HTTP too.")
    frameDeny: bool = setting(False, "X-Frame-Options: DENY.")
    customFrameOptionsValue: str = setting("", "X-Frame-Options value (instead of DENY).")
    contentTypeNosniff: bool = setting(False, "X-Content-Type-Options: nosniff.")
    browserXssFilter: bool = setting(False, "X-XSS-Protection: 1; mode=block.")
    referrerPolicy: str = setting("", "Referrer-Policy value.")
    contentSecurityPolicy: str = setting("", "Content-Security-Policy value.")
    permissionsPolicy: str = setting("", "Permissions-Policy value.")
    accessControlAllowCredentials: bool = setting(False, "CORS: Access-Control-Allow-Credentials.")
    accessControlAllowHeaders: tuple[str, ...] = setting((), "CORS: headers a preflight allows.")
    accessControlAllowMethods: tuple[str, ...] = setting((), "CORS: methods a preflight allows.")
    accessControlAllowOriginList: tuple[str, ...] = setting(
        (), "CORS: allowed origins (`*` for any)."
    )
    accessControlAllowOriginListRegex: tuple[str, ...] = setting(
        (), "CORS: allowed origins, as regular expressions."
    )
    accessControlExposeHeaders: tuple[str, ...] = setting(
        (), "CORS: Access-Control-Expose-Headers."
    )
    accessControlMaxAge: int | None = setting(None, "CORS: how long a preflight may be cached (s).")
    addVaryHeader: bool = setting(False, "CORS: add Origin to Vary.")


@dataclass(frozen=True, slots=True)
class StripPrefixMiddleware:
    prefixes: tuple[str, ...] = setting(REQUIRED, "Path prefixes removed (the first that matches).")


@dataclass(frozen=True, slots=True)
class StripPrefixRegexMiddleware:
    regex: tuple[str, ...] = setting(
        REQUIRED, "Regular expressions; the first whose match starts the path is removed."
    )


@dataclass(frozen=True, slots=True)
class RedirectRegexMiddleware:
    regex: str = setting(REQUIRED, "Regular expression on the URL (scheme://host/path?query).")
    replacement: str = setting(REQUIRED, "The new URL, with $1 / ${name} as in Go.")
    permanent: bool = setting(False, "301/308 when true, else 302/307 (308/307 unless GET).")


@dataclass(frozen=True, slots=True)
class AddPrefixMiddleware:
    prefix: str = setting(REQUIRED, "Prepended to the path.")


@dataclass(frozen=True, slots=True)
class ReplacePathMiddleware:
    path: str = setting(REQUIRED, "The path sent instead (the original in X-Replaced-Path).")


@dataclass(frozen=True, slots=True)
class ReplacePathRegexMiddleware:
    regex: str = setting(REQUIRED, "Regular expression on the path.")
    replacement: str = setting(REQUIRED, "Replacement, with $1 / ${name} as in Go.")


@dataclass(frozen=True, slots=True)
class RedirectSchemeMiddleware:
    scheme: str = setting(REQUIRED, "Scheme of the redirection.", check=one_of("http", "https"))
    port: str = setting("", "Port of the redirection; empty keeps none.")
    permanent: bool = setting(False, "301/308 when true, else 302/307 (308/307 unless GET).")


@dataclass(frozen=True, slots=True)
class IPStrategy:
    depth: int = setting(
        0,
        "Use the depth-th X-Forwarded-For address from the right (a trusted hop's).",
        check=not_negative,
    )
    excludedIPs: tuple[str, ...] = setting(
        (), "Use the rightmost X-Forwarded-For address not in these.", check=check_cidr
    )
    ipv6Subnet: int | None = setting(None, "Judge IPv6 clients by this prefix length.")


@dataclass(frozen=True, slots=True)
class IPAllowListMiddleware:
    sourceRange: tuple[str, ...] = setting(REQUIRED, "Allowed IPs and CIDRs.", check=check_cidr)
    ipStrategy: IPStrategy | None = setting(None, "Which address is judged; absent: the peer.")
    rejectStatusCode: int = setting(403, "Status of a refused request.", check=status_code)


@dataclass(frozen=True, slots=True)
class BasicAuthMiddleware:
    users: tuple[str, ...] = setting((), "user:hash lines (bcrypt, SHA1, apr1, MD5-crypt).")
    usersFile: str = setting("", "An htpasswd file, read at start and on reload.")
    realm: str = setting("traefik", "Realm of the WWW-Authenticate challenge.")
    headerField: str = setting("", "Field that carries the user name to the backend.")
    removeHeader: bool = setting(False, "Do not forward the Authorization field.")


@dataclass(frozen=True, slots=True)
class SourceCriterion:
    ipStrategy: IPStrategy | None = setting(None, "The client's address (the default).")
    requestHeaderName: str = setting("", "The value of this request field.")
    requestHost: bool = setting(False, "The Host.")


@dataclass(frozen=True, slots=True)
class RedisTLS:
    ca: str = setting("", "PEM file of the CA that signs Redis's certificate.")
    cert: str = setting("", "PEM client certificate (mutual TLS).")
    key: str = setting("", "PEM client key (mutual TLS).")
    insecureSkipVerify: bool = setting(False, "Do not verify Redis's certificate.")


@dataclass(frozen=True, slots=True)
class RateLimitRedis:
    endpoints: tuple[str, ...] = setting(
        ("localhost:6379",),
        "Redis host:port (one: no Cluster or Sentinel).",
        check=check_host_port,
    )
    username: str = setting("", "Redis ACL user name.")
    password: str = setting("", "Redis password.")
    db: int = setting(0, "Redis database number.", check=not_negative)
    poolSize: int = setting(
        0, "Connections per worker; 0: 10 per CPU, as go-redis.", check=not_negative
    )
    minIdleConns: int = setting(0, "Idle connections kept open per worker.", check=not_negative)
    maxActiveConns: int = setting(
        0, "Connections at most per worker; 0: poolSize.", check=not_negative
    )
    readTimeout: float = setting(3.0, "Bound on reading a Redis reply.", DURATION, not_negative)
    writeTimeout: float = setting(3.0, "Bound on writing a Redis command.", DURATION, not_negative)
    dialTimeout: float = setting(5.0, "Bound on connecting to Redis.", DURATION, not_negative)
    tls: RedisTLS | None = setting(None, "TLS to Redis.")


@dataclass(frozen=True, slots=True)
class RateLimitMiddleware:
    average: int = setting(
        0,
        "Requests allowed per period (for the instance, all workers); 0: no limit.",
        check=not_negative,
    )
    period: float = setting(1.0, "The period of average.", DURATION, positive)
    burst: int = setting(1, "Requests allowed at once.", check=not_negative)
    sourceCriterion: SourceCriterion | None = setting(
        None, "What a limit is per: ipStrategy (default), requestHeaderName or requestHost."
    )
    redis: RateLimitRedis | None = setting(
        None, "Keep the buckets in Redis: one limit for every instance that shares it."
    )


@dataclass(frozen=True, slots=True)
class InFlightReqMiddleware:
    amount: int = setting(
        REQUIRED,
        "Requests in flight allowed per source (for the instance); more get 429.",
        check=not_negative,
    )
    sourceCriterion: SourceCriterion | None = setting(
        None, "What the limit is per: requestHost (default), ipStrategy or requestHeaderName."
    )


@dataclass(frozen=True, slots=True)
class BufferingMiddleware:
    REJECTED: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {"retryExpression": "not supported: use the retry middleware"}
    )
    maxRequestBodyBytes: int = setting(
        0, "Larger request bodies get 413; 0: no limit.", check=not_negative
    )
    memRequestBodyBytes: int = setting(
        1048576, "Request body bytes kept in memory; more go to a temporary file.", check=positive
    )
    maxResponseBodyBytes: int = setting(
        0, "Larger response bodies get 500; 0: no limit.", check=not_negative
    )
    memResponseBodyBytes: int = setting(
        1048576, "Response body bytes kept in memory; more go to a temporary file.", check=positive
    )


@dataclass(frozen=True, slots=True)
class CompressMiddleware:
    encodings: tuple[str, ...] = setting(
        ("gzip", "br", "zstd"),
        "Encodings offered, preferred first when the client weighs them equally.",
        check=one_of("gzip", "br", "zstd"),
    )
    excludedContentTypes: tuple[str, ...] = setting(
        (), "Response (and request) types never compressed; application/grpc always is."
    )
    includedContentTypes: tuple[str, ...] = setting(
        (), "Only these response types are compressed (not with excludedContentTypes)."
    )
    minResponseBodyBytes: int = setting(
        1024, "Smaller bodies are sent as they are; 0: 1024.", check=not_negative
    )
    defaultEncoding: str = setting(
        "", "Encoding used without Accept-Encoding (or for *); empty: none without it."
    )


@dataclass(frozen=True, slots=True)
class RetryMiddleware:
    attempts: int = setting(REQUIRED, "Attempts in all (the first included).", check=positive)
    initialInterval: float = setting(
        0.0, "First wait of the exponential backoff; 0: retry at once.", DURATION, not_negative
    )
    timeout: float = setting(
        0.0,
        "No retry after this long since the first attempt; 0: no bound.",
        DURATION,
        not_negative,
    )
    status: tuple[str, ...] = setting(
        (),
        "Retry responses with these statuses (500, 502,503, 500-599).",
        check=check_status_ranges,
    )
    maxRequestBodyBytes: int = setting(
        2097152,
        "Bodies up to this size are held to be resent on a status retry.",
        check=not_negative,
    )
    disableRetryOnNetworkError: bool = setting(
        False, "Do not retry a connection that failed before the request was sent."
    )
    retryNonIdempotentMethod: bool = setting(False, "Also retry POST, PATCH and LOCK.")


@dataclass(frozen=True, slots=True)
class ForwardAuthTLS:
    ca: str = setting("", "PEM file of the CA that signs the authentication server.")
    cert: str = setting("", "PEM client certificate (mutual TLS).")
    key: str = setting("", "PEM client key (mutual TLS).")
    insecureSkipVerify: bool = setting(False, "Do not verify the authentication server.")


@dataclass(frozen=True, slots=True)
class ForwardAuthMiddleware:
    address: str = setting(REQUIRED, "URL of the authentication server.", check=check_http_url)
    tls: ForwardAuthTLS | None = setting(None, "TLS to an https:// address.")
    trustForwardHeader: bool = setting(
        False, "Append to a trusted X-Forwarded-For instead of replacing it."
    )
    authResponseHeaders: tuple[str, ...] = setting(
        (),
        "Fields copied from the authentication answer into the request.",
        check=check_field_name,
    )
    authResponseHeadersRegex: str = setting(
        "", "Fields matching this are copied from the answer (and removed from the request)."
    )
    authRequestHeaders: tuple[str, ...] = setting(
        (),
        "Only these request fields are sent to the server; empty: all.",
        check=check_field_name,
    )
    addAuthCookiesToResponse: tuple[str, ...] = setting(
        (), "Cookies of the authentication answer set on the response."
    )
    headerField: str = setting("", "Answer field that names the user (for the access log).")
    forwardBody: bool = setting(False, "Send the request body to the server.")
    maxBodySize: int = setting(-1, "Bodies above this get 401 with forwardBody; -1: no limit.")
    maxResponseBodySize: int = setting(-1, "An answer body above this is a 401; -1: no limit.")
    preserveLocationHeader: bool = setting(
        False, "Send the answer's Location as it is, not resolved against address."
    )
    preserveRequestMethod: bool = setting(False, "Ask with the request's method, not GET.")
    authSigninURL: str = setting("", "Redirect a 401 answer here.")


@dataclass(frozen=True, slots=True)
class ErrorsMiddleware:
    status: tuple[str, ...] = setting(
        REQUIRED, "Statuses replaced by a page (500, 502,503, 500-599).", check=check_status_ranges
    )
    service: str = setting(REQUIRED, "Service that serves the pages.")
    query: str = setting("/", "Path of the page: {status}, {originalStatus}, {url} filled in.")
    statusRewrites: Mapping[str, int] = setting(
        {}, 'Status sent instead of the original, by status or range ("500-503": 500).'
    )
    errorRequestHeaders: tuple[str, ...] | None = setting(
        None, "Request fields sent to the page's service; absent: all, empty: none."
    )


@dataclass(frozen=True, slots=True)
class ChainMiddleware:
    middlewares: tuple[str, ...] = setting(REQUIRED, "Middlewares applied in order.")


@dataclass(frozen=True, slots=True)
class Middleware:
    """One named middleware: exactly one of its types is set."""

    headers: HeadersMiddleware | None = setting(None, "Request and response header fields.")
    stripPrefix: StripPrefixMiddleware | None = setting(None, "Remove a path prefix.")
    stripPrefixRegex: StripPrefixRegexMiddleware | None = setting(
        None, "Remove a path prefix found by a regular expression."
    )
    addPrefix: AddPrefixMiddleware | None = setting(None, "Prepend a path prefix.")
    replacePath: ReplacePathMiddleware | None = setting(None, "Replace the path.")
    replacePathRegex: ReplacePathRegexMiddleware | None = setting(
        None, "Rewrite the path with a regular expression."
    )
    redirectScheme: RedirectSchemeMiddleware | None = setting(
        None, "Redirect to another scheme (and port)."
    )
    redirectRegex: RedirectRegexMiddleware | None = setting(
        None, "Redirect to a URL rewritten by a regular expression."
    )
    ipAllowList: IPAllowListMiddleware | None = setting(None, "Allow only these clients.")
    basicAuth: BasicAuthMiddleware | None = setting(None, "HTTP basic authentication.")
    rateLimit: RateLimitMiddleware | None = setting(
        None, "Token-bucket rate limit per source, for the whole instance."
    )
    inFlightReq: InFlightReqMiddleware | None = setting(
        None, "Limit the requests in flight per source, for the whole instance."
    )
    buffering: BufferingMiddleware | None = setting(
        None, "Read whole bodies before passing them on, with size limits."
    )
    compress: CompressMiddleware | None = setting(
        None, "Compress responses (gzip, Brotli, Zstandard), streamed."
    )
    retry: RetryMiddleware | None = setting(
        None, "Try a failed request again, on the next server, with backoff."
    )
    forwardAuth: ForwardAuthMiddleware | None = setting(
        None, "Let an authentication server decide."
    )
    errors: ErrorsMiddleware | None = setting(
        None, "Replace error responses by pages from another service."
    )
    chain: ChainMiddleware | None = setting(None, "Several middlewares under one name.")


@dataclass(frozen=True, slots=True)
class HTTP:
    routers: Mapping[str, Router] = setting({}, "Routers by name.")
    middlewares: Mapping[str, Middleware] = setting({}, "Middlewares by name.")
    services: Mapping[str, Service] = setting({}, "Services by name.")
    serversTransports: Mapping[str, ServersTransport] = setting({}, "Named backend transports.")


@dataclass(frozen=True, slots=True)
class Ping:
    entryPoint: str = setting("internal", "Entrypoint that answers /ping.")


@dataclass(frozen=True, slots=True)
class Log:
    level: str = setting(
        "INFO",
        "DEBUG, INFO, WARN or ERROR.",
        check=one_of("DEBUG", "INFO", "WARN", "WARNING", "ERROR"),
    )
    filePath: str = setting("", "Log file; empty writes to standard error. SIGUSR1 reopens it.")
    format: str = setting(
        "json",
        "json (one object per line) or common (plain text).",
        check=one_of("json", "common"),
    )
    otlp: LogsOTLP | None = setting(
        None, "Also send the log's records over OTLP (off unless present)."
    )


@dataclass(frozen=True, slots=True)
class Experimental:
    otlpLogs: bool = setting(
        False, "Accepted as Traefik has it; hopwire's OTLP logs need no switch beyond `otlp`."
    )


@dataclass(frozen=True, slots=True)
class FileProvider:
    filename: str = setting("", "The dynamic configuration's file (YAML or TOML).")
    directory: str = setting(
        "", "A directory whose *.yml, *.yaml and *.toml files (and its subdirectories') merge."
    )
    watch: bool = setting(
        True, "Apply a change to those files in the running workers, within about a second."
    )


@dataclass(frozen=True, slots=True)
class KubernetesProvider:
    """What both Kubernetes providers share: the API server and how much of it is read."""

    endpoint: str = setting(
        "",
        "The API server's URL; empty: the pod's own (KUBERNETES_SERVICE_HOST/_PORT), with its "
        "service account's token and CA.",
    )
    token: str = setting("", "Bearer token; empty: the pod's service-account token, if any.")
    certAuthFilePath: str = setting("", "PEM file of the API server's CA; empty: the pod's.")
    namespaces: tuple[str, ...] = setting((), "Namespaces read; empty: all.")
    allowExternalNameServices: bool = setting(
        False, "Let routes (or an Ingress's paths) go to ExternalName Services."
    )
    throttleDuration: float = setting(
        0.0, "Wait after a change so that a burst of changes is one configuration.", DURATION
    )


@dataclass(frozen=True, slots=True)
class KubernetesCRDProvider(KubernetesProvider):
    REJECTED: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {
            "allowEmptyServices": "not supported: a route whose Service has no ready endpoint "
            "is not served (and logged)",
            "nativeLBByDefault": "not supported: set nativeLB on each service reference",
            "disableClusterScopeResources": "not supported: hopwire reads no cluster-scoped "
            "resource of this provider",
            "crossProviderNamespaces": "not supported",
        }
    )
    labelSelector: str = setting("", "Label selector of the traefik.io objects read.")
    ingressClass: str = setting(
        "", "Serve only IngressRoutes of this class; empty: those of class traefik or none."
    )
    allowCrossNamespace: bool = setting(
        False, "Let objects refer to Services, Middlewares... of other namespaces."
    )


@dataclass(frozen=True, slots=True)
class KubernetesIngressProvider(KubernetesProvider):
    REJECTED: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {
            "ingressEndpoint": "not supported: hopwire does not write the Ingress status",
            "allowEmptyServices": "not supported: a path whose Service has no ready endpoint "
            "is not served (and logged)",
            "nativeLBByDefault": "not supported: use the service.nativelb annotation",
            "disableClusterScopeResources": "not supported",
            "strictPrefixMatching": "not supported",
        }
    )
    labelSelector: str = setting("", "Label selector of the Ingresses read.")
    ingressClass: str = setting(
        "",
        "Serve only Ingresses of this class (or whose IngressClass has this name); empty: "
        "those of Traefik's controller, of class traefik, or of none.",
    )
    disableIngressClassLookup: bool = setting(
        False, "Do not read IngressClasses (match ingressClass by name only)."
    )


@dataclass(frozen=True, slots=True)
class Providers:
    REJECTED: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {
            name: "not supported: hopwire reads its dynamic configuration from providers.file, "
            "providers.kubernetesCRD and providers.kubernetesIngress"
            for name in (
                "docker",
                "swarm",
                "kubernetesGateway",
                "consulCatalog",
                "nomad",
                "ecs",
                "consul",
                "etcd",
                "zooKeeper",
                "redis",
                "http",
                "plugin",
            )
        }
    )
    file: FileProvider | None = setting(
        None, "Routers, services, middlewares, serversTransports and tls from files."
    )
    kubernetesCRD: KubernetesCRDProvider | None = setting(
        None, "IngressRoute, Middleware, TraefikService... objects from the Kubernetes API."
    )
    kubernetesIngress: KubernetesIngressProvider | None = setting(
        None, "Ingress objects from the Kubernetes API."
    )
    providersThrottleDuration: float = setting(
        0.0, "Least time between two applied changes of the dynamic configuration.", DURATION
    )


DYNAMIC_SECTIONS = ("http", "tls")  # what a provider's file holds; the rest is static


@dataclass(frozen=True, slots=True)
class Config:
    workers: int = setting(0, "Worker processes; 0 means one per CPU.", check=not_negative)
    heartbeatTimeout: float = setting(
        30.0,
        "A worker whose event loop has not ticked for this long is asked for its Python stack "
        "(written to its log), then killed and replaced.",
        DURATION,
        positive,
    )
    entryPoints: Mapping[str, EntryPoint] = setting(
        {}, "Listening entrypoints by name; none configured means `web` on :8080."
    )
    http: HTTP = setting(HTTP(), "Routers, services and backend transports.")
    tls: TLS = setting(TLS(), "Certificates and TLS options of TLS entrypoints and routers.")
    serversTransport: ServersTransport = setting(
        ServersTransport(), "Defaults for backends without a named serversTransport."
    )
    ping: Ping = setting(Ping(), "Health endpoint /ping.")
    log: Log = setting(Log(), "Application log.")
    tracing: Tracing | None = setting(
        None, "OpenTelemetry tracing; off unless present (`tracing: {}` or --tracing=true)."
    )
    metrics: Metrics = setting(Metrics(), "Prometheus metrics (on by default) and OTLP metrics.")
    accessLog: AccessLog | None = setting(None, "Access log; off unless present (`accessLog: {}`).")
    providers: Providers = setting(
        Providers(), "Where the dynamic configuration (http, tls) comes from besides this file."
    )
    experimental: Experimental = setting(Experimental(), "Traefik's experimental switches.")

    def static_part(self) -> Config:
        """This config without its dynamic sections: what only a SIGHUP may change."""
        return dataclasses.replace(self, http=HTTP(), tls=TLS())

    @property
    def worker_count(self) -> int:
        return self.workers or (os.cpu_count() or 1)

    def transports(self) -> list[tuple[str, Any]]:
        """(key, transport) of the default serversTransport and every named one."""
        return [("serversTransport", self.serversTransport)] + [
            (f"http.serversTransports.{n}", t) for n, t in self.http.serversTransports.items()
        ]

    def otlp_sections(self) -> list[tuple[str, Any]]:
        """(key, section) of every OTLP export configured: tracing.otlp, metrics.otlp,
        accessLog.otlp, log.otlp; each section has ``grpc`` and ``http``."""
        found: list[tuple[str, Any]] = []
        if self.tracing is not None:
            found.append(("tracing.otlp", self.tracing.otlp))
        if self.metrics.otlp is not None:
            found.append(("metrics.otlp", self.metrics.otlp))
        if self.accessLog is not None and self.accessLog.otlp is not None:
            found.append(("accessLog.otlp", self.accessLog.otlp))
        if self.log.otlp is not None:
            found.append(("log.otlp", self.log.otlp))
        return found

    def exports_anything(self) -> bool:
        """Whether the exporter process(es) run: spans to export, or OTLP metrics or logs."""
        return self.traces_anything() or any(
            key != "tracing.otlp" for key, _ in self.otlp_sections()
        )

    def resource_of(self, section: Any) -> tuple[str, dict[str, str]]:
        """(service.name, extra resource attributes) of a signal: its own, else tracing's,
        else ``hopwire``; its attributes over tracing's, so that an instance's three
        signals land under one service."""
        tracing = self.tracing
        name = getattr(section, "serviceName", "") or (
            tracing.serviceName if tracing is not None else SERVICE_NAME
        )
        attrs = dict(tracing.resourceAttributes) if tracing is not None else {}
        if section is not None and not isinstance(section, Tracing):
            attrs.update(section.resourceAttributes)
        return name, attrs

    def traces_anything(self) -> bool:
        """Whether any request can be traced: the `tracing` section is present and some
        entrypoint or router has not switched it off (else no exporter process is started).
        The switches resolve as the workers resolve them (``switched_on``); an entrypoint's
        own requests (unrouted, and /ping with addInternals on the internal entrypoint)
        follow the entrypoint's switch."""
        tracing = self.tracing
        if tracing is None:
            return False
        user_eps = [n for n in self.entryPoints if n != INTERNAL_ENTRYPOINT]
        for name, ep in self.entryPoints.items():
            ep_obs = ep.observability
            if switched_on("tracing", None, ep_obs) and (
                name != INTERNAL_ENTRYPOINT or tracing.addInternals
            ):
                return True
            for router in self.http.routers.values():
                if name in (router.entryPoints or user_eps) and switched_on(
                    "tracing", router.observability, ep_obs
                ):
                    return True
        return False


INTERNAL_ENTRYPOINT = "internal"
INTERNAL_ADDRESS = "127.0.0.1:8082"
