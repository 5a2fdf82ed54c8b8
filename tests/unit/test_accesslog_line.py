"""The compiled access-log line (_accesslog.json_line) is the document the reference writes
(accesslog.Writer.doc through orjson), and log records are encoded the same by C and Python.

Hypothesis draws ended exchanges (any text in the host, names and TLS fields, any bytes in
the request target, traced or not, with or without a backend attempt, TLS or not) and both
lines must parse to the same JSON document; the C and Python LogRecord encoders must give
the same bytes, which opentelemetry-proto reads back."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.logs.v1 import logs_pb2

from hopwire.config import load
from hopwire.telemetry import _otlp, otlp
from hopwire.telemetry._accesslog import json_line, record
from hopwire.telemetry.accesslog import AccessLogger, Writer

# what a str field can hold here: text that has a UTF-8 form (a Python str from the wire does)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
INT = st.integers(0, (1 << 40))


_WRITERS: list[Writer] = []


def writer() -> Writer:
    """One writer for every example (its file, /dev/null, opened once)."""
    if not _WRITERS:
        config = load(None, ["--accessLog.filePath=/dev/null"], {})
        assert config.accessLog is not None
        _WRITERS.append(Writer(config.accessLog, SimpleNamespace(counters={}, span_paths=[])))
    return _WRITERS[0]


@st.composite
def ended(draw: Any) -> tuple[Any, Any, float]:
    tls = draw(st.booleans())
    fields = draw(st.none() | st.tuples(TEXT, TEXT, st.none() | TEXT)) if tls else None
    down = SimpleNamespace(
        client_ip=draw(TEXT),
        client_port=draw(st.integers(0, 65535)),
        ep=SimpleNamespace(tls=tls, scheme_str="https" if tls else "http"),
        tls=fields,
    )
    down.tls_fields = lambda: fields
    attempts = draw(st.integers(0, 4))
    trace = draw(
        st.none()
        | st.builds(
            lambda sampled, tid, span: SimpleNamespace(
                sampled=sampled,
                tid=tid,
                span_raw=span,
                tid_hex=tid.hex().encode(),
                span_hex=span.hex().encode(),
            ),
            st.booleans(),
            st.binary(min_size=16, max_size=16),
            st.binary(min_size=8, max_size=8),
        )
    )
    t0 = draw(st.floats(0, 1e6))
    ex = SimpleNamespace(
        t0=t0,
        t1=t0 + draw(st.floats(0, 100)),
        attempts=attempts,
        server=SimpleNamespace(url=draw(TEXT)) if attempts else None,
        origin_status=draw(st.integers(0, 599)),
        origin_duration=draw(st.floats(0, 100)),
        down=down,
        trace=trace,
        method=draw(TEXT),
        path_query=draw(st.binary(max_size=60)),
        http10=draw(st.booleans()),
        host=draw(TEXT),
        req_bytes=draw(INT),
        status=draw(st.integers(0, 599)),
        resp_bytes=draw(INT),
        headers=[],
    )
    logger = AccessLogger(writer(), draw(TEXT), draw(st.just("") | TEXT), draw(st.just("") | TEXT))
    return ex, logger, draw(st.floats(1e9, 2e9))


@settings(max_examples=300, deadline=None)
@given(ended())
def test_compiled_line_is_the_reference_document(case: tuple[Any, Any, float]) -> None:
    ex, logger, offset = case
    w = logger.writer
    assert w.compiled  # the default fields: the C line is the one written
    line = json_line(ex, logger, offset)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    reference = orjson.dumps(w.doc(ex, logger, offset), option=orjson.OPT_APPEND_NEWLINE)
    mine, theirs = json.loads(line), json.loads(reference)
    # the one float-rounding difference allowed: the microsecond of StartUTC at a boundary
    assert mine.pop("StartUTC")[:19] == theirs.pop("StartUTC")[:19]
    assert mine == theirs


@settings(max_examples=300, deadline=None)
@given(ended(), st.integers(0, (1 << 63)))
def test_compiled_record_is_the_reference_log_record(
    case: tuple[Any, Any, float], observed: int
) -> None:
    """(line, LogRecord) in C: the line is json_line's, the record is what the Python path
    makes of that line and Writer.doc's fields (otlp.log_record)."""
    ex, logger, offset = case
    w = logger.writer
    line, entry = record(ex, logger, offset, observed)
    assert line == json_line(ex, logger, offset)
    trace = ex.trace
    sampled = trace is not None and trace.sampled
    doc = json.loads(line)  # the fields as the line has them (None: JSON null)
    reference = otlp.log_record(
        int((ex.t0 + offset) * 1e9),
        9,
        "INFO",
        line[:-1],
        {k: v for k, v in doc.items()},
        trace.tid if sampled else None,
        trace.span_raw if sampled else None,
        observed,
    )
    assert entry == reference
    [decoded] = logs_pb2.ScopeLogs.FromString(entry).log_records
    assert decoded.body.string_value == line[:-1].decode()
    theirs = w.doc(ex, logger, offset)
    theirs.pop("StartUTC")
    mine = {kv.key: kv.value for kv in decoded.attributes}
    for key, value in theirs.items():
        if value is None:
            assert key not in mine
        elif isinstance(value, int):
            assert mine[key].int_value == value
        else:
            assert mine[key].string_value == value
    assert decoded.trace_id == (trace.tid if sampled else b"")


ATTRS = st.dictionaries(
    TEXT,
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 63) - 1)
    | st.floats(allow_nan=False)
    | TEXT,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, (1 << 64) - 1),
    st.integers(0, 24),
    TEXT,
    st.one_of(TEXT, st.binary(max_size=40)),
    ATTRS,
    st.none() | st.tuples(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8)),
)
def test_log_record_encoders_agree(
    when: int, severity: int, text: str, body: Any, attrs: dict[str, Any], ids: Any
) -> None:
    trace_id, span_id = ids if ids is not None else (None, None)
    args = (when, severity, text, body, attrs, trace_id, span_id, 7)
    if isinstance(body, bytes):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return  # bytes are given as UTF-8 only
    c, py = _otlp.log_record(*args), otlp.log_record(*args)
    assert c == py
    [record] = logs_pb2.ScopeLogs.FromString(c).log_records
    assert record.time_unix_nano == when and record.severity_text == text
    assert {kv.key for kv in record.attributes} == {k for k, v in attrs.items() if v is not None}
    assert record.trace_id == (trace_id or b"") and record.span_id == (span_id or b"")


def teardown_module() -> None:
    for w in _WRITERS:
        w.fh.close()
