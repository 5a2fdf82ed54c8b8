"""B3 read and written as the SDK's own B3 propagators read and write it (hypothesis), and
the propagators and trust of hopwire.telemetry.propagation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat

from hopwire.http import head
from hopwire.telemetry.propagation import B3, W3C, Propagation, b3_context, b3_lines
from hopwire.telemetry.tracing import w3c_context

HEX16 = st.text("0123456789abcdefABCDEF", min_size=16, max_size=16)
HEX32 = st.text("0123456789abcdefABCDEF", min_size=32, max_size=32)
ID = st.sampled_from(["0" * 16, "0" * 32, "", "xyz", "12345"]) | HEX16 | HEX32
SAMPLED = st.sampled_from(["0", "1", "d", "true", "True", "false", "", "2"])
SINGLE = st.one_of(
    st.builds(lambda t, s: f"{t}-{s}", ID, ID),
    st.builds(lambda t, s, d: f"{t}-{s}-{d}", ID, ID, SAMPLED),
    st.builds(lambda t, s, d, p: f"{t}-{s}-{d}-{p}", ID, ID, SAMPLED, ID),
    SAMPLED,
    st.text(max_size=40),
)
MULTI = st.dictionaries(
    st.sampled_from(["x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags"]),
    ID | SAMPLED,
)


def sdk_reads(carrier: dict[str, str]) -> tuple[str, str, int] | None:
    ctx = trace.get_current_span(B3MultiFormat().extract(carrier)).get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", int(ctx.trace_flags)


@settings(max_examples=2000, deadline=None)
@given(st.none() | SINGLE, MULTI)
def test_b3_is_read_as_the_sdk_reads_it(single: str | None, multi: dict[str, str]) -> None:
    carrier = dict(multi)
    if single is not None:
        carrier["b3"] = single
    fields = [(k.encode(), v.encode()) for k, v in carrier.items()]
    got = b3_context(fields)
    expected = sdk_reads(carrier)
    if expected is None:
        assert got is None
        return
    assert got is not None and got.tracestate is None
    tid, sid, flags = expected
    assert got.traceparent == f"00-{tid}-{sid}-{flags:02x}".encode()


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8), st.booleans())
def test_b3_is_written_as_the_sdk_writes_it(tid: bytes, sid: bytes, sampled: bool) -> None:
    own = b"traceparent: 00-%s-%s-%s\r\n" % (
        tid.hex().encode(),
        sid.hex().encode(),
        b"03" if sampled else b"02",
    )
    span = trace.NonRecordingSpan(
        trace.SpanContext(
            int.from_bytes(tid, "big") or 1,
            int.from_bytes(sid, "big") or 1,
            is_remote=False,
            trace_flags=trace.TraceFlags(1 if sampled else 0),
        )
    )
    if not any(tid) or not any(sid):
        return  # not a valid context: hopwire never writes one
    context = trace.set_span_in_context(span)
    for multi, propagator in ((False, B3SingleFormat()), (True, B3MultiFormat())):
        carrier: dict[str, str] = {}
        propagator.inject(carrier, context)
        lines = b3_lines(own, multi).decode().split("\r\n")
        mine = dict(line.split(": ", 1) for line in lines if line)
        assert mine == carrier


def test_the_request_scan_sets_apart_what_the_propagators_read() -> None:
    fields = [
        (b"traceparent", b"tp"),
        (b"B3", b"single"),
        (b"X-B3-TraceId", b"t"),
        (b"x-b3-unknown", b"kept"),
        (b"accept", b"*/*"),
    ]
    for mask, apart in (
        (0, []),
        (W3C, [b"traceparent"]),
        (B3, [b"B3", b"X-B3-TraceId"]),
        (W3C | B3, [b"traceparent", b"B3", b"X-B3-TraceId"]),
    ):
        kept, *_, tfields, _, _ = head.scan_fields(fields, mask, False, False)
        assert [n for n, _ in tfields or []] == apart
        assert [n for n, _ in kept] == [n for n, _ in fields if n not in apart]


def context(untrusted: str = "obey", trusted: tuple[str, ...] = ()) -> Any:
    return SimpleNamespace(untrusted=untrusted, trustedIPs=trusted)


def test_which_tracers_need_a_propagation_and_whom_they_trust() -> None:
    assert not Propagation.needed(("tracecontext", "baggage"), context())
    assert not Propagation.needed(("tracecontext",), context())
    assert Propagation.needed(("b3",), context())
    assert Propagation.needed(("none",), context())
    assert Propagation.needed(("tracecontext",), context("replace"))
    p = Propagation(("tracecontext",), context("replace", ("10.0.0.0/8", "::1")), w3c_context)
    assert p.trusts("10.1.2.3") and p.trusts("::1")
    assert not p.trusts("127.0.0.1") and not p.trusts("") and not p.trusts("not-an-ip")
    assert Propagation(("b3",), context(), w3c_context).trusts("127.0.0.1")  # obey: everyone


def test_the_last_valid_context_wins_and_none_reads_nothing() -> None:
    w3c = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    fields = [(b"traceparent", w3c), (b"b3", b"463ac35c9f6413ad-a2fb4a1d1a96d312-0")]
    b3_first = Propagation(("b3", "tracecontext"), context(), w3c_context).extract(fields)
    w3c_first = Propagation(("tracecontext", "b3"), context(), w3c_context).extract(fields)
    assert b3_first is not None and b3_first.traceparent == w3c
    assert w3c_first is not None and w3c_first.traceparent.endswith(b"-a2fb4a1d1a96d312-00")
    broken = [(b"traceparent", b"junk"), (b"b3", b"463ac35c9f6413ad-a2fb4a1d1a96d312-1")]
    got = Propagation(("b3", "tracecontext"), context(), w3c_context).extract(broken)
    assert got is not None and got.traceparent.endswith(b"-01")  # an invalid one does not win
    none = Propagation(("none",), context(), w3c_context)
    assert none.fields == 0 and none.outbound(b"traceparent: 00-x\r\n") == b""
