"""Tracing on the request path, without the SDK's span objects (DESIGN §3).

A router whose tracing is on gets a ``Tracer``: the observer the exchange calls after routing
(``start``) and when it ends (``finish``).  ``start`` reads the inbound W3C trace context (the
request head scan has already picked out ``traceparent`` and ``tracestate``), makes the sampling
decision of ``ParentBased(TraceIdRatioBased(rate))`` exactly as the SDK does, and hands the
exchange a ``Trace`` that writes the outbound ``traceparent``/``tracestate``.

An unsampled request costs one call of ``_context`` (C: the ids and the header line, ready
to write) and a small object.  A sampled one (``SampledTrace``) also keeps raw ids and
timestamps and becomes one flat record of primitives at ``finish`` (``SpanRecord``; nothing is
built per request that the encoder derives: ``url.full``, the span name, the redacted query),
which ``SpanSink`` encodes at once (OTLP ``Span`` messages, in C) and sends in batches over a
unix datagram socket to the exporter process, which only wraps and exports them.  Nothing here
blocks: a full socket drops the batch and counts it.

Routers whose tracing is off get no tracer, and the request path does no tracing work at all.
"""

from __future__ import annotations

import logging
import re
import time
from binascii import hexlify
from collections.abc import Iterable, Sequence
from random import getrandbits
from time import time_ns
from typing import Any

from hopwire.contracts import ExchangeView, WorkerState
from hopwire.telemetry import otlp
from hopwire.telemetry._context import Keeper, child, root
from hopwire.telemetry.propagation import Inbound, Propagation, field_lines
from hopwire.telemetry.records import (
    ATTEMPT_END,
    ATTEMPT_ERROR,
    ATTEMPT_STATUS,
    SPANS,
    Courier,
)
from hopwire.throttle import Throttle

log = logging.getLogger("hopwire.tracing")

LOW64 = (1 << 64) - 1
SAMPLED = 0x01
RANDOM = 0x02  # W3C Trace Context level 2: the trace id's low 56 bits are random
MAX_TRACESTATE_MEMBERS = 32
BATCH_SPANS = 256  # spans per datagram, at most

_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z")
_CANONICAL = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})").fullmatch
_FLAGS = {b"%02x" % n: n for n in range(256)}
_TS_KEY = re.compile(
    rb"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})\Z"
)
_TS_VALUE = re.compile(rb"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]\Z")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
# the outbound header around the ids: b"traceparent: 00-" trace "-" span TAIL
_TP = b"traceparent: 00-"
_CID_AT = len(_TP) + 33  # where the span id starts in the header line
_TID = slice(len(_TP), len(_TP) + 32)
_TAIL = slice(_CID_AT + 16, None)


def parse_traceparent(value: bytes) -> tuple[bytes, bytes, int] | None:
    """(trace id, parent id, flags) of a valid W3C traceparent, else None; the ids as the
    lower-case hex the header carries.

    Optional whitespace around the value is not part of it (RFC 9110 §5.5).
    """
    m = _CANONICAL(value)
    if m is not None:  # version 00 without whitespace: nearly every header
        trace_id, parent_id, flags = m.groups()
        if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
            return None
        return trace_id, parent_id, _FLAGS[flags]
    m = _TRACEPARENT.match(value.strip(b" \t"))
    if m is None:
        return None
    version = m.group(1)
    if version == b"ff" or (version == b"00" and m.group(5) is not None):
        return None
    trace_id = m.group(2)
    parent_id = m.group(3)
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, int(m.group(4), 16)


def parse_tracestate(values: Iterable[bytes]) -> bytes | None:
    """The tracestate to propagate, or None to drop it (W3C Trace Context §3.3).

    A member that is not ``key=value`` with a valid key and value makes the whole header
    invalid; more than 32 members are not truncated but discarded whole.  A key that repeats
    keeps its first member (the later ones are removed), so the rest still propagates.
    """
    members: list[bytes] = []
    keys: set[bytes] = set()
    count = 0
    for value in values:
        for member in value.split(b","):
            member = member.strip(b" \t")
            if not member:
                continue
            key, sep, val = member.partition(b"=")
            if not sep or not _TS_KEY.match(key) or not _TS_VALUE.match(val):
                return None
            count += 1
            if key not in keys:
                keys.add(key)
                members.append(member)
    if not members or count > MAX_TRACESTATE_MEMBERS:
        return None
    return b",".join(members)


