"""Configuration: one declarative schema for file, command line, environment and docs.

The schema is the set of frozen dataclasses below.  Every field carries its default and its
documentation; the loader walks the dataclasses to read YAML/TOML, to apply ``HOPWIRE_*``
environment variables and ``--dotted.flags``, to validate, and to print the reference
(``hopwire --help-config``).  Names and meanings follow Traefik's static and dynamic
configuration so that a Traefik user's file reads the same.

Precedence: command-line flag > environment variable > file > default.

A config is frozen after load.  Every problem found is collected (not just the first) as a
``key: message`` string naming the key, the value and what was expected; the command line turns
them into exit code 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import itertools
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

REQUIRED: Any = object()  # sentinel default: the key must be given

DURATION = "duration"


def setting(default: Any, doc: str, kind: str | None = None, check: Any = None) -> Any:
    """Declare one config field: its default, its documentation and how to check it."""
    meta = {"doc": doc, "kind": kind, "check": check}
    if isinstance(default, dict):
        return field(default_factory=lambda: types.MappingProxyType(dict(default)), metadata=meta)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


# ---------------------------------------------------------------------------------------------
# Value parsers.  Each raises ValueError with the expectation when the value does not fit.

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """``10s``, ``250ms``, ``1m30s``, ``1h`` or plain seconds (int, float or numeric string)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10s, 250ms, 1m or plain seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for m in _DURATION_PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise ValueError("expected a duration such as 10s, 250ms, 1m or plain seconds")
    if seconds < 0:
        raise ValueError("expected a duration that is not negative")
    return seconds


def parse_address(value: str) -> tuple[str, int]:
    """``:8080`` (all interfaces), ``127.0.0.1:8080``, ``[::1]:8080`` or ``name:8080``."""
    text = value.strip()
    if text.endswith("/tcp"):
        text = text[:-4]
    expect = "expected [host]:port such as :8080, 127.0.0.1:8080 or [::1]:8080"
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(expect)
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(expect)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(expect)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(expect + " (port 1-65535)")
    return host, int(port_text)


