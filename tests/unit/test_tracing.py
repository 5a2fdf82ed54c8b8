from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace as api
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased

from hopwire.checks import load
from hopwire.config import ConfigError
from hopwire.telemetry import otlp
from hopwire.telemetry.otlp import redact_query, redactor
from hopwire.telemetry.records import AttemptRecord, SpanRecord
from hopwire.telemetry.tracing import (
    LOW64,
    Tracer,
    parse_traceparent,
    parse_tracestate,
    sampling_bound,
)


@pytest.mark.parametrize("rate", [0.0, 0.0001, 0.01, 0.1, 0.25, 0.5, 0.999, 1.0])
def test_root_decision_equals_the_sdk_sampler(rate: float) -> None:
    sdk = ParentBased(TraceIdRatioBased(rate))
    bound = sampling_bound(rate)
    rng = random.Random(rate)
    for _ in range(100_000 if rate in (0.01, 0.25) else 20_000):
        trace_id = rng.getrandbits(128) or 1
        ours = (trace_id & LOW64) < bound
        theirs = sdk.should_sample(None, trace_id, "x").decision is Decision.RECORD_AND_SAMPLE
        assert ours == theirs, (rate, hex(trace_id))


class _Ex:
    """What Tracer.start reads of an exchange: the head scan's trace fields and the fields."""

    def __init__(self, traceparent: bytes | None = None) -> None:
        self.kept: list[tuple[bytes, bytes]] = []
        self.tfields = [(b"traceparent", traceparent)] if traceparent else None
        self.observers = ()
        self.trace: object = None


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.5, 1.0])
def test_the_tracer_decides_as_the_sdk_sampler(rate: float) -> None:
    """The request path's own decision (Tracer.start, its ids) equals the SDK's on those ids."""
    sdk = ParentBased(TraceIdRatioBased(rate))
    tracer = Tracer("r", rate, None)  # type: ignore[arg-type]
    random.seed(rate)
    sampled = 0
    for _ in range(20_000):
        ex = _Ex()
        tracer.start(ex)
        trace: Any = ex.trace
        trace_id = int(trace.tid_hex, 16)
        cid_hex = trace.line[49:65]
        assert trace_id and int(cid_hex, 16)
        theirs = sdk.should_sample(None, trace_id, "x").decision is Decision.RECORD_AND_SAMPLE
        assert trace.sampled == theirs, (rate, hex(trace_id))
        sampled += trace.sampled
        assert trace.line == b"traceparent: 00-%s-%s-%02x\r\n" % (
            trace.tid_hex,
            cid_hex,
            3 if trace.sampled else 2,
        )
    assert 0 < sampled < 20_000 if 0 < rate < 1 else sampled == rate * 20_000