def sampling_bound(rate: float) -> int:
    """TraceIdRatioBased's bound: a root trace is sampled when its low 64 bits are below it."""
    return round(rate * (LOW64 + 1))


def span_id() -> int:
    """A random, valid (non-zero) 64-bit span id."""
    while True:
        n = getrandbits(64)
        if n:
            return n


class Trace:
    """The trace context of an unsampled exchange: only the outbound header line.

    ``line`` is the outbound trace context, set once (never appended to an inbound one):
    ``traceparent: 00-`` trace id ``-`` span id ``-`` flags CRLF, then the tracestate line if
    one propagates; its span id is the CLIENT span of the current attempt.  What else an
    unsampled trace needs, rarely (a retry, a ``traceresponse``), is read back from it.
    """

    __slots__ = ("inbound", "line", "server_hex", "tracer", "tries")
    sampled = False

    tracer: Tracer
    line: bytes
    tries: int
    # set only where they are needed (read with getattr): the inbound traceparent of an
    # adopted trace when unsampled spans may be kept, the traceresponse's SERVER span id
    inbound: bytes
    server_hex: bytes

    @property
    def tid_hex(self) -> bytes:
        return self.line[_TID]

    @property
    def tail(self) -> bytes:
        """ "-flags" CRLF and the tracestate line, as the header line ends."""
        return self.line[_TAIL]

    def begin_attempt(self, server: Any) -> bool:
        """A backend attempt begins; True when it is a retry (a new span id: rebuild the head).
        The exchange calls it for an unsampled trace only on a retry."""
        self.tries += 1
        if self.tries == 1:
            return False
        self.line = b"".join((self.line[:_CID_AT], b"%016x" % span_id(), self.tail))
        return True

    def side_call(self, url_base: str, host: str, port: int) -> tuple[bytes, list[Any] | None]:
        """A call a middleware makes: unsampled, it carries the context and records nothing."""
        return self.line, None

    def end_attempt(self, status: int, error: str) -> None:
        """Nothing to record (the exchange calls it for sampled traces only)."""

    def server_span_hex(self) -> bytes:
        """The id the ``traceresponse`` names: an unsampled SERVER span's id is only made here
        (and kept, should the span be exported after the fact)."""
        made = self.server_hex = b"%016x" % span_id()
        return made

    def ids(self) -> dict[str, str] | None:
        """For log correlation: None, as nothing of an unsampled trace is exported."""
        return None


