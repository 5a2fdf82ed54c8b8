"""The records that cross from the request path to their writers, with their fields named once.

The request path builds plain tuples (a ``NamedTuple`` costs 0.35 µs more per construction
here); the writer and the reader both follow the field order defined here, and the unit
tests build records through the real writers and read them through these names.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple


class AttemptRecord(NamedTuple):
    """One backend attempt: the CLIENT span (a list while open, a tuple in the record)."""

    span_id: bytes  # 8 raw bytes
    start_ns: int
    end_ns: int  # 0 while the attempt is open
    url_base: str  # the server's URL without a trailing slash; url.full adds path and query
    server_address: str
    server_port: int
    status: int
    error_type: str


# positions the tracer updates when an attempt ends
ATTEMPT_END = AttemptRecord._fields.index("end_ns")
ATTEMPT_STATUS = AttemptRecord._fields.index("status")
ATTEMPT_ERROR = AttemptRecord._fields.index("error_type")


# a datagram to the exporter begins with its kind and the number of items it carries, then
# the items: encoded spans (ScopeSpans.spans entries) or encoded log records
# (ScopeLogs.log_records entries, otlp.log_record)
HEADER = struct.Struct("<BI")
SPANS = 1
ACCESS_LOG = 2  # accessLog.otlp
APP_LOG = 3  # log.otlp


class Courier:
    """A process's never-blocking way to the exporters: one unix datagram socket, and the
    exporters' paths taken in turn, a datagram each (tracing.SpanSink, otlplogs.LogSink)."""

    def __init__(self, paths: list[str]):
        self.paths = paths
        self.next = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)

    def send(self, kind: int, count: int, parts: Sequence[bytes]) -> None:
        """One datagram of ``count`` items of ``kind`` to the next exporter; OSError when it
        cannot be sent now (a full socket, no exporter there): the caller counts the drop."""
        path = self.paths[self.next % len(self.paths)]
        self.next += 1
        self.sock.sendmsg((HEADER.pack(kind, count), *parts), (), 0, path)

    def close(self) -> None:
        self.sock.close()


class SpanRecord(NamedTuple):
    """One sampled request (``Tracer.finish``), encoded in the worker by ``otlp.Encoder.add``
    (or its compiled twin)."""

    trace_id: bytes  # 16 raw bytes
    span_id: bytes  # 8 raw bytes
    parent_id: bytes  # 8 raw bytes, b"" for a root
    parent_is_remote: bool
    flags: int
    tracestate: bytes
    method: str
    route: str
    path: str
    query: str  # as received: the encoder redacts it (tracing.safeQueryParams)
    server_address: str
    server_port: int
    client_address: str
    client_port: int
    protocol_version: str
    user_agent: str
    status: int
    error_type: str
    start_ns: int
    end_ns: int
    upgraded: bool
    attempts: list[list[Any]]  # AttemptRecord fields
    request_headers: Sequence[tuple[str, list[str]]]  # tracing.capturedRequestHeaders
    response_headers: Sequence[tuple[str, list[str]]]  # tracing.capturedResponseHeaders
    scheme: str  # url.scheme: http or https (the entrypoint's connection)


class SpanLink(NamedTuple):
    """A span link (OTLP Span.links): the inbound context an edge did not let decide."""

    trace_id: bytes  # 16 raw bytes
    span_id: bytes  # 8 raw bytes
    flags: int
    tracestate: bytes


class SpanExtra(NamedTuple):
    """What a SpanRecord may carry beyond the minimal pair, as a 26th field (None: nothing)."""

    client_parent: bytes  # 8 raw bytes: the CLIENT spans' parent (detailed: Service), or b""
    kept: str  # why an unsampled request's spans were exported after the fact, or ""
    links: Sequence[tuple[bytes, bytes, int, bytes]]  # SpanLink fields, on the SERVER span


class AccessRecord(NamedTuple):
    """One access-log line's raw values (``AccessLogger.finish``), formatted by ``Writer``."""

    wall: float  # time.time() at start
    duration: float  # seconds
    entrypoint: str
    router: str
    service: str
    service_url: str | None
    client_host: str
    client_port: int
    method: str
    path_query: bytes
    protocol: str  # RequestProtocol: HTTP/1.0, HTTP/1.1 or HTTP/2.0
    host: str
    request_size: int
    status: int
    response_size: int
    origin_status: int | None
    origin_duration: float | None
    retries: int
    trace_id: bytes | None  # hex, None when not sampled
    span_id: bytes | None
    headers: list[tuple[str, str]] | None  # kept request headers, for request_<Name>
    common: tuple[str, str] | None  # (User-Agent, Referer) for the common format
    scheme: str  # RequestScheme: http or https
    tls: tuple[str, str, str | None] | None  # TLSVersion, TLSCipher, TLSClientSubject