@pytest.mark.parametrize("flags", [0, 1, 2, 3, 0xFF])
def test_an_inbound_parent_is_obeyed(flags: int) -> None:
    tracer = Tracer("r", 0.5, None)  # type: ignore[arg-type]
    ex = _Ex(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-%02x" % flags)
    tracer.start(ex)
    trace: Any = ex.trace
    assert trace.sampled == bool(flags & 1) and trace.tid_hex == b"0af7651916cd43dd8448eb211c80319c"
    assert trace.line.endswith(b"-%02x\r\n" % (flags & 3))
    if trace.sampled:
        assert trace.parent_id == bytes.fromhex("b7ad6b7169203331") and trace.remote


def test_parent_decision_is_obeyed_like_the_sdk() -> None:
    for rate in (0.0, 1.0):
        sdk = ParentBased(TraceIdRatioBased(rate))
        for flags in (0, 1):
            ctx = api.set_span_in_context(
                api.NonRecordingSpan(
                    api.SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=api.TraceFlags(flags))
                )
            )
            decision = sdk.should_sample(ctx, 0xABC, "x").decision
            assert (decision is Decision.RECORD_AND_SAMPLE) == bool(flags)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            (b"0af7651916cd43dd8448eb211c80319c", b"b7ad6b7169203331", 1),
        ),
        (
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            (b"0af7651916cd43dd8448eb211c80319c", b"b7ad6b7169203331", 0),
        ),
        (
            b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future",
            (b"0af7651916cd43dd8448eb211c80319c", b"b7ad6b7169203331", 1),
        ),
        (b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", None),  # upper case
        (b"00-00000000000000000000000000000000-b7ad6b7169203331-01", None),  # zero trace id
        (b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", None),  # zero parent id
        (b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None),  # version ff
        (b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x", None),  # 00 with more
        (b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01", None),
        (b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x", None),
        (b"garbage", None),
    ],
)
def test_traceparent(value: bytes, expected: tuple[bytes, bytes, int] | None) -> None:
    assert parse_traceparent(value) == expected


def test_tracestate() -> None:
    assert parse_tracestate([b"a=1,b=2", b"c=3"]) == b"a=1,b=2,c=3"
    assert parse_tracestate([b" a=1 , ,tenant@sys=x "]) == b"a=1,tenant@sys=x"
    assert parse_tracestate([b"A=1"]) is None  # upper-case key
    assert parse_tracestate([b"a=1,b"]) is None  # no '='
    assert parse_tracestate([b"a=x,y"]) is None


def test_tracestate_duplicates_and_limit() -> None:
    # a repeated key keeps its first member: the rest still propagates
    assert parse_tracestate([b"a=1,b=2,a=3"]) == b"a=1,b=2"
    assert parse_tracestate([b"a=1", b"a=2"]) == b"a=1"
    exactly = b",".join(b"k%d=v" % i for i in range(32))
    assert parse_tracestate([exactly]) == exactly
    too_many = b",".join(b"k%d=v" % i for i in range(33))
    assert parse_tracestate([too_many]) is None  # discarded whole, never truncated


def test_traceparent_optional_whitespace() -> None:
    value = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    expected = (b"0af7651916cd43dd8448eb211c80319c", b"b7ad6b7169203331", 1)
    assert parse_traceparent(b" \t" + value + b"  \t") == expected
    assert parse_traceparent(value + b" x") is None


def test_redacted_query() -> None:
    assert redact_query("a=1&b=secret&flag") == "a=REDACTED&b=REDACTED&flag"
    safe = redactor(["page", "q"])
    assert safe("page=2&token=s&q=x&q=y&flag") == "page=2&token=REDACTED&q=x&q=y&flag"


def _kv(key: str, value: object) -> common_pb2.KeyValue:
    if isinstance(value, bool):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(bool_value=value))
    if isinstance(value, int):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(int_value=value))
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=str(value)))


def _strings(key: str, values: list[str]) -> common_pb2.KeyValue:
    array = common_pb2.ArrayValue(values=[common_pb2.AnyValue(string_value=v) for v in values])
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(array_value=array))