class SampledTrace(Trace):
    """A sampled exchange: raw ids, timestamps and one attempt record per backend attempt."""

    __slots__ = (
        "attempts",
        "cid",
        "parent_id",
        "reached",
        "remote",
        "response_headers",
        "service_at",
        "span_raw",
        "start",
        "state",
        "tid",
        "trace_flags",
    )
    sampled = True
    tid: bytes  # 16 raw bytes, as OTLP carries it
    cid: bytes  # 8 raw bytes: the CLIENT span of the current attempt
    span_raw: bytes  # the SERVER span
    parent_id: bytes  # 8 raw bytes, or b"" for a root
    remote: bool
    trace_flags: int
    state: bytes
    start: int  # time.time_ns()
    attempts: list[list[Any]]  # AttemptRecords, the last open (end_ns 0) until end_attempt
    response_headers: Sequence[tuple[str, list[str]]]
    # detailed verbosity (set by detailed_stages, read with getattr): the index of the last
    # middleware entered (Details.service: the service), and when the service was entered
    reached: int
    service_at: int

    def begin_attempt(self, server: Any) -> bool:
        self.tries += 1
        retry = self.tries > 1
        if retry:
            self.cid = span_id().to_bytes(8, "big")
            self.line = b"".join((self.line[:_CID_AT], hexlify(self.cid), self.tail))
        pool = server.pool
        # an AttemptRecord, open (end_ns 0) until end_attempt
        self.attempts.append([self.cid, time_ns(), 0, server.url_base, pool.host, pool.port, 0, ""])
        return retry

    def side_call(self, url_base: str, host: str, port: int) -> tuple[bytes, list[Any] | None]:
        """A call a middleware makes (forwardAuth): its traceparent line and its open
        AttemptRecord, a CLIENT span of its own."""
        cid = span_id().to_bytes(8, "big")
        record = [cid, time.time_ns(), 0, url_base, host, port, 0, ""]
        self.attempts.append(record)
        return b"".join((self.line[:_CID_AT], hexlify(cid), self.tail)), record

    def end_attempt(self, status: int, error: str) -> None:
        attempts = self.attempts
        if attempts and attempts[-1][ATTEMPT_END] == 0:
            attempt = attempts[-1]
            attempt[ATTEMPT_END] = time_ns()
            attempt[ATTEMPT_STATUS] = status
            if status >= 400 and not error:
                error = str(status)
            attempt[ATTEMPT_ERROR] = error

    @property
    def span_hex(self) -> bytes:
        return hexlify(self.span_raw)

    def server_span_hex(self) -> bytes:
        return hexlify(self.span_raw)

    def ids(self) -> dict[str, str] | None:
        """For log correlation: the ids as the W3C header writes them."""
        return {"trace_id": self.tid_hex.decode(), "span_id": self.span_hex.decode()}


def _outbound(tracer: Tracer, own: bytes) -> bytes:
    """The lines the backend gets for ``own`` (a PropagatingTracer's trace)."""
    assert tracer.propagation is not None
    return tracer.propagation.outbound(own)


class _OwnContext:
    """What the Outbound traces read from ``own``, their W3C line, instead of ``line``."""

    __slots__ = ()
    own: bytes
    forwarded: bool  # line is the client's context, as it came: it never changes
    links: tuple[tuple[bytes, bytes, int, bytes], ...]

    @property
    def tid_hex(self) -> bytes:
        return self.own[_TID]

    @property
    def tail(self) -> bytes:
        return self.own[_TAIL]


class OutboundTrace(_OwnContext, Trace):
    """An unsampled trace whose backend gets other lines than its own W3C context (B3, no
    context, or the client's as it came: ``propagation``): ``own`` is its W3C line, from
    which its ids are read; ``line`` is what the exchange writes."""

    __slots__ = ("forwarded", "links", "own")

    def begin_attempt(self, server: Any) -> bool:
        self.tries += 1
        if self.tries == 1:
            return False
        self.own = b"".join((self.own[:_CID_AT], b"%016x" % span_id(), self.own[_TAIL]))
        if not self.forwarded:
            self.line = _outbound(self.tracer, self.own)
        return True


class OutboundSampledTrace(_OwnContext, SampledTrace):
    """A sampled trace whose backend gets other lines than its own W3C context
    (OutboundTrace's, for a sampled trace)."""

    __slots__ = ("forwarded", "links", "own")

    def begin_attempt(self, server: Any) -> bool:
        self.tries += 1
        retry = self.tries > 1
        if retry:
            self.cid = span_id().to_bytes(8, "big")
            self.own = b"".join((self.own[:_CID_AT], hexlify(self.cid), self.own[_TAIL]))
            if not self.forwarded:
                self.line = _outbound(self.tracer, self.own)
        pool = server.pool
        self.attempts.append([self.cid, time_ns(), 0, server.url_base, pool.host, pool.port, 0, ""])
        return retry

    def side_call(self, url_base: str, host: str, port: int) -> tuple[bytes, list[Any] | None]:
        cid = span_id().to_bytes(8, "big")
        record = [cid, time.time_ns(), 0, url_base, host, port, 0, ""]
        self.attempts.append(record)
        if self.forwarded:
            return self.line, record
        own = b"".join((self.own[:_CID_AT], hexlify(cid), self.own[_TAIL]))
        return _outbound(self.tracer, own), record


