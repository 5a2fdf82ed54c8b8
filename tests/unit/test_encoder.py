"""The compiled span encoder (_otlp.c) writes exactly the reference encoder's bytes.

Hypothesis draws random span records (every optional part present or absent, any text,
captured headers, several attempts, the limits of each integer) and both encoders must give
byte-identical spans; a bad record is refused by both, with the same kind of error.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1 import trace_pb2

from hopwire.telemetry import otlp
from hopwire.telemetry.records import AttemptRecord, SpanExtra, SpanRecord

U64 = st.integers(0, (1 << 64) - 1)
TEXT = st.text(max_size=40)  # any code point, surrogates included (both encode with "replace")
SHORT = st.text(max_size=300)  # long enough for two-byte length varints
HEADERS = st.lists(st.tuples(st.text(min_size=1, max_size=20), st.lists(SHORT, max_size=3)))
# every boundary the encoders branch on (1xx, 400, 500), then any status
STATUS = st.sampled_from([0, 100, 101, 200, 399, 400, 404, 499, 500, 503, 599]) | st.integers(
    0, 599
)
QUERY = st.one_of(st.just(""), st.text(max_size=60), st.just("page=2&token=x&flag&=v&page"))

attempt = st.builds(
    lambda *fields: list(AttemptRecord(*fields)),
    st.binary(min_size=8, max_size=8),
    U64,
    U64,
    TEXT,
    TEXT,
    st.integers(0, 65535),
    STATUS,
    st.sampled_from(["", "connect_failed", "503", "upstream_truncated"]),
)

record = st.builds(
    SpanRecord,
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=8, max_size=8),
    st.sampled_from([b""]) | st.binary(min_size=8, max_size=8),
    st.booleans(),
    st.integers(0, 0xFF),
    st.sampled_from([b"", b"k=v", b"a=1,b=2" * 30]),
    st.sampled_from(["GET", "POST", "PURGE"]) | TEXT,
    st.sampled_from(["", "api", "web@file"]) | TEXT,
    SHORT,
    QUERY,
    TEXT,
    st.integers(0, 65535),
    TEXT,
    st.integers(0, 65535),
    st.sampled_from(["1.0", "1.1"]),
    TEXT,
    STATUS,
    st.sampled_from(["", "client_closed", "500"]),
    U64,
    U64,
    st.booleans(),
    st.lists(attempt, max_size=3),
    HEADERS,
    HEADERS,
    st.sampled_from(["http", "https"]),
)


link = st.tuples(
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=8, max_size=8),
    st.integers(0, 0xFF),
    st.sampled_from([b"", b"k=v", b"a=1,b=2" * 30]),
)
extra = st.none() | st.builds(
    SpanExtra,
    st.sampled_from([b""]) | st.binary(min_size=8, max_size=8),
    st.sampled_from(["", "error", "slow"]) | TEXT,
    st.lists(link, max_size=2),
)


@settings(max_examples=1000, deadline=None)
@given(record, extra)
def test_the_extra_is_encoded_alike(rec: SpanRecord, more: SpanExtra | None) -> None:
    """The optional 26th field: the CLIENT spans' parent, the kept mark on every span, the
    SERVER span's links; both encoders write the same bytes and protobuf reads them back."""
    full = (*rec, tuple(more) if more is not None else None)
    expected = otlp.encoder("python").spans_of(full)
    assert otlp.encoder("c").spans_of(full) == expected
    if more is None:
        assert expected == otlp.encoder("python").spans_of(rec)
        return
    spans = [trace_pb2.ScopeSpans.FromString(e).spans[0] for e in expected]
    server, clients = spans[0], spans[1:]
    for span in spans:
        kept = {kv.key: kv.value.string_value for kv in span.attributes}.get(otlp.KEPT)
        assert kept == (more.kept or None)
    for client in clients:
        assert client.parent_span_id == (more.client_parent or rec.span_id)
    got = [(lk.trace_id, lk.span_id, lk.flags, lk.trace_state.encode()) for lk in server.links]
    assert got == [(t, sid, f | 0x300, state) for t, sid, f, state in more.links]


@settings(max_examples=3000, deadline=None)
@given(record, st.sampled_from([(), ("page",), ("page", "token", "")]))
def test_the_c_encoder_writes_the_reference_bytes(rec: SpanRecord, safe: tuple[str, ...]) -> None:
    reference = otlp.encoder("python", safe)
    compiled = otlp.encoder("c", safe)
    expected = reference.spans_of(rec)
    assert compiled.spans_of(rec) == expected
    assert compiled.spans_of(tuple(rec)) == expected  # as the tracer makes it: a plain tuple
    assert reference.spans_of(rec) == expected  # the reference's cache changes nothing


