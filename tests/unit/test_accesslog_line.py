"""The compiled access-log line (_accesslog.json_line) is the document the reference writes
(accesslog.Writer.doc through orjson), and log records are encoded the same by C and Python.

Hypothesis draws ended exchanges (any text in the host, names and TLS fields, any bytes in
the request target, traced or not, with or without a backend attempt, TLS or not) and both
lines must parse to the same JSON document; the C and Python LogRecord encoders must give
the same bytes, which opentelemetry-proto reads back."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.logs.v1 import logs_pb2

from hopwire.checks import load
from hopwire.telemetry import _otlp, otlp
from hopwire.telemetry._accesslog import Logger, json_line, json_lines, record, records
from hopwire.telemetry.accesslog import AccessLogger, Writer

# what a str field can hold here: text that has a UTF-8 form (a Python str from the wire does)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
INT = st.integers(0, (1 << 40))


_WRITERS: list[Writer] = []


class Slots:
    """An object with __slots__, as the exchange, the server and the sampled trace are: the C
    code reads such attributes at their offsets (a SimpleNamespace takes the generic path)."""

    __slots__ = (
        "attempts",
        "down",
        "headers",
        "host",
        "http10",
        "log_url",
        "method",
        "origin_status",
        "origin_t0",
        "path_query",
        "req_bytes",
        "resp_bytes",
        "sampled",
        "server",
        "span_hex",
        "span_raw",
        "status",
        "t0",
        "t1",
        "tid",
        "tid_hex",
        "timed",
        "trace",
        "url",
    )  # fmt: skip

    def __init__(self, **fields: Any):
        for name, value in fields.items():
            setattr(self, name, value)


def made(slotted: bool, **fields: Any) -> Any:
    return Slots(**fields) if slotted else SimpleNamespace(**fields)


class Connection:
    """A connection with the slot where the compiled line keeps its part (``log_fields``, as
    Downstream has it): made at the first line, then copied."""

    __slots__ = ("client_ip", "client_port", "ep", "log_fields", "tls", "tls_fields", "version")

    def __init__(self, **fields: Any):
        self.log_fields = None
        for name, value in fields.items():
            setattr(self, name, value)


def writer() -> Writer:
    """One writer for every example (its file, /dev/null, opened once)."""
    if not _WRITERS:
        config = load(None, ["--accessLog.filePath=/dev/null"], {})
        assert config.accessLog is not None
        _WRITERS.append(
            Writer(config.accessLog, SimpleNamespace(counters=Counter(), span_paths=[]))
        )
    return _WRITERS[0]


@st.composite
def ended(draw: Any) -> tuple[Any, Any, float]:
    slotted = draw(st.booleans())
    tls = draw(st.booleans())
    fields = draw(st.none() | st.tuples(TEXT, TEXT, st.none() | TEXT)) if tls else None
    kept = draw(st.booleans())  # the parts kept on the connection and the server, or made anew
    down = (Connection if kept else SimpleNamespace)(
        client_ip=draw(TEXT),
        client_port=draw(st.integers(0, 65535)),
        ep=SimpleNamespace(tls=tls, scheme_str="https" if tls else "http"),
        tls=fields,
        version=draw(st.sampled_from(["1.1", "2"])),  # an HTTP/1.1 connection or an HTTP/2 stream
    )
    down.tls_fields = lambda: fields
    attempts = draw(st.integers(0, 4))
    trace = draw(
        st.none()
        | st.builds(
            lambda sampled, tid, span: made(
                slotted,
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
    ex = made(
        slotted,
        t0=t0,
        t1=t0 + draw(st.floats(0, 100)),
        attempts=attempts,
        server=(made(True, url=draw(TEXT), log_url=None) if kept else made(slotted, url=draw(TEXT)))
        if attempts
        else None,
        origin_status=draw(st.integers(0, 599)),
        origin_t0=t0 + draw(st.floats(0, 100)),
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
    names = (draw(TEXT), draw(st.just("") | TEXT), draw(st.just("") | TEXT))
    w = writer()
    # the Python observer or the compiled one: the lines read the same four fields of either
    if draw(st.booleans()):
        logger: Any = AccessLogger(w, *names)
    else:
        logger = Logger(w, *names, w.pending, w.batch)
    return ex, logger, draw(st.floats(1e9, 2e9))


@settings(max_examples=300, deadline=None)
@given(ended())
def test_compiled_line_is_the_reference_document(case: tuple[Any, Any, float]) -> None:
    ex, logger, offset = case
    w = logger.writer
    assert w.compiled  # the default fields: the C line is the one written
    line = json_line(ex, logger, offset)
    assert json_line(ex, logger, offset) == line  # the second from the parts kept, if any
    if isinstance(ex.down, Connection):
        assert isinstance(ex.down.log_fields, bytes)
        assert ex.server is None or isinstance(ex.server.log_url, bytes)
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


@settings(max_examples=100, deadline=None)
@given(st.lists(ended(), max_size=40), st.integers(0, (1 << 63)))
def test_batches_are_the_lines_one_by_one(cases: list[Any], observed: int) -> None:
    """json_lines and records (what the writer calls for 32 ended exchanges at a time) give
    the lines and entries of json_line and record, in order."""
    offset = 1.7e9
    pending = [(ex, logger) for ex, logger, _ in cases]
    assert json_lines(pending, offset) == b"".join(json_line(ex, lg, offset) for ex, lg in pending)
    one_by_one = [record(ex, lg, offset, observed) for ex, lg in pending]
    assert records(pending, offset, observed) == (
        b"".join(line for line, _ in one_by_one),
        b"".join(entry for _, entry in one_by_one),
    )


def test_a_bad_exchange_fails_its_batch_and_the_writer_keeps_the_others() -> None:
    """A field of the wrong type fails the C batch; the writer then writes the others one by
    one and counts the bad one as dropped."""
    good = made(
        True, t0=1.0, t1=2.0, attempts=0, server=None, origin_status=0, origin_t0=0.0,
        down=SimpleNamespace(client_ip="1.2.3.4", client_port=1, version="1.1", ep=SimpleNamespace(
            tls=False, scheme_str="http")), trace=None, method="GET", path_query=b"/",
        http10=False, host="h", req_bytes=0, status=200, resp_bytes=2, headers=[],
    )  # fmt: skip
    bad = made(True, **{name: getattr(good, name) for name in ("t0", "t1", "attempts", "down")})
    for name in ("server", "origin_status", "origin_t0", "trace", "http10", "req_bytes"):
        setattr(bad, name, getattr(good, name))
    bad.method, bad.path_query, bad.host = "GET", "/not-bytes", "h"
    bad.status, bad.resp_bytes, bad.headers = 200, 2, []
    w = writer()
    logger = AccessLogger(w, "web", "r", "s")
    pending = [(good, logger), (bad, logger), (good, logger)]
    try:
        json_lines(pending, 0.0)
    except TypeError:
        pass
    else:
        raise AssertionError("a str request target should fail the batch")
    w.worker.counters.clear()
    w.pending = pending
    w.lines, w.formatted = [], 0
    w.format()
    assert b"".join(w.lines).count(b"\n") == 2
    assert w.worker.counters == {"accesslog_dropped": 1, "accesslog_errors": 1}
    w.lines, w.formatted = [], 0


def test_every_escape_at_every_place_of_a_word() -> None:
    """The C string writer copies runs of eight plain bytes whole: a character JSON escapes,
    at any place in or across those runs, is still escaped (and bytes above 0x7F never are)."""
    w = writer()
    logger = AccessLogger(w, "web", "r", "s")
    for special in ('"', "\\", "\x00", "\x1f", "\n", "\x7f", "é", "\u2028"):
        for length in range(1, 20):
            for at in range(length):
                host = "".join(special if i == at else "abcdefgh"[i % 8] for i in range(length))
                ex = made(
                    True, t0=1.0, t1=2.0, attempts=0, server=None, origin_status=0,
                    origin_t0=0.0, down=SimpleNamespace(client_ip="1.2.3.4", client_port=1, version="1.1",
                    ep=SimpleNamespace(tls=False, scheme_str="http")), trace=None, method="GET",
                    path_query=host.encode("utf-8"), http10=False, host=host, req_bytes=0,
                    status=200, resp_bytes=2, headers=[],
                )  # fmt: skip
                doc = json.loads(json_line(ex, logger, 0.0))
                assert doc["RequestHost"] == host
                assert doc["RequestPath"] == host.encode("utf-8").decode("latin-1")


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


def test_the_compiled_observer_queues_and_formats_a_batch() -> None:
    """_accesslog.Logger: start() asks the exchange to time its attempt, finish() reads a TLS
    connection's fields while it is open, queues (exchange, logger) on the writer's list and
    has the writer format a full batch; a writer with a filter keeps the Python observer."""
    from hopwire.telemetry.accesslog import access_logger

    w = writer()
    w.lines, w.formatted = [], 0
    logger = access_logger(w, "web", "r", "s")
    assert isinstance(logger, Logger) and logger.writer is w and logger.router == "r"
    read: list[int] = []
    down = SimpleNamespace(
        client_ip="1.2.3.4",
        client_port=1,
        version="1.1",
        ep=SimpleNamespace(tls=True, scheme_str="https"),
        tls_fields=lambda: read.append(1) or ("1.3", "TLS_AES_128_GCM_SHA256", None),
    )
    base = {
        "t0": 1.0, "t1": 2.0, "attempts": 0, "server": None, "origin_status": 0,
        "origin_t0": 0.0, "down": down, "trace": None, "method": "GET",
        "path_query": b"/", "http10": False, "host": "h", "req_bytes": 0, "status": 200,
        "resp_bytes": 2, "headers": [],
    }  # fmt: skip
    exchanges = [made(True, **base) for _ in range(w.batch)]
    for i, ex in enumerate(exchanges):
        ex.timed = 0
        logger.start(ex)
        assert ex.timed == 1
        logger.finish(ex)
        if i < w.batch - 1:  # read while the connection is open, before any line is made
            assert len(read) == i + 1 and len(w.pending) == i + 1
    assert w.pending == []  # the full batch was formatted
    assert b"".join(w.lines).count(b"\n") == w.batch
    assert b'"TLSVersion":"1.3"' in w.lines[0]
    w.lines, w.formatted = [], 0
    filtered = load(
        None, ["--accessLog.filePath=/dev/null", "--accessLog.filters.statusCodes=500"], {}
    )
    assert filtered.accessLog is not None
    other = Writer(filtered.accessLog, SimpleNamespace(counters=Counter(), span_paths=[]))
    assert isinstance(access_logger(other, "web", "r", "s"), AccessLogger)
    other.fh.close()