def w3c_context(tfields: Sequence[tuple[bytes, bytes]]) -> Inbound | None:
    """The W3C context of the inbound fields (exactly one valid traceparent; the tracestate
    to propagate), as ``Tracer.adopt`` reads it, for a tracer with a ``Propagation``."""
    parents = [value for name, value in tfields if name.lower() == b"traceparent"]
    if len(parents) != 1:
        return None
    parent = parse_traceparent(parents[0])
    if parent is None:
        return None
    states = [value for name, value in tfields if name.lower() == b"tracestate"]
    return Inbound(b"00-%s-%s-%02x" % parent, parse_tracestate(states) if states else None)


def _sampled(
    tracer: Tracer,
    line: bytes,
    tid: bytes,
    cid: bytes,
    sid: bytes,
    parent_id: bytes,
    flags: int,
    state: bytes,
    cls: type[SampledTrace] | None = None,
) -> SampledTrace:
    """A sampled trace from the ids ``_context`` drew (raw bytes; ``parent_id`` b"" for a
    root).  Trace classes have no ``__init__``: calling one costs as much as the rest."""
    trace = SampledTrace() if cls is None else cls()
    trace.tracer = tracer
    trace.line = line
    trace.tries = 0
    trace.tid = tid
    trace.cid = cid
    trace.span_raw = sid
    trace.parent_id = parent_id
    trace.remote = bool(parent_id)
    trace.trace_flags = flags
    trace.state = state
    trace.start = time_ns()
    trace.attempts = []
    trace.response_headers = ()
    return trace


def _captured(
    fields: Iterable[tuple[bytes, bytes]], names: frozenset[bytes]
) -> list[tuple[str, list[str]]]:
    """The values of the captured fields, grouped by lower-case name, in arrival order."""
    found: dict[str, list[str]] = {}
    for name, value in fields:
        lname = name.lower()
        if lname in names:
            found.setdefault(lname.decode("latin-1"), []).append(value.decode("latin-1"))
    return list(found.items())


class Details:
    """What a router's detailed spans name (``traceVerbosity: detailed``), as Traefik's do:
    INTERNAL ``Router`` (router, service, rule), one span per middleware (its kind's name
    and its own), ``Service``; between the SERVER span and the CLIENT spans."""

    __slots__ = ("blocks", "middlewares", "router", "rule", "service")

    def __init__(
        self, router: str, service: str, rule: str, middlewares: Sequence[tuple[str, str]]
    ):
        self.router = router
        self.service = service
        self.rule = rule
        self.middlewares = tuple(middlewares)  # (span name, middleware name), in order
        # each span's constant part, encoded once: Router, the middlewares, Service
        router_attributes = [
            ("traefik.service.name", service),
            ("traefik.router.name", router),
            ("http.route", rule),
        ]
        self.blocks = (
            otlp.internal_block("Router", router_attributes),
            *(
                otlp.internal_block(kind, [("traefik.middleware.name", name)])
                for kind, name in self.middlewares
            ),
            otlp.internal_block("Service", [("traefik.service.name", service)]),
        )

    @property
    def at_service(self) -> int:
        """``SampledTrace.reached`` once the service is entered."""
        return len(self.middlewares)


def detailed_stages(
    stages: Sequence[Any], owners: Sequence[int], details: Details
) -> tuple[Any, ...]:
    """A detailed router's request stages: each notes on a sampled trace which middleware it
    belongs to (``owners``: a middleware index per stage), and a last one notes when the
    service is entered.  Only detailed routers run these."""
    at_service = details.at_service

    def noting(stage: Any, owner: int) -> Any:
        def run(ex: ExchangeView) -> bool:
            trace = ex.trace
            if trace is not None and trace.sampled:
                trace.reached = owner
            return bool(stage(ex))

        return run

    def service(ex: ExchangeView) -> bool:
        trace = ex.trace
        if trace is not None and trace.sampled:
            trace.reached = at_service
            trace.service_at = time_ns()
        return False

    return (*(noting(stage, owner) for stage, owner in zip(stages, owners, strict=True)), service)


