"""The compiled trace context (_context.c) writes the lines the W3C rules and the SDK's sampler
say, for the ids it draws.

- root(bound): a valid traceparent line (version 00, ids not zero, lower-case hex), flags 02
  or 03, sampled exactly when the SDK's ParentBased(TraceIdRatioBased) samples that trace id;
  a sampled root's raw ids are the line's.
- child(value): for every value, None unless parse_traceparent reads it as canonical
  (version 00, nothing around it); otherwise the inbound trace id, a new span id and the
  parent's sampled/random flags, and when sampled the raw ids and the parent's.
- ids drawn after fork differ between parent and child.
"""

from __future__ import annotations

import os
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased

from hopwire.telemetry import _context
from hopwire.telemetry.tracing import LOW64, parse_traceparent, sampling_bound

LINE = re.compile(rb"traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\r\n\Z")


def _line(line: bytes) -> tuple[bytes, bytes, int]:
    m = LINE.match(line)
    assert m is not None, line
    tid, span, flags = m.groups()
    assert int(tid, 16) and int(span, 16)
    return tid, span, int(flags, 16)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([0.0, 1e-9, 0.01, 0.25, 0.5, 0.999, 1.0]) | st.floats(0, 1))
def test_roots_are_sampled_as_the_sdk_samples_their_ids(rate: float) -> None:
    sdk = ParentBased(TraceIdRatioBased(rate))
    bound = sampling_bound(rate)
    arg = bound if bound <= LOW64 else None  # as Tracer passes it
    for _ in range(200):
        got = _context.root(arg)
        sampled = not isinstance(got, bytes)
        line = got[0] if isinstance(got, tuple) else got
        tid, span, flags = _line(line)
        assert flags == (3 if sampled else 2)
        theirs = sdk.should_sample(None, int(tid, 16), "x").decision is Decision.RECORD_AND_SAMPLE
        assert sampled == theirs == ((int(tid, 16) & LOW64) < bound)
        if isinstance(got, tuple):
            _, raw_tid, raw_span, server = got
            assert raw_tid.hex().encode() == tid and raw_span.hex().encode() == span
            assert len(server) == 8 and int.from_bytes(server, "big") and server != raw_span


def test_every_root_at_rate_1_and_none_at_rate_0() -> None:
    assert all(isinstance(_context.root(None), tuple) for _ in range(1000))
    assert all(isinstance(_context.root(0), bytes) for _ in range(1000))


HEX = "0123456789abcdef"
canonical = st.builds(
    lambda t, s, f: f"00-{t}-{s}-{f}".encode(),
    st.text(HEX, min_size=32, max_size=32),
    st.text(HEX, min_size=16, max_size=16),
    st.text(HEX, min_size=2, max_size=2),
)
near = st.builds(  # one byte changed, added or removed, or whitespace around it
    lambda v, i, c, how: (
        v[:i] + bytes([c]) + v[i + 1 :]
        if how == 0
        else v[:i] + bytes([c]) + v[i:]
        if how == 1
        else v[:i] + v[i + 1 :]
        if how == 2
        else b" " + v + b"\t"
    ),
    canonical,
    st.integers(0, 54),
    st.sampled_from(b"0f-Fg \t0\x00"),
    st.integers(0, 3),
)
zeros = st.sampled_from(
    [
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(canonical | near | zeros | st.binary(max_size=60))
def test_child_continues_what_the_parser_reads_as_canonical(value: bytes) -> None:
    got = _context.child(value)
    parsed = parse_traceparent(value)
    if parsed is None or value[:3] != b"00-" or len(value) != 55:
        assert got is None
        return
    assert got is not None
    tid, parent, flags = parsed
    line = got[0] if isinstance(got, tuple) else got
    out_tid, span, out_flags = _line(line)
    assert out_tid == tid and span != parent and out_flags == flags & 3
    assert isinstance(got, tuple) == bool(flags & 1)
    if isinstance(got, tuple):
        _, raw_tid, raw_span, server, raw_parent, kept_flags = got
        assert raw_tid.hex().encode() == tid and raw_span.hex().encode() == span
        assert raw_parent.hex().encode() == parent and kept_flags == flags & 3
        assert len(server) == 8 and int.from_bytes(server, "big")


def test_a_forked_child_draws_other_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(write, b"".join(_line(_context.root(0))[0] for _ in range(4)))  # type: ignore[arg-type]
        os._exit(0)
    os.close(write)
    theirs = b""
    while chunk := os.read(read, 4096):
        theirs += chunk
    os.waitpid(pid, 0)
    ours = b"".join(_line(_context.root(0))[0] for _ in range(4))  # type: ignore[arg-type]
    assert len(theirs) == len(ours) == 128 and theirs != ours
