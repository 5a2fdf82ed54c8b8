"""The records' writers (on the request path) follow the one definition of their fields."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hopwire.checks import load
from hopwire.http.head import read_request
from hopwire.proxy import Exchange
from hopwire.telemetry.accesslog import AccessLogger, Writer
from hopwire.telemetry.records import AccessRecord, AttemptRecord, SpanRecord
from hopwire.telemetry.tracing import Tracer

PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Encoder:
    """What the tracer hands a SpanSink's encoder: the records, kept here to be read."""

    pending = 0

    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def add(self, record: tuple[Any, ...]) -> int:
        self.records.append(record)
        return 1 + len(record[SpanRecord._fields.index("attempts")])


class Sink:
    """What the tracer uses of a SpanSink: its encoder, its limit and its flush."""

    def __init__(self) -> None:
        self.encoder = Encoder()
        self.limit = 256

    def flush(self) -> None:
        pass


def exchange() -> Exchange:
    down: Any = SimpleNamespace(client_ip="10.0.0.7", client_port=5555, client_ip_bytes=b"")
    down.ep = SimpleNamespace(tls=True, scheme_str="https", default_port=b"443")
    down.tls_fields = lambda: ("1.3", "TLS_AES_128_GCM_SHA256", "CN=client,O=t")
    ex = Exchange(down)
    ex.method, ex.path, ex.query, ex.path_query = "POST", "/p", "a=1", b"/p?a=1"
    ex.host, ex.port, ex.http10 = "a.test", b"8080", True
    ex.headers = [
        (b"traceparent", PARENT),
        (b"User-Agent", b"t/1"),
        (b"X-Request-Id", b"a"),
        (b"x-request-id", b"b"),
        (b"Host", b"a.test:8080"),
    ]
    ex.kept = list(ex.headers)
    ex.status, ex.req_bytes, ex.resp_bytes = 201, 5, 7
    return ex


def test_span_record_fields() -> None:
    sink = Sink()
    tracer = Tracer("api", 1.0, sink, ["X-Request-Id"])  # type: ignore[arg-type]
    ex = exchange()
    read_request(ex, "1.0", "POST", b"/p?a=1", ex.headers, False, False, True)
    tracer.start(ex)
    assert ex.trace is not None
    server: Any = SimpleNamespace(url_base="http://b:9", pool=SimpleNamespace(host="b", port=9))
    assert not ex.trace.begin_attempt(server)
    ex.trace.end_attempt(201, "")
    tracer.finish(ex)
    [raw] = sink.encoder.records
    # the SpanRecord, then its SpanExtra: None for a minimal trace that is not kept or linked
    assert len(raw) == len(SpanRecord._fields) + 1 and raw[-1] is None
    rec = SpanRecord._make(raw[:-1])
    assert rec.trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    assert rec.parent_id == bytes.fromhex("b7ad6b7169203331") and rec.parent_is_remote
    assert len(rec.span_id) == 8 and rec.flags == 1
    assert (rec.method, rec.route, rec.path, rec.query) == ("POST", "api", "/p", "a=1")
    assert (rec.server_address, rec.server_port) == ("a.test", 8080)
    assert (rec.client_address, rec.client_port) == ("10.0.0.7", 5555)
    assert (rec.protocol_version, rec.user_agent, rec.status) == ("1.0", "t/1", 201)
    assert rec.start_ns <= rec.end_ns and not rec.upgraded and rec.error_type == ""
    assert list(rec.request_headers) == [("x-request-id", ["a", "b"])]
    assert list(rec.response_headers) == []
    assert rec.scheme == "https"
    [attempt] = [AttemptRecord._make(a) for a in rec.attempts]
    assert attempt.url_base == "http://b:9" and len(attempt.span_id) == 8
    assert (attempt.server_address, attempt.server_port, attempt.status) == ("b", 9, 201)
    assert attempt.start_ns <= attempt.end_ns and attempt.error_type == ""