class Tracer:
    """The tracing observer of one router (or of an entrypoint's unrouted requests).

    What it records beyond the span model is decided here, once per config generation:
    the root sampling ratio (the router's ``observability.sampleRate``, else the entrypoint's,
    else ``tracing.sampleRate``), ``details`` (detailed verbosity), ``keep_errors`` and
    ``keep_slower`` (an unsampled request's spans exported after the fact),
    ``request_names``/``response_names`` (captured headers, lower case) and
    ``trace_response`` (the ``traceresponse`` header).  ``responds`` tells the exchange
    whether the response head needs this tracer at all.
    """

    __slots__ = (
        "details",
        "keep_errors",
        "keep_slower",
        "keeper",
        "keeps",
        "kept",
        "others",
        "propagation",
        "request_names",
        "responds",
        "response_names",
        "root_bound",
        "route",
        "sink",
        "trace_response",
    )

    def __init__(
        self,
        route: str,
        rate: float,
        sink: SpanSink,
        request_headers: Iterable[str] = (),
        response_headers: Iterable[str] = (),
        trace_response: bool = False,
        details: Details | None = None,
        keep_errors: bool = False,
        keep_slower: float = 0.0,
    ):
        self.route = route
        bound = sampling_bound(rate)
        # what _context.root takes: None when every root is sampled (the bound is 2**64)
        self.root_bound = bound if bound <= LOW64 else None
        self.sink = sink
        self.request_names = frozenset(n.lower().encode("latin-1") for n in request_headers)
        self.response_names = frozenset(n.lower().encode("latin-1") for n in response_headers)
        self.trace_response = trace_response
        self.responds = trace_response or bool(self.response_names)
        self.details = details
        self.keep_errors = keep_errors
        self.keep_slower = keep_slower
        # an unsampled exchange's end matters to this tracer only when it may be kept: then
        # a compiled Keeper takes the tracer's place among its observers, and calls keep()
        # only for a failed or slow one
        self.keeps = keep_errors or keep_slower > 0
        self.keeper = Keeper(self.keep, keep_errors, keep_slower) if self.keeps else None
        self.propagation: Propagation | None = None  # PropagatingTracer's
        # an unsampled exchange's observers when it may be kept (observers_of adds the rest)
        self.kept: tuple[Any, ...] = (self.keeper,) if self.keeper is not None else ()
        # the router's other observers (set by observer.observers_of): an unsampled exchange
        # has nothing to record at its end (unless it may be kept), so the tracer leaves it
        # to these
        self.others: tuple[Any, ...] | None = None

    def start(self, ex: ExchangeView) -> None:
        tfields = ex.tfields
        if tfields is not None and self.adopt(ex, tfields):
            return
        # a new root: the common case (no inbound context), or an invalid or duplicated one
        got: Any = root(self.root_bound)  # bytes (unsampled) or a tuple of raw ids
        if type(got) is bytes:
            # no __init__ (its call would cost as much as the rest): this is the path of
            # every unsampled request
            trace = Trace()
            trace.tracer = self
            trace.line = got
            trace.tries = 0
            ex.trace = trace
            if self.keeps:
                ex.observers = self.kept
            elif self.others is not None:
                ex.observers = self.others
        else:
            line, tid, cid, sid = got
            ex.trace = _sampled(self, line, tid, cid, sid, b"", RANDOM | SAMPLED, b"")

    def adopt(self, ex: ExchangeView, tfields: list[tuple[bytes, bytes]]) -> bool:
        """Continue the inbound trace; False when its context is invalid (a new root then).
        Either way the inbound fields are replaced (the exchange writes ``trace.line`` instead
        of them), never appended to."""
        inbound = None
        parents = 0
        states: list[bytes] | None = None
        if len(tfields) == 1:  # a traceparent alone, the common case
            name, value = tfields[0]
            if len(name) == 11:  # traceparent (the head scan only collects these two)
                inbound = value
                parents = 1
        else:
            for name, value in tfields:
                if len(name) == 11:
                    inbound = value
                    parents += 1
                elif states is None:
                    states = [value]
                else:
                    states.append(value)
        if parents != 1 or inbound is None:
            return False
        got: Any = child(inbound)  # version 00 without whitespace: nearly every header
        if got is None:
            parent = parse_traceparent(inbound)
            if parent is None:
                return False
            # whitespace around it, or a later version: continued as the version 00 it reads as
            got = child(b"00-%s-%s-%02x" % parent)
            assert got is not None  # parse_traceparent accepts only what child reads
        state = parse_tracestate(states) if states else None
        if type(got) is bytes:
            trace = Trace()
            trace.tracer = self
            trace.line = got if state is None else got + b"tracestate: " + state + b"\r\n"
            trace.tries = 0
            ex.trace = trace
            if self.keeps:
                trace.inbound = inbound
                ex.observers = self.kept
            elif self.others is not None:
                ex.observers = self.others  # nothing to record at the end
        else:
            line, tid, cid, sid, parent_id, flags = got
            if state is not None:
                line += b"tracestate: " + state + b"\r\n"
            ex.trace = _sampled(self, line, tid, cid, sid, parent_id, flags, state or b"")
        return True

    def respond(
        self, ex: ExchangeView, parts: list[bytes], headers: Sequence[tuple[bytes, bytes]]
    ) -> None:
        """At the response head: the ``traceresponse`` line, and the captured response fields."""
        trace = ex.trace
        if self.trace_response:
            parts.append(
                b"".join(
                    (
                        b"traceresponse: 00-",
                        trace.tid_hex,
                        b"-",
                        trace.server_span_hex(),
                        trace.tail[:3],
                        b"\r\n",
                    )
                )
            )
        if self.response_names and trace.sampled:
            trace.response_headers = _captured(headers, self.response_names)

    def finish(self, ex: ExchangeView) -> None:
        trace = ex.trace
        if trace is None or not trace.sampled:
            return  # (an unsampled one that may be kept ends at the Keeper)
        status = ex.status
        user_agent = ""
        names = self.request_names
        for name, value in ex.kept:
            if len(name) == 10 and name.lower() == b"user-agent":
                user_agent = value.decode("latin-1")
                break
        error = ex.error_type or (str(status) if status >= 500 else "")
        ep = ex.down.ep
        attempts = trace.attempts
        sink = self.sink
        encoder = sink.encoder
        end = time_ns()
        extra: tuple[bytes, str, tuple[Any, ...]] | None = None
        internal: list[bytes] = []
        if self.details is not None or self.propagation is not None:
            parent = b""
            if self.details is not None:
                internal, parent = self.detailed(trace, end)
            extra = (parent, "", getattr(trace, "links", ()))
        if encoder.pending + len(attempts) + len(internal) >= sink.limit:
            sink.flush()  # a datagram never holds more than the exporter's batch size
        try:
            encoder.add(
                (  # a SpanRecord (hopwire.telemetry.records), as a plain tuple
                    trace.tid,
                    trace.span_raw,
                    trace.parent_id,
                    trace.remote,
                    trace.trace_flags,
                    trace.state,
                    ex.method,
                    self.route,
                    ex.path,
                    ex.query,
                    ex.host,
                    int(ex.port or ep.default_port),
                    ex.down.client_ip,
                    ex.down.client_port,
                    "1.0" if ex.http10 else ex.down.version,
                    user_agent,
                    status,
                    error,
                    trace.start,
                    end,
                    ex.upgrade is not None and status == 101,
                    attempts,
                    _captured(ex.headers, names) if names else (),
                    trace.response_headers,
                    ep.scheme_str,
                    extra,
                )
            )
        except (TypeError, ValueError, OverflowError, AttributeError) as exc:  # nothing added
            sink.refused(1 + len(attempts) + len(internal), exc)
            return
        if internal:
            encoder.extend(b"".join(internal), len(internal))

    def detailed(self, trace: SampledTrace, end: int) -> tuple[list[bytes], bytes]:
        """The INTERNAL spans of a sampled request on a detailed router, each the parent of
        the next: Router, the middlewares it entered, Service when it got there; and the id
        of the innermost, the CLIENT spans' parent.  The router's middlewares run its request
        stages in one go: their spans start with the Router span; all end with the request."""
        details = self.details
        assert details is not None
        tid, state, flags, start = trace.tid, trace.state, trace.trace_flags, trace.start
        reached = getattr(trace, "reached", -1)
        parent = trace.span_raw
        spans = []

        blocks = details.blocks

        def add(block: bytes, begun: int) -> None:
            nonlocal parent
            sid = span_id().to_bytes(8, "big")
            spans.append(otlp.internal_span(tid, sid, parent, state, begun, end, block, flags))
            parent = sid

        add(blocks[0], start)  # Router
        for index in range(min(reached + 1, len(details.middlewares))):
            add(blocks[1 + index], start)
        if reached >= details.at_service:
            add(blocks[-1], trace.service_at)
        return spans, parent

    def keep(self, ex: ExchangeView) -> None:
        """An unsampled request that failed (5xx, an error kind) or was slow, with keeping
        on (the Keeper calls it): its SERVER span and its last attempt's CLIENT span,
        exported after the fact with the ids it propagated and its unsampled flags, marked
        with why."""
        trace = ex.trace
        status = ex.status
        error = ex.error_type or (str(status) if status >= 500 else "")
        if error and self.keep_errors:
            why = "error"
        elif self.keep_slower and ex.t1 - ex.t0 > self.keep_slower:
            why = "slow"
        else:
            return
        line = getattr(trace, "own", trace.line)  # its own W3C line (OutboundTrace's own)
        tid = bytes.fromhex(line[_TID].decode())
        cid = bytes.fromhex(line[_CID_AT : _CID_AT + 16].decode())
        tail = line[_TAIL]
        flags = int(tail[1:3], 16)
        state = b""
        if b"tracestate: " in tail:
            state = tail.split(b"tracestate: ", 1)[1].split(b"\r\n", 1)[0]
        inbound = getattr(trace, "inbound", b"")
        parent = bytes.fromhex(inbound.strip(b" \t")[36:52].decode()) if inbound else b""
        server_hex = getattr(trace, "server_hex", None) or b"%016x" % span_id()
        start = int((ex.t0 + time.time() - time.monotonic()) * 1e9)  # the request's, wall clock
        end = time_ns()
        attempts = []
        server = ex.server
        if server is not None:  # a backend was chosen: the last attempt's CLIENT span
            pool = server.pool
            # from the request's start (an unsampled request does not time its attempts: a
            # sampled one's CLIENT span starts as its attempt begins, right after routing)
            origin = ex.origin_status
            failure = ex.error_type or (str(origin) if origin >= 400 else "")
            attempts.append(
                [cid, start, end, server.url_base, pool.host, pool.port, origin, failure]
            )
        user_agent = ""
        for name, value in ex.kept:
            if len(name) == 10 and name.lower() == b"user-agent":
                user_agent = value.decode("latin-1")
                break
        ep = ex.down.ep
        sink = self.sink
        encoder = sink.encoder
        if encoder.pending + 1 + len(attempts) >= sink.limit:
            sink.flush()
        try:
            encoder.add(
                (
                    tid,
                    bytes.fromhex(server_hex.decode()),
                    parent,
                    bool(parent),
                    flags,
                    state,
                    ex.method,
                    self.route,
                    ex.path,
                    ex.query,
                    ex.host,
                    int(ex.port or ep.default_port),
                    ex.down.client_ip,
                    ex.down.client_port,
                    "1.0" if ex.http10 else ex.down.version,
                    user_agent,
                    status,
                    error,
                    start,
                    end,
                    False,
                    attempts,
                    (),
                    (),
                    ep.scheme_str,
                    (b"", why, getattr(trace, "links", ())),
                )
            )
        except (TypeError, ValueError, OverflowError, AttributeError) as exc:
            sink.refused(1 + len(attempts), exc)
        else:
            ex.down.worker.counters["kept_" + why] += 1