@pytest.mark.parametrize("kind", ["python", "c"])
def test_encoding_decodes_identically_with_opentelemetry_proto(kind: str) -> None:
    """The bytes written by hand (by either encoder) equal the message opentelemetry-proto
    builds."""
    # built by name: the readers (Encoder.spans_of) are bound to the one definition
    record = SpanRecord(
        trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
        span_id=bytes.fromhex("b7ad6b7169203331"),
        parent_id=bytes.fromhex("00f067aa0ba902b7"),
        parent_is_remote=True,
        flags=1,
        tracestate=b"k=v",
        method="GET",
        route="api",
        path="/x",
        query="page=2&token=s",
        server_address="a.test",
        server_port=8080,
        client_address="10.0.0.1",
        client_port=5555,
        protocol_version="1.1",
        user_agent="curl/8",
        status=502,
        error_type="connect_failed",
        start_ns=1000,
        end_ns=2000,
        upgraded=False,
        attempts=[
            list(
                AttemptRecord(
                    span_id=bytes.fromhex("0000000000001111"),
                    start_ns=1100,
                    end_ns=1900,
                    url_base="http://b:1",
                    server_address="b",
                    server_port=1,
                    status=0,
                    error_type="connect_failed",
                )
            )
        ],
        request_headers=[("x-request-id", ["r1", "r2"])],
        response_headers=[("content-type", ["text/plain"])],
        scheme="https",
    )
    resource, scope = otlp.resource_part({"service.name": "hopwire"}, "hopwire", "0.1.0")
    encoder = otlp.encoder(kind, ["page"])
    assert encoder.name == kind
    ours = ExportTraceServiceRequest.FromString(
        otlp.request(resource, scope, encoder.spans_of(record))
    )
    tid = record.trace_id
    server = trace_pb2.Span(
        trace_id=tid,
        span_id=record.span_id,
        trace_state="k=v",
        parent_span_id=record.parent_id,
        name="GET api",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1000,
        end_time_unix_nano=2000,
        attributes=[
            _kv("url.path", "/x"),
            _kv("network.peer.port", 5555),
            _kv("url.query", "page=2&token=REDACTED"),
            _strings("http.request.header.x-request-id", ["r1", "r2"]),
            _strings("http.response.header.content-type", ["text/plain"]),
            *(
                _kv(k, v)
                for k, v in [
                    ("http.request.method", "GET"),
                    ("url.scheme", "https"),
                    ("server.address", "a.test"),
                    ("server.port", 8080),
                    ("client.address", "10.0.0.1"),
                    ("network.peer.address", "10.0.0.1"),
                    ("network.protocol.version", "1.1"),
                    ("http.route", "api"),
                    ("user_agent.original", "curl/8"),
                    ("http.response.status_code", 502),
                    ("error.type", "connect_failed"),
                ]
            ),
        ],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR),
        flags=0x301,
    )
    client = trace_pb2.Span(
        trace_id=tid,
        span_id=bytes.fromhex("0000000000001111"),
        trace_state="k=v",
        parent_span_id=record.span_id,
        name="GET",
        kind=trace_pb2.Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1100,
        end_time_unix_nano=1900,
        attributes=[
            _kv(k, v)
            for k, v in [
                ("url.full", "http://b:1/x?page=2&token=REDACTED"),
                ("http.request.method", "GET"),
                ("server.address", "b"),
                ("server.port", 1),
                ("error.type", "connect_failed"),
            ]
        ],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR),
        flags=0x101,
    )
    expected = ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(attributes=[_kv("service.name", "hopwire")]),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope=common_pb2.InstrumentationScope(name="hopwire", version="0.1.0"),
                        spans=[server, client],
                    )
                ],
            )
        ]
    )
    assert ours == expected


def test_proxy_tracing_environment(tmp_path: Path) -> None:
    for truthy in ("1", "true", "TRUE", " True "):
        assert load(None, [], {"PROXY_TRACING_ENABLED": truthy}).tracing is not None
    on_in_file = tmp_path / "on.yml"
    on_in_file.write_text("tracing: {}\n")
    for other in ("0", "false", "yes", "on", ""):  # the environment outranks the file
        assert load(str(on_in_file), [], {"PROXY_TRACING_ENABLED": other}).tracing is None
    # ... and flags outrank the environment
    assert load(None, ["--tracing=true"], {"PROXY_TRACING_ENABLED": "0"}).tracing is not None
    cases = {
        "coll:4317": ("coll:4317", True),
        "http://coll:4317": ("coll:4317", True),
        "https://coll:4317": ("coll:4317", False),
    }
    for value, (endpoint, insecure) in cases.items():
        grpc = load(
            None, [], {"PROXY_TRACING_ENABLED": "1", "PROXY_TRACING_ENDPOINT": value}
        ).tracing.otlp.grpc  # type: ignore[union-attr]
        assert (grpc.endpoint, grpc.insecure) == (endpoint, insecure)
    env = {
        "PROXY_TRACING_ENABLED": "1",
        "PROXY_TRACING_ENDPOINT": "",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:4317",
    }
    assert load(None, [], env).tracing.otlp.grpc.endpoint == "generic:4317"  # type: ignore
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "https://traces:4317"
    grpc = load(None, [], env).tracing.otlp.grpc  # type: ignore[union-attr]
    assert (grpc.endpoint, grpc.insecure) == ("traces:4317", False)
    assert (
        load(
            None, [], {"PROXY_TRACING_ENABLED": "1", "PROXY_TRACING_SAMPLE_RATE": "0.25"}
        ).tracing.sampleRate
        == 0.25
    )  # type: ignore[union-attr]
    for bad in ("1.5", "-0.1", "half"):
        with pytest.raises(ConfigError) as info:
            load(None, [], {"PROXY_TRACING_ENABLED": "1", "PROXY_TRACING_SAMPLE_RATE": bad})
        assert "PROXY_TRACING_SAMPLE_RATE" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load(None, ["--tracing.sampleRate=2"], {})
    assert "tracing.sampleRate" in str(info.value)


