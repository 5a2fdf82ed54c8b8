"""Which trace context a tracer reads and writes, and whose it obeys.

``tracing.propagators`` (``OTEL_PROPAGATORS``) names the formats: ``tracecontext`` (W3C
``traceparent``/``tracestate``), ``b3`` (one ``b3`` field) and ``b3multi`` (``X-B3-*``),
read in that order with the last valid one winning, as the SDK's composite propagator
does, and written all; ``baggage`` is carried untouched whatever the list says; ``none``
reads and writes nothing.  ``entryPoints.<ep>.traceContext`` decides whose inbound context
is obeyed: from a client outside ``trustedIPs`` it can be ``replace``d or ``forward``ed
instead, a new root trace starting with the inbound context as its span link.

A tracer with the defaults (W3C, obeyed from everyone) has no ``Propagation``: its request
path is the compiled W3C one (``_context``).  With one, the tracer reads the inbound
context here and the trace writes ``outbound`` lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from hopwire.addresses import networks, within

W3C = 1  # hopwire.http.head: the fields the request scan sets apart (traceparent, tracestate)
B3 = 2  # b3, X-B3-*

_B3_TRACE = re.compile(rb"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")
_B3_SPAN = re.compile(rb"[0-9a-fA-F]{16}")
_B3_SAMPLED = (b"1", b"True", b"true", b"d")
_ZERO = re.compile(rb"0+")


class Inbound(NamedTuple):
    """A valid inbound context, as a canonical version-00 traceparent value and the
    tracestate to propagate (None: none)."""

    traceparent: bytes
    tracestate: bytes | None

    def link(self) -> tuple[bytes, bytes, int, bytes]:
        """As a span link (records.SpanLink): raw ids, flags, tracestate."""
        value = self.traceparent
        return (
            bytes.fromhex(value[3:35].decode()),
            bytes.fromhex(value[36:52].decode()),
            int(value[53:55], 16),
            self.tracestate or b"",
        )


def _first(tfields: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for field, value in tfields:
        if field.lower() == name:
            return value
    return None


def b3_context(tfields: Sequence[tuple[bytes, bytes]]) -> Inbound | None:
    """The B3 context of the inbound fields (one ``b3`` field, else ``X-B3-*``), read as the
    SDK's B3 propagators read it: a 64-bit trace id is widened with zeros; ``1``, ``true``
    or ``d`` (or ``X-B3-Flags: 1``) is sampled; anything invalid is no context."""
    trace_id = span_id = None
    sampled = b"0"
    flags = None
    single = _first(tfields, b"b3")
    if single:
        sampled = b"1"
        parts = single.split(b"-", 4)
        if len(parts) == 1:
            sampled = parts[0]
        elif len(parts) in (2, 3, 4):
            trace_id, span_id = parts[0], parts[1]
            if len(parts) > 2:
                sampled = parts[2]
    else:
        trace_id = _first(tfields, b"x-b3-traceid")
        span_id = _first(tfields, b"x-b3-spanid")
        sampled = _first(tfields, b"x-b3-sampled") or sampled
        flags = _first(tfields, b"x-b3-flags")
    if trace_id is None or span_id is None:
        return None
    if _B3_TRACE.fullmatch(trace_id) is None or _B3_SPAN.fullmatch(span_id) is None:
        return None
    if _ZERO.fullmatch(trace_id) or _ZERO.fullmatch(span_id):
        return None  # not a valid span context: no parent
    on = sampled in _B3_SAMPLED or flags == b"1"
    value = b"00-%s-%s-%s" % (
        trace_id.lower().rjust(32, b"0"),
        span_id.lower(),
        b"01" if on else b"00",
    )
    return Inbound(value, None)


def b3_lines(own: bytes, multi: bool) -> bytes:
    """The B3 field lines of a trace's own W3C line (``traceparent: 00-{trace}-{span}-{flags}``),
    as the SDK's B3 propagators write them."""
    tid, sid, flags = own[16:48], own[49:65], own[66:68]
    sampled = b"1" if int(flags, 16) & 1 else b"0"
    if multi:
        return b"x-b3-traceid: %s\r\nx-b3-spanid: %s\r\nx-b3-sampled: %s\r\n" % (tid, sid, sampled)
    return b"b3: %s-%s-%s\r\n" % (tid, sid, sampled)


def propagated_fields(propagators: Sequence[str]) -> int:
    """The trace context fields the request scan sets apart for these propagators."""
    return (W3C if "tracecontext" in propagators else 0) | (
        B3 if "b3" in propagators or "b3multi" in propagators else 0
    )


class Propagation:
    """A tracer's formats (``tracing.propagators``) and its entrypoint's trust
    (``entryPoints.<ep>.traceContext``); ``w3c`` reads the W3C context of the inbound fields
    (the tracer's own parser, so that both paths read it alike)."""

    __slots__ = ("b3", "fields", "forward", "order", "restart", "trusted", "w3c", "writes_w3c")

    def __init__(self, propagators: Sequence[str], trace_context: Any, w3c: Any):
        self.writes_w3c = "tracecontext" in propagators
        self.b3 = 2 if "b3multi" in propagators else 1 if "b3" in propagators else 0
        # the formats read, in the list's order: the last valid one wins
        self.order = [p for p in propagators if p in ("tracecontext", "b3", "b3multi")]
        self.fields = propagated_fields(propagators)
        self.restart = trace_context.untrusted != "obey"
        self.forward = trace_context.untrusted == "forward"
        self.trusted = networks(trace_context.trustedIPs)
        self.w3c = w3c

    @staticmethod
    def needed(propagators: Sequence[str], trace_context: Any) -> bool:
        """Whether a tracer needs one: anything but W3C alone, obeyed from everyone."""
        formats = [p for p in propagators if p != "baggage"]
        return formats != ["tracecontext"] or trace_context.untrusted != "obey"

    def trusts(self, ip: str) -> bool:
        """Whether the inbound context of a client at ``ip`` decides (restart off: always)."""
        return not self.restart or within(ip, self.trusted)

    def extract(self, tfields: Sequence[tuple[bytes, bytes]]) -> Inbound | None:
        found = None
        for name in self.order:
            got = self.w3c(tfields) if name == "tracecontext" else b3_context(tfields)
            if got is not None:
                found = got
        return found

    def outbound(self, own: bytes) -> bytes:
        """The lines a backend gets for a trace whose own W3C lines are ``own``."""
        out = own if self.writes_w3c else b""
        if self.b3:
            out += b3_lines(own, self.b3 == 2)
        return out


def field_lines(fields: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Inbound fields as they came (``forward``): ``name: value`` lines."""
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in fields)