class PropagatingTracer(Tracer):
    """A tracer whose context is not W3C obeyed from everyone (``tracing.propagators``,
    ``entryPoints.<ep>.traceContext``): it reads the inbound context through its
    ``Propagation``, starts a new root linked to a context it does not trust, and its
    traces write the propagation's lines (OutboundTrace)."""

    __slots__ = ()

    def __init__(self, propagation: Propagation, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.propagation = propagation

    def start(self, ex: ExchangeView) -> None:
        p = self.propagation
        assert p is not None
        tfields = ex.tfields
        inbound = p.extract(tfields) if tfields else None
        link = None
        if inbound is not None and not p.trusts(ex.down.client_ip):
            link, inbound = inbound, None  # a new root, linked to the context it came with
        forwarded = link is not None and p.forward
        state = inbound.tracestate if inbound is not None else None
        got: Any = child(inbound.traceparent) if inbound is not None else root(self.root_bound)
        links = (link.link(),) if link is not None else ()
        if type(got) is bytes:
            own = got if state is None else got + b"tracestate: " + state + b"\r\n"
            trace = OutboundTrace()
            trace.tracer = self
            trace.own = own
            trace.line = field_lines(tfields or ()) if forwarded else p.outbound(own)
            trace.forwarded = forwarded
            trace.links = links
            trace.tries = 0
            ex.trace = trace
            if self.keeps:
                trace.inbound = inbound.traceparent if inbound is not None else b""
                ex.observers = self.kept
            elif self.others is not None:
                ex.observers = self.others
            return
        if inbound is not None:
            line, tid, cid, sid, parent_id, flags = got
        else:
            line, tid, cid, sid = got
            parent_id, flags = b"", RANDOM | SAMPLED
        own = line if state is None else line + b"tracestate: " + state + b"\r\n"
        sampled = _sampled(
            self, own, tid, cid, sid, parent_id, flags, state or b"", OutboundSampledTrace
        )
        assert isinstance(sampled, OutboundSampledTrace)
        sampled.own = own
        sampled.line = field_lines(tfields or ()) if forwarded else p.outbound(own)
        sampled.forwarded = forwarded
        sampled.links = links
        ex.trace = sampled


class SpanSink(Courier):
    """Encodes sampled requests' spans in the worker and sends them, in batches, to the
    exporter process(es); never blocks, drops and counts instead.

    A datagram is ``HEADER`` (the number of spans) and the spans as ``ScopeSpans.spans``
    entries, so that the exporter only adds them to its batch (``Encoder.extend``): encoding
    here costs the worker what serialising the records cost it, and spares the exporter both
    reading them back and encoding them.  The tracer adds to ``encoder`` itself; a datagram
    holds at most ``limit`` spans (the exporter's batch size, at most ``BATCH_SPANS``); the
    worker flushes every tick."""

    def __init__(self, paths: list[str], worker: WorkerState, cfg: Any):
        super().__init__(paths)
        self.worker = worker
        self.encoder = otlp.encoder(cfg.encoder, cfg.safeQueryParams)
        self.limit = min(BATCH_SPANS, cfg.batch.maxExportBatchSize, cfg.batch.maxQueueSize)
        self.unreachable = Throttle()
        self.refusals = Throttle()

    def refused(self, spans: int, exc: Exception) -> None:
        """A record the encoder could not take (it added nothing): counted, logged now and
        then; the request itself was answered."""
        self.worker.counters["spans_dropped"] += spans
        now = time.monotonic()
        if self.refusals.ready(now):
            log.warning("span record not encoded (%s): its spans are dropped", exc)

    def flush(self) -> None:
        encoder = self.encoder
        count = encoder.pending
        if not count:
            return
        spans = encoder.drain()
        try:
            self.send(SPANS, count, (spans,))
        except OSError as exc:
            self.worker.counters["spans_dropped"] += count
            if self.unreachable.ready():
                log.warning("span exporter unreachable (%s): dropping spans", exc)