def _traced(tracer: Tracer, path: Any = "/p") -> None:
    ex = exchange()
    read_request(ex, "1.0", "POST", b"/p?a=1", ex.headers, False, False, True)
    ex.path = path
    tracer.start(ex)
    assert ex.trace is not None
    server: Any = SimpleNamespace(url_base="http://b:9", pool=SimpleNamespace(host="b", port=9))
    ex.trace.begin_attempt(server)
    ex.trace.end_attempt(201, "")
    tracer.finish(ex)


def test_the_sink_sends_encoded_spans_and_counts_what_it_cannot_encode(tmp_path: Path) -> None:
    """A real SpanSink: a datagram is the span count and the spans as OTLP encodes them
    (decoded here with opentelemetry-proto); a record the encoder refuses is counted in spans
    and logged, the request path carries on, and nothing of it is sent."""
    import socket

    from opentelemetry.proto.trace.v1 import trace_pb2

    from hopwire.telemetry.records import HEADER, SPANS
    from hopwire.telemetry.tracing import SpanSink

    path = str(tmp_path / "spans.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(5)
    config = load(None, ["--tracing=true", "--tracing.batch.maxExportBatchSize=3"], {})
    assert config.tracing is not None
    worker: Any = SimpleNamespace(counters={"spans_dropped": 0})
    sink = SpanSink([path], worker, config.tracing)
    assert sink.limit == 3
    tracer = Tracer("api", 1.0, sink)
    _traced(tracer, path=b"/bytes")  # not a str: the encoder refuses the record
    assert worker.counters["spans_dropped"] == 2 and sink.encoder.pending == 0
    _traced(tracer)
    _traced(tracer)  # 2 + 2 spans > 3: the first request's spans went alone
    sink.flush()
    sink.sock.close()
    datagrams = [rx.recv(1 << 16), rx.recv(1 << 16)]
    rx.close()
    names = []
    for datagram in datagrams:
        kind, count = HEADER.unpack_from(datagram)
        assert kind == SPANS
        scope = trace_pb2.ScopeSpans.FromString(datagram[HEADER.size :])
        assert count == len(scope.spans) == 2
        names += [(span.name, span.kind) for span in scope.spans]
    assert names == [("POST api", 2), ("POST", 3)] * 2
    assert worker.counters == {"spans_dropped": 2}  # what was sent is counted by the exporter


def test_access_record_fields(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    config = load(None, [f"--accessLog.filePath={log}", "--accessLog.format=common"], {})
    assert config.accessLog is not None
    worker: Any = SimpleNamespace(counters={})
    writer = Writer(config.accessLog, worker)
    ex = exchange()
    logger = AccessLogger(writer, "web", "api", "svc")
    logger.start(ex)
    logger.finish(ex)
    [(ended, by)] = writer.pending  # the exchange and its logger, formatted at flush
    assert ended is ex and by is logger
    raw = writer.record(ex, logger, 0.0)
    assert len(raw) == len(AccessRecord._fields)
    rec = AccessRecord._make(raw)
    assert (rec.entrypoint, rec.router, rec.service) == ("web", "api", "svc")
    assert (rec.client_host, rec.client_port, rec.method) == ("10.0.0.7", 5555, "POST")
    assert (rec.path_query, rec.protocol, rec.host) == (b"/p?a=1", "HTTP/1.0", "a.test")
    assert (rec.request_size, rec.status, rec.response_size) == (5, 201, 7)
    assert rec.service_url is None and rec.origin_status is None and rec.retries == 0
    assert rec.trace_id is None and rec.span_id is None  # no tracing here
    assert rec.common == ("t/1", "-")
    from hopwire.telemetry.accesslog import FIELDS

    values = dict(zip(FIELDS, writer.values(raw), strict=True))
    assert values["entryPointName"] == "web" and values["RouterName"] == "api"
    assert values["RequestScheme"] == "https" and values["TLSVersion"] == "1.3"
    assert values["TLSCipher"] == "TLS_AES_128_GCM_SHA256"
    assert values["TLSClientSubject"] == "CN=client,O=t"
    writer.flush()
    writer.fh.close()
    line = log.read_text()
    assert line.startswith("10.0.0.7 - - [") and '"POST /p?a=1 HTTP/1.0" 201 7 "-" "t/1"' in line