def _check_address(value: str) -> str | None:
    try:
        parse_address(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check_server_url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "expected an http:// or https:// URL with a valid port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL such as http://10.0.0.5:8080"
    if parts.username or parts.password:
        return "credentials in a server URL are not supported"
    if parts.query or parts.fragment:
        return "a server URL takes no query or fragment"
    del port
    return None


def _check_cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return "expected an IP address or CIDR range such as 10.0.0.0/8"
    return None


def _positive(value: float) -> str | None:
    return None if value > 0 else "expected a value greater than 0"


def _not_negative(value: float) -> str | None:
    return None if value >= 0 else "expected a value of 0 or more"


def _one_of(*choices: str) -> Any:
    def check(value: str) -> str | None:
        return None if value in choices else "expected one of " + ", ".join(choices)

    return check


def _status_code(value: int) -> str | None:
    return None if value == 0 or 100 <= value <= 599 else "expected an HTTP status code (100-599)"


# ---------------------------------------------------------------------------------------------
# The schema.


@dataclass(frozen=True, slots=True)
class RespondingTimeouts:
    readTimeout: float = setting(
        60.0, "Maximum time to read a whole request, head and body; 408 when it passes.", DURATION
    )
    writeTimeout: float = setting(
        0.0, "Maximum time to write a response; 0 means no limit.", DURATION
    )
    idleTimeout: float = setting(
        180.0, "How long an idle keep-alive connection stays open.", DURATION
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
        check=_not_negative,
    )


@dataclass(frozen=True, slots=True)
class ForwardedHeaders:
    trustedIPs: tuple[str, ...] = setting(
        (),
        "Clients (IPs or CIDRs) whose X-Forwarded-* headers are kept and appended to.",
        check=_check_cidr,
    )
    insecure: bool = setting(False, "Trust X-Forwarded-* headers from every client.")


@dataclass(frozen=True, slots=True)
class EntryPointHTTP:
    maxRequestLineBytes: int = setting(
        8192, "Longest request line accepted (414 above).", check=_positive
    )
    maxHeaderBytes: int = setting(
        32768, "Largest request header section (431 above).", check=_positive
    )
    maxHeaderFields: int = setting(100, "Most request header fields (431 above).", check=_positive)


def _check_rate(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else "expected a probability between 0 and 1"


def _check_host_port(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        return "expected host:port such as localhost:4317"
    return None


def _check_http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL such as http://localhost:4318/v1/traces"
    return None


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


def _check_status_range(value: str) -> str | None:
    low, _, high = value.partition("-")
    if not low.isdigit() or (high and not high.isdigit()) or (high and int(high) < int(low)):
        return "expected a status code or a range such as 200, 500-599"
    return None


@dataclass(frozen=True, slots=True)
class AccessLogFilters:
    statusCodes: tuple[str, ...] = setting(
        (),
        "Keep lines whose status is in one of these codes or ranges (500-599).",
        check=_check_status_range,
    )
    retryAttempts: bool = setting(False, "Keep lines of requests that were retried.")
    minDuration: float = setting(0.0, "Keep lines of requests that took longer.", DURATION)


_MODES = ("keep", "drop")
_HEADER_MODES = ("keep", "drop", "redact")


@dataclass(frozen=True, slots=True)
class AccessLogHeaders:
    defaultMode: str = setting(
        "drop", "Request headers: keep, drop or redact.", check=_one_of(*_HEADER_MODES)
    )
    names: Mapping[str, str] = setting(
        {}, "Per header: keep, drop or redact.", check=_one_of(*_HEADER_MODES)
    )


@dataclass(frozen=True, slots=True)
class AccessLogFields:
    defaultMode: str = setting("keep", "Fields: keep or drop.", check=_one_of(*_MODES))
    names: Mapping[str, str] = setting(
        {}, "Per field (e.g. ClientHost): keep or drop.", check=_one_of(*_MODES)
    )
    headers: AccessLogHeaders = setting(AccessLogHeaders(), "Request headers in the log.")


@dataclass(frozen=True, slots=True)
class AccessLog:
    filePath: str = setting(
        "", "File to write; empty writes to standard output. SIGUSR1 reopens it."
    )
    format: str = setting("json", "json or common.", check=_one_of("json", "common"))
    bufferingSize: int = setting(
        0,
        "Lines held before a write; 0 writes every tick (250 ms). Never on the request path.",
        check=_not_negative,
    )
    filters: AccessLogFilters | None = setting(None, "Keep only matching lines (any filter).")
    fields: AccessLogFields = setting(AccessLogFields(), "Which fields and headers.")
    addInternals: bool = setting(False, "Also log /ping and /metrics.")


@dataclass(frozen=True, slots=True)
class Prometheus:
    entryPoint: str = setting("internal", "Entrypoint that serves /metrics.")
    buckets: tuple[float, ...] = setting(
        (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        "Request duration histogram bounds, in seconds.",
        check=_positive,
    )
    addEntryPointsLabels: bool = setting(True, "hopwire_entrypoint_* families.")
    addRoutersLabels: bool = setting(False, "hopwire_router_* families (label router, service).")
    addServicesLabels: bool = setting(True, "hopwire_service_* families.")


@dataclass(frozen=True, slots=True)
class Metrics:
    prometheus: Prometheus | None = setting(Prometheus(), "Prometheus metrics (false: off).")
    addInternals: bool = setting(False, "Also count /ping and /metrics requests.")


@dataclass(frozen=True, slots=True)
class ClientTLS:
    ca: str = setting("", "PEM file of the CA that signs the collector's certificate.")
    cert: str = setting("", "PEM client certificate (mutual TLS).")
    key: str = setting("", "PEM client key (mutual TLS).")
    insecureSkipVerify: bool = setting(
        False, "Do not verify the collector's certificate (OTLP/HTTP only)."
    )


@dataclass(frozen=True, slots=True)
class OTLPGrpc:
    endpoint: str = setting("localhost:4317", "Collector host:port.", check=_check_host_port)
    insecure: bool = setting(False, "Plaintext gRPC (no TLS).")
    headers: Mapping[str, str] = setting({}, "gRPC metadata sent with every export.")
    tls: ClientTLS | None = setting(None, "TLS settings; not allowed with insecure.")
    compression: str = setting("none", "none or gzip.", check=_one_of("none", "gzip"))
    timeout: float = setting(10.0, "Deadline of one export call.", DURATION, _positive)


@dataclass(frozen=True, slots=True)
class OTLPHttp:
    endpoint: str = setting(
        "http://localhost:4318/v1/traces", "Collector URL.", check=_check_http_url
    )
    headers: Mapping[str, str] = setting({}, "HTTP headers sent with every export.")
    tls: ClientTLS | None = setting(None, "TLS settings for https:// endpoints.")
    compression: str = setting("none", "none or gzip.", check=_one_of("none", "gzip"))
    timeout: float = setting(10.0, "Deadline of one export request.", DURATION, _positive)


@dataclass(frozen=True, slots=True)
class OTLP:
    grpc: OTLPGrpc | None = setting(None, "Export over OTLP/gRPC (the default).")
    http: OTLPHttp | None = setting(None, "Export over OTLP/HTTP (protobuf).")


@dataclass(frozen=True, slots=True)
class Batch:
    maxQueueSize: int = setting(
        2048, "Spans held by the exporter; more are dropped and counted.", check=_positive
    )
    scheduleDelay: float = setting(
        5.0, "Longest wait before a partial batch is sent.", DURATION, _positive
    )
    maxExportBatchSize: int = setting(512, "Spans per export request.", check=_positive)
    exportTimeout: float = setting(
        30.0, "Longest time one batch may take, retries included.", DURATION, _positive
    )


@dataclass(frozen=True, slots=True)
class Tracing:
    serviceName: str = setting("hopwire", "service.name of the resource.")
    sampleRate: float = setting(
        1.0,
        "Probability of sampling a new (root) trace; an inbound "
        "parent's decision is always obeyed.",
        check=_check_rate,
    )
    addInternals: bool = setting(False, "Also trace /ping and other internal endpoints.")
    resourceAttributes: Mapping[str, str] = setting({}, "Extra resource attributes.")
    otlp: OTLP = setting(OTLP(), "Where spans go (OTLP/gRPC unless otlp.http is set).")
    batch: Batch = setting(Batch(), "Batching in the exporter process (OTEL_BSP_* defaults).")
    exporters: int = setting(1, "Exporter processes.", check=_positive)


@dataclass(frozen=True, slots=True)
class EntryPoint:
    address: str = setting(
        REQUIRED, "Listening address: :8080, 127.0.0.1:8080, [::1]:8080.", check=_check_address
    )
    reusePort: bool = setting(False, "Set SO_REUSEPORT on the listening socket.")
    transport: EntryPointTransport = setting(EntryPointTransport(), "Timeouts and life cycle.")
    forwardedHeaders: ForwardedHeaders = setting(ForwardedHeaders(), "X-Forwarded-* trust.")
    http: EntryPointHTTP = setting(EntryPointHTTP(), "Request size limits.")
    observability: Observability = setting(Observability(), "Per-entrypoint telemetry.")


@dataclass(frozen=True, slots=True)
class Router:
    rule: str = setting(REQUIRED, "Matching rule, e.g. Host(`a.example`) && PathPrefix(`/api`).")
    service: str = setting(REQUIRED, "Name of the service that receives matching requests.")
    entryPoints: tuple[str, ...] = setting(
        (), "Entrypoints this router listens on; empty means every non-internal entrypoint."
    )
    priority: int = setting(0, "Higher wins; 0 means the length of the rule.", check=_not_negative)
    observability: Observability = setting(Observability(), "Per-router telemetry.")


@dataclass(frozen=True, slots=True)
class Server:
    url: str = setting(REQUIRED, "Backend URL, http:// or https://.", check=_check_server_url)
    weight: int = setting(1, "Relative weight in weighted round robin.", check=_not_negative)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    path: str = setting(REQUIRED, "Path requested on each server, e.g. /health.")
    interval: float = setting(30.0, "Time between checks.", DURATION, _positive)
    timeout: float = setting(
        5.0, "Time a check may take before it counts as failed.", DURATION, _positive
    )
    status: int = setting(0, "Expected status code; 0 accepts any 2xx or 3xx.", check=_status_code)


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    servers: tuple[Server, ...] = setting(REQUIRED, "The backend servers.")
    passHostHeader: bool = setting(True, "Forward the client's Host; false sends the server's.")
    strategy: str = setting(
        "wrr",
        "wrr (smooth weighted round robin) or p2c (power of two choices, fewest in-flight).",
        check=_one_of("wrr", "p2c"),
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


@dataclass(frozen=True, slots=True)
class ServersTransport:
    forwardingTimeouts: ForwardingTimeouts = setting(ForwardingTimeouts(), "Backend timeouts.")
    maxIdleConnsPerHost: int = setting(
        200, "Idle keep-alive connections kept per server.", check=_not_negative
    )
    insecureSkipVerify: bool = setting(False, "Do not verify backend TLS certificates.")
    rootCAs: tuple[str, ...] = setting((), "PEM files of CAs trusted for https:// backends.")


@dataclass(frozen=True, slots=True)
class HTTP:
    routers: Mapping[str, Router] = setting({}, "Routers by name.")
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
        check=_one_of("DEBUG", "INFO", "WARN", "WARNING", "ERROR"),
    )
    filePath: str = setting("", "Log file; empty writes to standard error. SIGUSR1 reopens it.")
    format: str = setting(
        "json",
        "json (one object per line) or common (plain text).",
        check=_one_of("json", "common"),
    )


@dataclass(frozen=True, slots=True)
class Config:
    workers: int = setting(0, "Worker processes; 0 means one per CPU.", check=_not_negative)
    heartbeatTimeout: float = setting(
        30.0,
        "A worker whose event loop has not ticked for this long is killed and replaced.",
        DURATION,
        _positive,
    )
    entryPoints: Mapping[str, EntryPoint] = setting(
        {}, "Listening entrypoints by name; none configured means `web` on :8080."
    )
    http: HTTP = setting(HTTP(), "Routers, services and backend transports.")
    serversTransport: ServersTransport = setting(
        ServersTransport(), "Defaults for backends without a named serversTransport."
    )
    ping: Ping = setting(Ping(), "Health endpoint /ping.")
    log: Log = setting(Log(), "Application log.")
    tracing: Tracing | None = setting(
        None, "OpenTelemetry tracing; off unless present (`tracing: {}` or --tracing=true)."
    )
    metrics: Metrics = setting(Metrics(), "Prometheus metrics, on by default.")
    accessLog: AccessLog | None = setting(None, "Access log; off unless present (`accessLog: {}`).")

    @property
    def worker_count(self) -> int:
        return self.workers or (os.cpu_count() or 1)


INTERNAL_ENTRYPOINT = "internal"
INTERNAL_ADDRESS = "127.0.0.1:8082"


# ---------------------------------------------------------------------------------------------
# Loading.


class ConfigError(Exception):
    """Raised with every problem found; ``errors`` lists ``key: message`` strings."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _suggest(word: str, names: list[str]) -> str:
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    if not close:
        lowered = {n.lower(): n for n in names}
        close = [lowered[c] for c in difflib.get_close_matches(word.lower(), list(lowered), n=1)]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unwrap_optional(tp: Any) -> Any:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else '"' + value + '"'


def _scalar(tp: Any, kind: str | None, value: Any, key: str, errors: list[str]) -> Any:
    if isinstance(value, dict | list):
        errors.append(f"{key}: expected a single value, got a {type(value).__name__}")
        return None
    try:
        if kind == DURATION:
            return parse_duration(value)
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1"):
                return True
            if text in ("false", "0"):
                return False
            raise ValueError("expected true or false")
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected an integer")
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if tp is str:
            return str(value)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("invalid literal") or message.startswith("could not convert"):
            message = "expected " + ("an integer" if tp is int else "a number")
        errors.append(f"{key}: {_show(value)} is not valid: {message}")
        return None
    raise TypeError(f"schema type {tp!r} not handled")  # a bug in the schema, not in the input


def _build(tp: Any, kind: str | None, check: Any, value: Any, key: str, errors: list[str]) -> Any:
    optional = _unwrap_optional(tp) is not tp
    tp = _unwrap_optional(tp)
    if dataclasses.is_dataclass(tp):
        text = str(value).strip().lower() if isinstance(value, str | bool) else None
        if optional and text == "false":
            return None  # an optional section switched off
        if text == "true":
            value = {}
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build_struct(tp, value, key, errors)
    if origin is Mapping:
        _, item_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping of names, got {_show(value)}")
            return types.MappingProxyType({})
        built = {}
        for name, item in value.items():
            name = str(name)
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", name):
                errors.append(f"{key}.{name}: invalid name: use letters, digits, _ . @ -")
                continue
            built[name] = _build(item_tp, None, check, item, f"{key}.{name}", errors)
        return types.MappingProxyType(built)
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if isinstance(value, str) and not dataclasses.is_dataclass(item_tp):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, dict) and all(str(k).isdigit() for k in value):
            value = [value[k] for k in sorted(value, key=lambda k: int(k))]
        if not isinstance(value, list):
            errors.append(f"{key}: expected a list, got {_show(value)}")
            return ()
        items = []
        for i, item in enumerate(value):
            built_item = _build(item_tp, kind, check, item, f"{key}[{i}]", errors)
            items.append(built_item)
        return tuple(items)
    result = _scalar(tp, kind, value, key, errors)
    if result is not None and check is not None:
        problem = check(result)
        if problem:
            errors.append(f"{key}: {_show(value)} is not valid: {problem}")
    return result


def _build_struct(cls: Any, value: Any, key: str, errors: list[str]) -> Any:
    if value is None or value is True:
        value = {}
    if not isinstance(value, dict):
        errors.append(f"{key or 'config'}: expected a mapping, got {_show(value)}")
        value = {}
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    lowered = {n.lower(): n for n in names}
    given: dict[str, Any] = {}
    for raw_key, item in value.items():
        name = str(raw_key)
        if name not in hints:
            name = lowered.get(name.lower(), "")
        if not name:
            where = f"{key}.{raw_key}" if key else str(raw_key)
            errors.append(f"{where}: unknown key{_suggest(str(raw_key), names)}")
            continue
        given[name] = item
    kwargs = {}
    for f in dataclasses.fields(cls):
        sub = f"{key}.{f.name}" if key else f.name
        if f.name in given:
            kwargs[f.name] = _build(
                hints[f.name],
                f.metadata.get("kind"),
                f.metadata.get("check"),
                given[f.name],
                sub,
                errors,
            )
        elif f.default is REQUIRED:
            errors.append(f"{sub}: required key is missing ({f.metadata['doc']})")
            kwargs[f.name] = None
    return cls(**kwargs)


def read_file(path: str) -> dict[str, Any]:
    """Read a YAML (.yml/.yaml) or TOML (.toml) file into a plain mapping."""
    ext = os.path.splitext(path)[1].lower()
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError([f"config file {path}: cannot read: {exc.strerror}"])
    try:
        if ext == ".toml":
            loaded: Any = tomllib.loads(data.decode("utf-8"))
        elif ext in (".yml", ".yaml"):
            loaded = yaml.safe_load(data)
        else:
            raise ConfigError(
                [f"config file {path}: unknown extension {ext!r}: expected .yml, .yaml or .toml"]
            )
    except (yaml.YAMLError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"config file {path}: cannot parse: {exc}"])
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError([f"config file {path}: expected a mapping at the top level"])
    return loaded


def _resolve(segments: list[str], origin: str, errors: list[str]) -> list[str | int] | None:
    """Map override segments onto canonical schema names (case-insensitively)."""
    tp: Any = Config
    out: list[str | int] = []
    for i, seg in enumerate(segments):
        tp = _unwrap_optional(tp)
        origin_tp = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            names = [f.name for f in dataclasses.fields(tp)]
            match = next((n for n in names if n.lower() == seg.lower()), None)
            if match is None:
                errors.append(f"{origin}: unknown key {seg!r}{_suggest(seg, names)}")
                return None
            out.append(match)
            tp = _hints(typing.cast(type, tp))[match]
        elif origin_tp is Mapping:
            out.append(seg)
            tp = typing.get_args(tp)[1]
        elif origin_tp is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            if not seg.isdigit():
                errors.append(f"{origin}: expected a list index at {seg!r}")
                return None
            out.append(int(seg))
            tp = typing.get_args(tp)[0]
        else:
            errors.append(f"{origin}: {'.'.join(segments[:i])} takes a value, not sub-keys")
            return None
    return out


def _set(raw: dict[str, Any], path: list[str | int], value: Any) -> None:
    node: Any = raw
    for seg, nxt in itertools.pairwise(path):
        if isinstance(node, dict):
            found = next((k for k in node if str(k).lower() == str(seg).lower()), seg)
            child = node.get(found)
            if not isinstance(child, dict | list):
                child = [] if isinstance(nxt, int) else {}
                node[found] = child
            node = child
        else:
            while len(node) <= int(seg):
                node.append({})
            if not isinstance(node[seg], dict | list):
                node[seg] = [] if isinstance(nxt, int) else {}
            node = node[seg]
    last = path[-1]
    if isinstance(node, dict):
        found = next((k for k in node if str(k).lower() == str(last).lower()), last)
        node[found] = value
    else:
        while len(node) <= int(last):
            node.append({})
        node[last] = value


def _flag_segments(name: str) -> list[str]:
    return [s for s in re.split(r"[.\[\]]+", name) if s]


def _ci_get(node: Any, *path: str) -> Any:
    """The value at ``path`` in a raw mapping (keys matched case-insensitively), or None."""
    for seg in path:
        if not isinstance(node, dict):
            return None
        node = next((v for k, v in node.items() if str(k).lower() == seg.lower()), None)
    return node


def _ci_set_default(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    if _ci_get(raw, *path) is None:
        _set(raw, list(path), value)


TRUTHY = ("1", "true")


def _proxy_tracing_env(raw: dict[str, Any], environ: Mapping[str, str], errors: list[str]) -> None:
    """PROXY_TRACING_* of the Kubernetes proxy, with exactly its semantics (DESIGN §4).

    They rank with the environment: above the file, below HOPWIRE_* variables and flags.
    """
    enabled = environ.get("PROXY_TRACING_ENABLED")
    if enabled is not None:
        if enabled.strip().lower() in TRUTHY:
            if not isinstance(_ci_get(raw, "tracing"), dict):
                _set(raw, ["tracing"], {})
        else:
            _set(raw, ["tracing"], False)
    endpoint = environ.get("PROXY_TRACING_ENDPOINT", "").strip()
    if endpoint:
        scheme, sep, rest = endpoint.partition("://")
        if not sep:
            scheme, rest = "", endpoint
        rest = rest.rstrip("/")
        if scheme not in ("", "http", "https") or _check_host_port(rest):
            errors.append(
                f"environment PROXY_TRACING_ENDPOINT: {endpoint!r} is not valid: "
                "expected host:port, http://host:port or https://host:port"
            )
        else:
            _set(raw, ["tracing", "otlp", "grpc", "endpoint"], rest)
            _set(raw, ["tracing", "otlp", "grpc", "insecure"], scheme != "https")
    rate = environ.get("PROXY_TRACING_SAMPLE_RATE")
    if rate is not None and rate.strip():
        try:
            value = float(rate)
        except ValueError:
            value = -1.0
        if not 0.0 <= value <= 1.0:
            errors.append(
                f"environment PROXY_TRACING_SAMPLE_RATE: {rate!r} is not valid: "
                "expected a probability between 0 and 1"
            )
        else:
            _set(raw, ["tracing", "sampleRate"], value)


def _otel_env(raw: dict[str, Any], environ: Mapping[str, str], errors: list[str]) -> None:
    """The standard OTEL_* variables fill in only what no explicit setting gave."""
    tracing = _ci_get(raw, "tracing")
    if (
        tracing is True
        or (tracing is None and any(str(k).lower() == "tracing" for k in raw))
        or str(tracing).strip().lower() == "true"
    ):
        _set(raw, ["tracing"], {})  # `tracing: true`, `tracing:` and --tracing=true enable it
        tracing = _ci_get(raw, "tracing")
    if not isinstance(tracing, dict):
        return

    def env(name: str) -> str:
        return (
            environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}")
            or environ.get(f"OTEL_EXPORTER_OTLP_{name}")
            or ""
        ).strip()

    otlp = _ci_get(tracing, "otlp") or {}
    has_grpc, has_http = _ci_get(otlp, "grpc") is not None, _ci_get(otlp, "http") is not None
    protocol = env("PROTOCOL")
    if protocol not in ("", "grpc", "http/protobuf"):
        errors.append(
            f"environment OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported: "
            "expected grpc or http/protobuf"
        )
        return
    kind = "http" if has_http or (not has_grpc and protocol == "http/protobuf") else "grpc"
    base = ("tracing", "otlp", kind)
    if not (has_grpc or has_http):
        _set(raw, list(base), {})
    traces_endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    endpoint = traces_endpoint or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if endpoint and _ci_get(raw, *base, "endpoint") is None:
        if kind == "http":
            if not traces_endpoint:  # the generic variable names the base URL
                endpoint = endpoint.rstrip("/") + "/v1/traces"
            _set(raw, [*base, "endpoint"], endpoint)
        else:
            scheme, sep, rest = endpoint.partition("://")
            _set(raw, [*base, "endpoint"], (rest if sep else endpoint).rstrip("/"))
            if sep and _ci_get(raw, *base, "insecure") is None:
                _set(raw, [*base, "insecure"], scheme == "http")
    if kind == "grpc" and env("INSECURE"):
        _ci_set_default(raw, (*base, "insecure"), env("INSECURE").lower() in TRUTHY)
    headers = env("HEADERS")
    if headers and _ci_get(raw, *base, "headers") is None:
        parsed = {}
        for item in headers.split(","):
            k, sep, v = item.partition("=")
            if not sep or not k.strip():
                errors.append("environment OTEL_EXPORTER_OTLP_HEADERS: expected key=value,...")
                break
            parsed[unquote(k.strip()).lower()] = unquote(v.strip())
        _set(raw, [*base, "headers"], parsed)
    for var, key in (("CERTIFICATE", "ca"), ("CLIENT_CERTIFICATE", "cert"), ("CLIENT_KEY", "key")):
        if env(var) and not (kind == "grpc" and _ci_get(raw, *base, "insecure") is True):
            _ci_set_default(raw, (*base, "tls", key), env(var))
    if env("COMPRESSION"):
        _ci_set_default(raw, (*base, "compression"), env("COMPRESSION"))
    if env("TIMEOUT"):
        _ci_set_default(raw, (*base, "timeout"), f"{env('TIMEOUT')}ms")
    if environ.get("OTEL_SERVICE_NAME", "").strip():
        _ci_set_default(raw, ("tracing", "serviceName"), environ["OTEL_SERVICE_NAME"].strip())
    for item in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        k, sep, v = item.partition("=")
        if sep and k.strip():
            _ci_set_default(
                raw, ("tracing", "resourceAttributes", unquote(k.strip())), unquote(v.strip())
            )
    for var, key, unit in (
        ("SCHEDULE_DELAY", "scheduleDelay", "ms"),
        ("MAX_QUEUE_SIZE", "maxQueueSize", ""),
        ("MAX_EXPORT_BATCH_SIZE", "maxExportBatchSize", ""),
        ("EXPORT_TIMEOUT", "exportTimeout", "ms"),
    ):
        value = environ.get(f"OTEL_BSP_{var}", "").strip()
        if value:
            _ci_set_default(raw, ("tracing", "batch", key), value + unit)


def load(
    path: str | None,
    flags: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load and validate; raise ConfigError with every problem found."""
    errors: list[str] = []
    raw: dict[str, Any] = read_file(path) if path else {}
    environ = os.environ if environ is None else environ
    _proxy_tracing_env(raw, environ, errors)
    for name in sorted(environ):
        if not name.startswith("HOPWIRE_") or name == "HOPWIRE_CONFIG":
            continue
        segments = [s.lower() for s in name[len("HOPWIRE_") :].split("_") if s]
        resolved = _resolve(segments, f"environment {name}", errors)
        if resolved is not None:
            _set(raw, resolved, environ[name])
    for flag in flags or []:
        body = flag[2:] if flag.startswith("--") else flag
        name, sep, value = body.partition("=")
        resolved = _resolve(_flag_segments(name), f"flag --{name}", errors)
        if resolved is not None:
            _set(raw, resolved, value if sep else "true")
    _otel_env(raw, environ, errors)
    config = _build_struct(Config, raw, "", errors)
    if not errors:
        config = _with_defaults(config)
        errors.extend(validate(config))
    if errors:
        raise ConfigError(errors)
    return typing.cast(Config, config)


def _with_defaults(config: Config) -> Config:
    """Add the implicit entrypoints: `web` when none is configured, and `internal`."""
    eps = dict(config.entryPoints)
    if not eps:
        eps["web"] = EntryPoint(address=":8080")
    if INTERNAL_ENTRYPOINT not in eps:
        eps[INTERNAL_ENTRYPOINT] = EntryPoint(address=INTERNAL_ADDRESS)
    return dataclasses.replace(config, entryPoints=types.MappingProxyType(eps))


def validate(config: Config) -> list[str]:
    """Cross-field checks: references between sections, rules, addresses."""
    from hopwire.routing import RuleError, parse_rule  # routing depends on config, not back

    errors: list[str] = []
    seen: dict[tuple[str, int], str] = {}
    for name, ep in config.entryPoints.items():
        host, port = parse_address(ep.address)
        other = seen.get((host, port))
        if other:
            errors.append(
                f"entryPoints.{name}.address: {ep.address!r} is already used by "
                f"entrypoint {other!r}"
            )
        seen[(host, port)] = name
    prom = config.metrics.prometheus
    if prom is not None:
        if prom.entryPoint not in config.entryPoints:
            errors.append(
                f"metrics.prometheus.entryPoint: {prom.entryPoint!r} is not an entrypoint"
                f"{_suggest(prom.entryPoint, list(config.entryPoints))}"
            )
        if list(prom.buckets) != sorted(set(prom.buckets)):
            errors.append("metrics.prometheus.buckets: expected increasing, distinct bounds")
    if config.ping.entryPoint not in config.entryPoints:
        errors.append(
            f"ping.entryPoint: {config.ping.entryPoint!r} is not an entrypoint"
            f"{_suggest(config.ping.entryPoint, list(config.entryPoints))}"
        )
    transports = config.http.serversTransports
    for name, svc in config.http.services.items():
        lb = svc.loadBalancer
        if not lb.servers:
            errors.append(
                f"http.services.{name}.loadBalancer.servers: at least one server is required"
            )
        elif not any(s.weight for s in lb.servers):
            errors.append(f"http.services.{name}.loadBalancer.servers: every weight is 0")
        if lb.serversTransport and lb.serversTransport not in transports:
            errors.append(
                f"http.services.{name}.loadBalancer.serversTransport: "
                f"{lb.serversTransport!r} is not in http.serversTransports"
                f"{_suggest(lb.serversTransport, list(transports))}"
            )
    for name, tr in [
        ("serversTransport", config.serversTransport),
        *((f"http.serversTransports.{n}", t) for n, t in transports.items()),
    ]:
        for i, ca in enumerate(tr.rootCAs):
            if not os.path.isfile(ca):
                errors.append(f"{name}.rootCAs[{i}]: {ca!r} is not a readable file")
    if config.tracing is not None:
        otlp = config.tracing.otlp
        if otlp.grpc is not None and otlp.http is not None:
            errors.append("tracing.otlp: set grpc or http, not both")
        if otlp.grpc is not None and otlp.grpc.insecure and otlp.grpc.tls is not None:
            errors.append("tracing.otlp.grpc: insecure together with tls: choose one")
        if otlp.grpc is not None and otlp.grpc.tls is not None and otlp.grpc.tls.insecureSkipVerify:
            errors.append(
                "tracing.otlp.grpc.tls.insecureSkipVerify: not supported for gRPC "
                "(grpcio cannot skip verification): give tls.ca instead"
            )
        for kind, target in (("grpc", otlp.grpc), ("http", otlp.http)):
            tls = getattr(target, "tls", None)
            for field_name in ("ca", "cert", "key"):
                value = getattr(tls, field_name, "") if tls is not None else ""
                if value and not os.path.isfile(value):
                    errors.append(
                        f"tracing.otlp.{kind}.tls.{field_name}: {value!r} is not a readable file"
                    )
            if tls is not None and bool(tls.cert) != bool(tls.key):
                errors.append(f"tracing.otlp.{kind}.tls: cert and key go together")
    for name, router in config.http.routers.items():
        key = f"http.routers.{name}"
        if router.service not in config.http.services:
            errors.append(
                f"{key}.service: {router.service!r} is not a service"
                f"{_suggest(router.service, list(config.http.services))}"
            )
        for ep_name in router.entryPoints:
            if ep_name not in config.entryPoints:
                errors.append(
                    f"{key}.entryPoints: {ep_name!r} is not an entrypoint"
                    f"{_suggest(ep_name, list(config.entryPoints))}"
                )
        try:
            parse_rule(router.rule)
        except RuleError as exc:
            errors.append(f"{key}.rule: {router.rule!r}: {exc}")
    return errors


def reference() -> str:
    """The configuration reference, generated from the schema (used for the README)."""
    lines: list[str] = []

    def walk(cls: Any, prefix: str) -> None:
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            tp = _unwrap_optional(hints[f.name])
            origin = typing.get_origin(tp)
            key = f"{prefix}{f.name}"
            doc = f.metadata.get("doc", "")
            if dataclasses.is_dataclass(tp):
                walk(tp, key + ".")
            elif origin is Mapping and dataclasses.is_dataclass(typing.get_args(tp)[1]):
                lines.append(f"| `{key}.<name>` | | {doc} |")
                walk(typing.get_args(tp)[1], key + ".<name>.")
            elif origin is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
                lines.append(f"| `{key}[]` | | {doc} |")
                walk(typing.get_args(tp)[0], key + "[].")
            else:
                default = f.default
                if default is REQUIRED:
                    shown = "required"
                elif f.metadata.get("kind") == DURATION:
                    shown = f"{default:g}s"
                elif default in ("", ()):
                    shown = "—"
                else:
                    shown = (
                        f"`{default}`" if not isinstance(default, bool) else str(default).lower()
                    )
                lines.append(f"| `{key}` | {shown} | {doc} |")

    walk(Config, "")
    return "| key | default | meaning |\n| --- | --- | --- |\n" + "\n".join(lines)