def test_explicit_settings_win_over_otel_variables(tmp_path: object) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4317",
        "OTEL_SERVICE_NAME": "from-otel",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-a=1",
        "OTEL_BSP_SCHEDULE_DELAY": "250",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=edge",
    }
    t = load(
        None, ["--tracing.serviceName=mine", "--tracing.otlp.grpc.endpoint=mine:4317"], env
    ).tracing
    assert t is not None and t.serviceName == "mine" and t.otlp.grpc is not None
    assert t.otlp.grpc.endpoint == "mine:4317" and dict(t.otlp.grpc.headers) == {"x-a": "1"}
    assert t.batch.scheduleDelay == 0.25
    assert dict(t.resourceAttributes) == {"deployment.environment": "prod", "team": "edge"}
    # OTEL_* alone never turn tracing on
    assert load(None, [], env).tracing is None


def test_insecure_with_tls_is_an_error(tmp_path: object) -> None:
    with pytest.raises(ConfigError) as info:
        load(
            None,
            [
                "--tracing.otlp.grpc.insecure=true",
                "--tracing.otlp.grpc.tls.ca=/etc/hostname",
            ],
            {},
        )
    assert "insecure together with tls" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load(None, ["--tracing.otlp.grpc.tls.insecureSkipVerify=true"], {})
    assert "not supported for gRPC" in str(info.value)


def test_proxy_tracing_is_opt_in(tmp_path: Path) -> None:
    off = {"PROXY_TRACING_ENABLED": "false", "PROXY_TRACING_ENDPOINT": "c:4317"}
    assert load(None, [], off).tracing is None
    assert load(None, [], {**off, "PROXY_TRACING_SAMPLE_RATE": "0.5"}).tracing is None
    on_in_file = tmp_path / "on.yml"
    on_in_file.write_text("tracing: {sampleRate: 0.5}\n")
    assert load(str(on_in_file), [], off).tracing is None  # the variable switches it off
    # endpoint and rate alone only configure: they never switch tracing on
    assert load(None, [], {"PROXY_TRACING_ENDPOINT": "c:4317"}).tracing is None
    assert load(None, [], {"PROXY_TRACING_SAMPLE_RATE": "0.5"}).tracing is None
    configured = load(
        str(on_in_file), [], {"PROXY_TRACING_ENDPOINT": "c:4317", "PROXY_TRACING_SAMPLE_RATE": "1"}
    ).tracing
    assert configured is not None and configured.sampleRate == 1.0
    assert configured.otlp.grpc is not None and configured.otlp.grpc.endpoint == "c:4317"