@settings(max_examples=300, deadline=None)
@given(st.lists(record, max_size=8), st.binary(max_size=200), st.binary(max_size=50))
def test_batches_are_the_reference_request(
    records: list[SpanRecord], resource: bytes, scope: bytes
) -> None:
    """add/take (the exporter's path) give the bytes of otlp.request over the spans."""
    reference = otlp.encoder("python")
    compiled = otlp.encoder("c")
    spans = [span for rec in records for span in reference.spans_of(rec)]
    for rec in records:
        assert compiled.add(rec) == reference.add(rec)
    assert compiled.pending == reference.pending == len(spans)
    body = compiled.take(resource, scope)
    assert body == reference.take(resource, scope) == otlp.request(resource, scope, spans)
    assert compiled.pending == reference.pending == 0
    assert compiled.take(resource, scope) == otlp.request(resource, scope, [])


@settings(max_examples=300, deadline=None)
@given(st.lists(record, min_size=1, max_size=8), st.sampled_from(["c", "python"]))
def test_a_workers_spans_are_exported_as_encoded(records: list[SpanRecord], worker: str) -> None:
    """The worker encodes (add), sends what drain gives; the exporter's encoder of either
    kind takes it in (extend) and writes the request the records would have made."""
    spans = [span for rec in records for span in otlp.encoder("python").spans_of(rec)]
    sender = otlp.encoder(worker)
    for rec in records:
        sender.add(rec)
    count = sender.pending
    datagram = sender.drain()
    assert sender.pending == 0 and sender.drain() == b""
    assert datagram == b"".join(spans) and otlp.split_spans(datagram) == spans
    for kind in ("c", "python"):
        exporter = otlp.encoder(kind)
        exporter.extend(datagram, count)
        exporter.extend(memoryview(bytearray(datagram)), count)  # as the exporter reads it
        assert exporter.pending == 2 * count
        assert exporter.take(b"r", b"s") == otlp.request(b"r", b"s", spans + spans)


ENTRY = st.binary(max_size=200).map(lambda b: b"\x12" + otlp.varint(len(b)) + b)


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=40),
        st.lists(ENTRY, max_size=4).map(b"".join),
        st.tuples(st.lists(ENTRY, max_size=3).map(b"".join), st.binary(max_size=4)).map(
            lambda t: t[0] + t[1]  # a cut or trailing piece
        ),
    ),
    st.integers(-1, 5),
)
def test_extend_takes_exactly_that_many_spans_or_nothing(data: bytes, count: int) -> None:
    entries = otlp.split_spans(data)
    valid = entries is not None and len(entries) == count > 0
    for kind in ("c", "python"):
        encoder = otlp.encoder(kind)
        encoder.add(GOOD)
        if valid:
            encoder.extend(data, count)
            assert encoder.pending == 1 + count
        else:
            with pytest.raises(ValueError):
                encoder.extend(data, count)
            assert encoder.pending == 1  # nothing added
        expected = otlp.encoder("python").spans_of(GOOD) + (entries if valid else [])  # type: ignore[operator]
        assert encoder.take(b"r", b"s") == otlp.request(b"r", b"s", expected)


def _bad(rec: SpanRecord, **change: Any) -> tuple[Any, ...]:
    return tuple(rec._replace(**change))


GOOD = SpanRecord(
    b"t" * 16, b"s" * 8, b"", False, 1, b"", "GET", "r", "/", "", "h", 80, "c", 1, "1.1", "",
    200, "", 1, 2, False, [], (), (), "https"
)  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        tuple(GOOD)[:-1],  # a field short
        _bad(GOOD, trace_id=b"short"),
        _bad(GOOD, span_id=12),
        _bad(GOOD, parent_id=b"abc"),
        _bad(GOOD, path=b"/bytes"),
        _bad(GOOD, status="200"),
        _bad(GOOD, attempts=[[b"12345678", 1, 2, "u", "h"]]),
        _bad(GOOD, attempts=[[b"1234", 1, 2, "u", "h", 1, 0, ""]]),
        _bad(GOOD, request_headers=[("x", ["a"], "extra")]),
        _bad(GOOD, response_headers=[("x", [b"bytes"])]),
        _bad(GOOD, scheme=b"https"),
        (*GOOD, (b"abc", "", ())),  # a CLIENT parent of the wrong size
        (*GOOD, (b"", b"error", ())),  # kept as bytes
        (*GOOD, (b"", "", [(b"t" * 16, b"s" * 7, 1, b"")])),  # a link's span id
        (*GOOD, (b"", "", [(b"t" * 16, b"s" * 8, 1)])),  # a link of three fields
        (*GOOD, None, None),  # a field too many
    ],
)
def test_a_bad_record_is_refused_by_both(bad: tuple[Any, ...]) -> None:
    for kind in ("python", "c"):
        with pytest.raises((TypeError, ValueError, AttributeError)):
            otlp.encoder(kind).spans_of(bad)
        encoder = otlp.encoder(kind)
        encoder.add(GOOD)
        with pytest.raises((TypeError, ValueError, AttributeError)):
            encoder.add(bad)
        assert encoder.pending == 1  # a refused record adds nothing to the batch
        assert encoder.take(b"r", b"s") == otlp.request(
            b"r", b"s", otlp.encoder(kind).spans_of(GOOD)
        )
    assert otlp.encoder("c").spans_of(GOOD) == otlp.encoder("python").spans_of(GOOD)
