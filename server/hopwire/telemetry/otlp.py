"""OTLP ExportTraceServiceRequest bytes written directly from span records.

Measured on this machine (DESIGN §3): building opentelemetry-proto messages costs ~10 µs per
span.  Here a span is a join of a few byte strings: the parts that repeat are encoded once and
reused, keyed by the request's *shape* (method, route, host, port, client address, protocol,
user agent, status, error), so that what is written per span is its ids, timestamps, path,
peer port and query.  The tests decode what this writes with opentelemetry-proto.

This module is the reference encoder.  ``hopwire.telemetry._otlp`` (C, built at install) writes
the same bytes faster; a property test proves the two byte-identical on random records, and
``tracing.encoder`` chooses which one the exporter runs.

The record is a ``SpanRecord`` with ``AttemptRecord`` attempts (hopwire.telemetry.records),
unpacked here in that order.  Field order inside a span (the wire allows any):

    SERVER: trace_id span_id [trace_state] [parent_span_id] start end url.path
            network.peer.port [url.query] [captured headers] <shape block> flags
    CLIENT: trace_id span_id [trace_state] parent_span_id start end url.full <shape block> flags

where a SERVER shape block is the name, the kind, the attributes that repeat, and the error
status; a CLIENT one the same for (method, server address, port, status, error).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

SERVER = 2
CLIENT = 3
STATUS_ERROR = b"\x7a\x02\x18\x02"  # Span.status = Status{code: STATUS_CODE_ERROR}
HAS_IS_REMOTE = 0x100
IS_REMOTE = 0x200
CACHE_MAX = 20_000  # shape blocks held; cleared when full (a high-cardinality value cannot grow it)

_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack


_SMALL = [bytes((n,)) for n in range(0x80)]


def varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def split_spans(data: bytes) -> list[bytes] | None:
    """The ScopeSpans.spans entries (tag 2, a varint length, that many bytes) ``data`` is
    made of exactly, or None."""
    entries = []
    at, n = 0, len(data)
    while at < n:
        start = at
        if data[at] != 0x12:
            return None
        at += 1
        length = shift = 0
        while True:
            if at >= n or shift > 63:
                return None
            c = data[at]
            at += 1
            length |= (c & 0x7F) << shift
            if not c & 0x80:
                break
            shift += 7
        if length > n - at:
            return None
        at += length
        entries.append(data[start:at])
    return entries


def ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + varint(len(payload)) + payload


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "replace")


_KEYS: dict[str, bytes] = {}


def _key(key: str) -> bytes:
    """The key field of a KeyValue (encoded once per key)."""
    k = _KEYS.get(key)
    if k is None:
        k = _KEYS[key] = ld(b"\x0a", utf8(key))
    return k


def _kv(key: str, any_value: bytes) -> bytes:
    """KeyValue{key, value}, as a repeated attributes entry (tag 9)."""
    return ld(b"\x4a", _key(key) + ld(b"\x12", any_value))


def kv_str(key: str, value: str) -> bytes:
    v = utf8(value)
    n = len(v)
    k = _key(key)
    any_len = 1 + len(varint(n)) + n
    inner = len(k) + 1 + len(varint(any_len)) + any_len
    return b"".join((b"\x4a", varint(inner), k, b"\x12", varint(any_len), b"\x0a", varint(n), v))


def kv_int(key: str, value: int) -> bytes:
    return _kv(key, b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF))


def kv_bool(key: str, value: bool) -> bytes:
    return _kv(key, b"\x10\x01" if value else b"\x10\x00")


def kv_strings(key: str, values: Iterable[str]) -> bytes:
    """An attribute whose value is an array of strings (AnyValue.array_value)."""
    array = b"".join(ld(b"\x0a", ld(b"\x0a", utf8(v))) for v in values)
    return _kv(key, ld(b"\x2a", array))


def resource_part(
    attributes: Mapping[str, str], scope_name: str, scope_version: str
) -> tuple[bytes, bytes]:
    """(Resource field of ResourceSpans, InstrumentationScope field of ScopeSpans)."""
    attrs = b"".join(
        ld(b"\x0a", ld(b"\x0a", utf8(k)) + ld(b"\x12", ld(b"\x0a", utf8(v))))
        for k, v in attributes.items()
    )
    resource = ld(b"\x0a", attrs)
    scope = ld(b"\x0a", ld(b"\x0a", utf8(scope_name)) + ld(b"\x12", utf8(scope_version)))
    return resource, scope


def redactor(safe: Collection[str]) -> Callable[[str], str]:
    """The query as spans show it: values replaced by REDACTED except those of ``safe``
    parameters (tracing.safeQueryParams); keys are kept (the application bounds them)."""
    keep = frozenset(safe)

    def redact(query: str) -> str:
        out = []
        for part in query.split("&"):
            key, sep, _ = part.partition("=")
            out.append(part if not sep or key in keep else key + "=REDACTED")
        return "&".join(out)

    return redact


redact_query = redactor(())


def request(resource: bytes, scope: bytes, spans: Sequence[bytes]) -> bytes:
    """An ExportTraceServiceRequest holding ``spans`` under one resource and scope, written
    with one copy of the spans."""
    scope_len = len(scope) + sum(map(len, spans))
    scope_head = b"\x12" + varint(scope_len)
    rs_len = len(resource) + len(scope_head) + scope_len
    return b"".join((b"\x0a", varint(rs_len), resource, scope_head, scope, *spans))


def _outcome(status: int, error_type: str) -> list[bytes]:
    """The status code and error.type attributes, each when there is one."""
    parts = []
    if status:
        parts.append(kv_int("http.response.status_code", status))
    if error_type:
        parts.append(kv_str("error.type", error_type))
    return parts


def _server_block(
    method: str,
    route: str,
    address: str,
    port: int,
    client_address: str,
    version: str,
    user_agent: str,
    status: int,
    error_type: str,
    upgraded: bool,
    scheme: str,
) -> bytes:
    name = f"{method} {route}" if route else method  # no route: just the method
    parts = [
        ld(b"\x2a", utf8(name)),
        b"\x30\x02",  # kind SERVER
        kv_str("http.request.method", method),
        kv_str("url.scheme", scheme),
        kv_str("server.address", address),
        kv_int("server.port", port),
        kv_str("client.address", client_address),
        kv_str("network.peer.address", client_address),
        kv_str("network.protocol.version", version),
    ]
    if route:
        parts.append(kv_str("http.route", route))
    if user_agent:
        parts.append(kv_str("user_agent.original", user_agent))
    parts += _outcome(status, error_type)
    if upgraded:
        parts.append(kv_bool("http.connection.upgrade", True))
    if status >= 500:
        parts.append(STATUS_ERROR)
    return b"".join(parts)


def _client_block(method: str, address: str, port: int, status: int, error_type: str) -> bytes:
    parts = [
        ld(b"\x2a", utf8(method)),
        b"\x30\x03",  # kind CLIENT
        kv_str("http.request.method", method),
        kv_str("server.address", address),
        kv_int("server.port", port),
        *_outcome(status, error_type),
    ]
    if status >= 400 or error_type:
        parts.append(STATUS_ERROR)
    return b"".join(parts)


_pack_times = struct.Struct("<BQBQ").pack  # start_time_unix_nano (7), end (8): fixed64


def _head(tid: bytes, span: bytes, state: bytes, parent: bytes, start: int, end: int) -> bytes:
    """trace_id, span_id, [trace_state], [parent_span_id], start and end."""
    return b"".join(
        (
            b"\x0a\x10",
            tid,
            b"\x12\x08",
            span,
            ld(b"\x1a", state) if state else b"",
            b"\x22\x08" + parent if parent else b"",
            _pack_times(0x39, start, 0x41, end),
        )
    )


RECORD_FIELDS = 25  # a SpanRecord's (records.SpanRecord), without its optional SpanExtra
KEPT = "hopwire.sampling.kept"  # an unsampled request's spans exported after the fact: why


def _link(tid: bytes, span: bytes, flags: int, state: bytes) -> bytes:
    """Span.links (field 13) entry: trace_id, span_id, [trace_state], flags."""
    if len(tid) != 16 or len(span) != 8:
        raise ValueError("span link with ids of the wrong size")
    return ld(
        b"\x6a",
        b"".join(
            (
                b"\x0a\x10",
                tid,
                b"\x12\x08",
                span,
                ld(b"\x1a", state) if state else b"",
                b"\x35" + _pack_i((flags & 0xFF) | HAS_IS_REMOTE | IS_REMOTE),
            )
        ),
    )


def internal_block(name: str, attributes: Sequence[tuple[str, str]]) -> bytes:
    """The constant part of an INTERNAL span (its name, kind and attributes), made once."""
    return b"".join(
        (
            ld(b"\x2a", utf8(name)),
            b"\x30\x01",  # kind INTERNAL
            *(kv_str(key, value) for key, value in attributes),
        )
    )


def internal_span(
    tid: bytes,
    span: bytes,
    parent: bytes,
    state: bytes,
    start: int,
    end: int,
    block: bytes,
    flags: int,
) -> bytes:
    """One INTERNAL span (tracing's detailed verbosity) as a ScopeSpans.spans entry:
    ``block`` is its ``internal_block``."""
    if len(tid) != 16 or len(span) != 8 or len(parent) != 8:
        raise ValueError("span with ids of the wrong size")
    payload = b"".join(
        (
            _head(tid, span, state, parent, start, end),
            block,
            b"\x85\x01",
            _pack_i((flags & 0xFF) | HAS_IS_REMOTE),
        )
    )
    return b"\x12" + varint(len(payload)) + payload


class Encoder:
    """The reference encoder: the spans of one record as ScopeSpans.spans entries."""

    name = "python"

    def __init__(self, safe_query_params: Collection[str] = ()):
        self.redact = redactor(safe_query_params)
        self.servers: dict[tuple[Any, ...], bytes] = {}
        self.clients: dict[tuple[Any, ...], bytes] = {}
        self.batch: list[bytes] = []

    @property
    def pending(self) -> int:
        """Spans in the batch."""
        return len(self.batch)

    def add(self, record: Sequence[Any]) -> int:
        """Encode one record into the batch; the number of spans it added."""
        spans = self.spans_of(record)
        self.batch += spans
        return len(spans)

    def take(self, resource: bytes, scope: bytes) -> bytes:
        """The ExportTraceServiceRequest of the batch, which empties."""
        body = request(resource, scope, self.batch)
        self.batch = []
        return body

    def drain(self) -> bytes:
        """The batch's encoded spans as they are (ScopeSpans.spans entries), which empties:
        what a worker sends to the exporter."""
        spans = b"".join(self.batch)
        self.batch = []
        return spans

    def extend(self, spans: bytes, count: int) -> None:
        """Add ``count`` encoded spans (what a worker's ``drain`` gave) to the batch;
        ValueError, and nothing added, when ``spans`` is not exactly that many entries."""
        entries = split_spans(bytes(spans))  # a view of the exporter's reused buffer: a copy
        if entries is None or len(entries) != count or count <= 0:
            raise ValueError("not that many encoded spans")
        self.batch += entries

    def spans_of(self, record: Sequence[Any]) -> list[bytes]:
        if len(record) == RECORD_FIELDS + 1:  # and the SpanExtra (records.SpanExtra)
            extra = record[RECORD_FIELDS]
            record = record[:RECORD_FIELDS]
        elif len(record) == RECORD_FIELDS:
            extra = None
        else:
            raise ValueError("span record: wrong number of fields")
        client_parent, kept, links = extra if extra is not None else (b"", "", ())
        if len(client_parent) not in (0, 8):
            raise ValueError("span record with ids of the wrong size")
        (
            tid,
            span,
            parent,
            remote,
            flags,
            state,
            method,
            route,
            path,
            query,
            address,
            port,
            client_address,
            client_port,
            version,
            user_agent,
            status,
            error_type,
            start,
            end,
            upgraded,
            attempts,
            request_headers,
            response_headers,
            scheme,
        ) = record
        if len(tid) != 16 or len(span) != 8 or len(parent) not in (0, 8):
            raise ValueError("span record with ids of the wrong size")
        key = (
            method,
            route,
            address,
            port,
            client_address,
            version,
            user_agent,
            status,
            error_type,
            bool(upgraded),
            scheme,
        )
        servers = self.servers
        block = servers.get(key)
        if block is None:
            if len(servers) >= CACHE_MAX:
                servers.clear()
            block = servers[key] = _server_block(*key)
        body = [
            _head(tid, span, state, parent, start, end),
            kv_str("url.path", path),
            kv_int("network.peer.port", client_port),
        ]
        if query:
            query = self.redact(query)
            body.append(kv_str("url.query", query))
        for name, values in request_headers:
            body.append(kv_strings("http.request.header." + name, values))
        for name, values in response_headers:
            body.append(kv_strings("http.response.header." + name, values))
        trace_flags = flags & 0xFF
        body += (
            block,
            b"\x85\x01",
            _pack_i(trace_flags | HAS_IS_REMOTE | (IS_REMOTE if remote else 0)),
        )
        kept_part = kv_str(KEPT, kept) if kept else b""
        body.append(kept_part)
        for link in links:
            body.append(_link(*link))
        payload = b"".join(body)
        out = [b"\x12" + varint(len(payload)) + payload]  # ScopeSpans.spans (field 2)
        if not attempts:
            return out
        suffix = path + "?" + query if query else path
        client_flags = b"\x85\x01" + _pack_i(trace_flags | HAS_IS_REMOTE)
        clients = self.clients
        for a_id, a_start, a_end, url_base, a_address, a_port, a_status, a_error in attempts:
            if len(a_id) != 8:
                raise ValueError("attempt record with a span id of the wrong size")
            shape = (method, a_address, a_port, a_status, a_error)
            block = clients.get(shape)
            if block is None:
                if len(clients) >= CACHE_MAX:
                    clients.clear()
                block = clients[shape] = _client_block(*shape)
            payload = b"".join(
                (
                    _head(tid, a_id, state, client_parent or span, a_start, a_end or end),
                    kv_str("url.full", url_base + suffix),
                    block,
                    client_flags,
                    kept_part,
                )
            )
            out.append(b"\x12" + varint(len(payload)) + payload)
        return out


def _log_attribute(key: str, value: Any) -> bytes:
    """A LogRecord.attributes entry (tag 6): KeyValue{key, AnyValue}."""
    if isinstance(value, bool):
        any_value = b"\x10\x01" if value else b"\x10\x00"
    elif isinstance(value, int):
        any_value = b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)
    elif isinstance(value, float):
        any_value = b"\x21" + struct.pack("<d", value)
    else:
        any_value = ld(b"\x0a", utf8(value if isinstance(value, str) else str(value)))
    return ld(b"\x32", ld(b"\x0a", utf8(key)) + ld(b"\x12", any_value))


def log_record(
    time_ns: int,
    severity_number: int,
    severity_text: str,
    body: str | bytes,
    attributes: Mapping[str, Any],
    trace_id: bytes | None,
    span_id: bytes | None,
    observed_ns: int,
) -> bytes:
    """One ``ScopeLogs.log_records`` entry (the reference of ``_otlp.log_record``).

    LogRecord fields, in this order: time_unix_nano (1), observed_time_unix_nano (11),
    severity_number (2), severity_text (3), body (5: a string AnyValue), attributes (6: None
    values left out), and for a sampled request flags (8: sampled), trace_id (9), span_id
    (10).  ``body`` is a str, or bytes already in UTF-8.  An ExportLogsServiceRequest has the layout of a trace export, so ``request``
    wraps these entries as it wraps spans."""
    parts = [
        b"\x09" + _pack_q(time_ns),
        b"\x59" + _pack_q(observed_ns),
        b"\x10" + varint(severity_number),
        ld(b"\x1a", utf8(severity_text)),
        ld(b"\x2a", ld(b"\x0a", body if isinstance(body, bytes) else utf8(body))),
    ]
    parts += [_log_attribute(k, v) for k, v in attributes.items() if v is not None]
    if trace_id is not None and span_id is not None:
        if len(trace_id) != 16 or len(span_id) != 8:
            raise ValueError("log record: ids of the wrong size")
        parts += [b"\x45" + _pack_i(1), ld(b"\x4a", trace_id), ld(b"\x52", span_id)]
    return ld(b"\x12", b"".join(parts))


def compiled_encoder() -> str:
    """ "" when the C encoder is importable, else why not."""
    try:
        from hopwire.telemetry import _otlp  # noqa: F401
    except ImportError as exc:
        return (
            f"the compiled encoder hopwire.telemetry._otlp is not installed ({exc}): "
            "reinstall hopwire where gcc and the Python headers are present"
        )
    return ""


def check(config: Any) -> list[str]:
    """The span encoder asked for can be used (``hopwire.checks``)."""
    if config.tracing is not None and config.tracing.encoder == "c":
        problem = compiled_encoder()
        if problem:
            return [f"tracing.encoder: 'c' but {problem}; or set tracing.encoder: python"]
    return []


def encoder(kind: str, safe_query_params: Collection[str] = ()) -> Any:
    """The encoder ``tracing.encoder`` names (``c`` raises ImportError when it is not built:
    the config check reports that before anything starts)."""
    if kind == "python":
        return Encoder(safe_query_params)
    from hopwire.telemetry import _otlp

    return _otlp.Encoder(redactor(safe_query_params))