def test_flags_win_over_proxy_tracing_variables(tmp_path: Path) -> None:
    env = {
        "PROXY_TRACING_ENABLED": "1",
        "PROXY_TRACING_ENDPOINT": "c:4317",
        "PROXY_TRACING_SAMPLE_RATE": "0.9",
    }
    tracing = load(
        None,
        ["--tracing.otlp.http.endpoint=http://h:4318/v1/traces", "--tracing.sampleRate=0.3"],
        env,
    ).tracing
    assert tracing is not None and tracing.sampleRate == 0.3
    assert tracing.otlp.grpc is None
    assert tracing.otlp.http is not None and tracing.otlp.http.endpoint == "http://h:4318/v1/traces"
    assert load(None, ["--tracing=false"], env).tracing is None
    # above the file: the variable's gRPC collector replaces the file's OTLP/HTTP one
    http_file = tmp_path / "http.yml"
    http_file.write_text("tracing:\n  otlp:\n    http: {endpoint: 'http://f:4318/v1/traces'}\n")
    tracing = load(str(http_file), [], env).tracing
    assert tracing is not None and tracing.otlp.http is None
    assert tracing.otlp.grpc is not None and tracing.otlp.grpc.endpoint == "c:4317"


def test_otlp_enabled_keys(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("tracing:\n  otlp:\n    http: {enabled: true}\n    grpc: {enabled: false}\n")
    tracing = load(str(path), [], {}).tracing
    assert tracing is not None and tracing.otlp.http is not None and tracing.otlp.grpc is None
    path.write_text("tracing:\n  otlp:\n    grpc: {enabled: true, endpoint: 'c:4317'}\n")
    tracing = load(str(path), [], {}).tracing
    assert tracing is not None and tracing.otlp.grpc is not None and tracing.otlp.http is None
    tracing = load(None, ["--tracing.otlp.http.enabled=false", "--tracing=true"], {}).tracing
    assert tracing is not None and tracing.otlp.http is None  # gRPC, the default, is used


def test_otel_endpoint_goes_to_the_enabled_exporter(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("tracing:\n  otlp:\n    http: {enabled: false}\n")
    tracing = load(str(path), [], {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}).tracing
    assert tracing is not None and tracing.otlp.http is None
    assert tracing.otlp.grpc is not None and tracing.otlp.grpc.endpoint == "c:4317"


def test_tracing_option_errors_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(
        "tracing:\n  capturedRequestHeaders: [X-Ok, 'bad name']\n  encoder: rust\n"
        "  safeQueryParams: [page]\n  traceResponse: true\n"
    )
    with pytest.raises(ConfigError) as info:
        load(str(config), [], {})
    text = str(info.value)
    assert "tracing.capturedRequestHeaders" in text and "header name" in text
    assert "tracing.encoder" in text and "expected one of c, python" in text
    config.write_text("tracing:\n  capturedResponseHeaders: [X-Server]\n  encoder: python\n")
    tracing = load(str(config), [], {}).tracing
    assert tracing is not None and tracing.capturedResponseHeaders == ("X-Server",)
    assert tracing.encoder == "python" and not tracing.traceResponse and not tracing.safeQueryParams


@pytest.mark.parametrize(
    "value",
    [
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03",
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",  # not hex
        b"00-0af7651916cd43dd-448eb211c80319c-b7ad6b7169203331-01",  # a dash inside the id
        b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero parent id
        b" 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # whitespace: slow path
        b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later",  # a later version
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
        b"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ],
)
def test_the_tracers_fast_path_agrees_with_the_parser(value: bytes) -> None:
    """Tracer.adopt reads a canonical header on a fast path of its own; it must decide exactly
    as parse_traceparent does, for valid and invalid values alike."""
    tracer = Tracer("r", 0.0, None)  # type: ignore[arg-type]
    ex = _Ex(value)
    tracer.start(ex)
    trace: Any = ex.trace
    parsed = parse_traceparent(value)
    if parsed is None:
        assert trace.tid_hex != value.strip()[3:35]  # a new root
    else:
        assert trace.tid_hex == parsed[0] and trace.sampled == bool(parsed[2] & 1)
        assert trace.line.endswith(b"-%02x\r\n" % (parsed[2] & 3))
