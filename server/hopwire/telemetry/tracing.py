"""Tracing on the request path, without the SDK's span objects (DESIGN §3).

A router whose tracing is on gets a ``Tracer``: the observer the exchange calls after routing
(``start``) and when it ends (``finish``).  ``start`` reads the inbound W3C trace context, makes
the sampling decision of ``ParentBased(TraceIdRatioBased(rate))`` exactly as the SDK does, and
hands the exchange a ``Trace`` that sets the outbound ``traceparent``/``tracestate``.  A sampled
request becomes one compact record (a tuple) at ``finish``; records go in batches over a unix
datagram socket to the exporter process, which builds OTLP from them.  Nothing here blocks: a
full socket drops the batch and counts it.

Routers whose tracing is off get no tracer, and the request path does no tracing work at all.
"""

from __future__ import annotations

import logging
import marshal
import re
import socket
import time
from random import getrandbits
from typing import Any

from hopwire.telemetry.records import ATTEMPT_END, ATTEMPT_ERROR, ATTEMPT_STATUS

log = logging.getLogger("hopwire.tracing")

LOW64 = (1 << 64) - 1
SAMPLED = 0x01
RANDOM = 0x02  # W3C Trace Context level 2: the trace id's low 56 bits are random
MAX_TRACESTATE_MEMBERS = 32
BATCH = 64  # records per datagram

_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z")
_TS_KEY = re.compile(
    rb"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})\Z"
)
_TS_VALUE = re.compile(rb"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]\Z")


def parse_traceparent(value: bytes) -> tuple[int, int, int] | None:
    """(trace id, parent id, flags) of a valid W3C traceparent, else None.

    Optional whitespace around the value is not part of it (RFC 9110 §5.5).
    """
    m = _TRACEPARENT.match(value.strip(b" \t"))
    if m is None:
        return None
    version = m.group(1)
    if version == b"ff" or (version == b"00" and m.group(5) is not None):
        return None
    trace_id = int(m.group(2), 16)
    parent_id = int(m.group(3), 16)
    if not trace_id or not parent_id:
        return None
    return trace_id, parent_id, int(m.group(4), 16)


def parse_tracestate(values: list[bytes]) -> bytes | None:
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


def redact_query(query: str) -> str:
    """Query values replaced by REDACTED, keys kept (they are bounded by the application)."""
    if not query:
        return ""
    return "&".join(
        part.partition("=")[0] + ("=REDACTED" if "=" in part else "") for part in query.split("&")
    )


class Trace:
    """The trace context of one exchange: its SERVER span and one CLIENT span per attempt."""

    __slots__ = (
        "attempts",
        "client_id",
        "flags",
        "parent_id",
        "remote",
        "sampled",
        "span_id",
        "start",
        "trace_id",
        "tracestate",
        "tries",
    )

    def __init__(
        self, trace_id: int, parent_id: int, flags: int, remote: bool, tracestate: bytes | None
    ):
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.flags = flags
        self.sampled = flags & SAMPLED
        self.remote = remote
        self.tracestate = tracestate
        self.span_id = getrandbits(64) or 1
        self.client_id = getrandbits(64) or 1  # the CLIENT span of the current attempt
        self.tries = 0
        # timings and attempts are only kept for what will be exported
        self.start = time.time_ns() if self.sampled else 0
        self.attempts: list[list[Any]] = []

    def header(self) -> bytes:
        """The outbound trace context, set once (never appended to an inbound one)."""
        line = b"traceparent: 00-%032x-%016x-%02x\r\n" % (self.trace_id, self.client_id, self.flags)
        if self.tracestate:
            line += b"tracestate: " + self.tracestate + b"\r\n"
        return line

    def begin_attempt(
        self, server_url: str, path: str, query: str, address: str, port: int
    ) -> bool:
        """Start a CLIENT span; True when it is a retry (a new span id: rebuild the head)."""
        self.tries += 1
        retry = self.tries > 1
        if retry:
            self.client_id = getrandbits(64) or 1
        if self.sampled:
            url = server_url.rstrip("/") + path + ("?" + redact_query(query) if query else "")
            # an AttemptRecord, open (end_ns 0) until end_attempt
            self.attempts.append([self.client_id, time.time_ns(), 0, url, address, port, 0, ""])
        return retry

    def end_attempt(self, status: int, error: str) -> None:
        attempts = self.attempts
        if attempts and attempts[-1][ATTEMPT_END] == 0:
            attempt = attempts[-1]
            attempt[ATTEMPT_END] = time.time_ns()
            attempt[ATTEMPT_STATUS] = status
            if status >= 400 and not error:
                error = str(status)
            attempt[ATTEMPT_ERROR] = error

    def ids(self) -> dict[str, str]:
        """For log correlation: the ids as the W3C header writes them."""
        return {"trace_id": f"{self.trace_id:032x}", "span_id": f"{self.span_id:016x}"}


class Tracer:
    """The tracing observer of one router (or of an entrypoint's unrouted requests)."""

    __slots__ = ("bound", "route", "sink")

    def __init__(self, route: str, rate: float, sink: SpanSink):
        self.route = route
        self.bound = sampling_bound(rate)
        self.sink = sink

    def start(self, ex: Any) -> None:
        parents: list[bytes] = []
        states: list[bytes] = []
        kept = []
        for name, value in ex.kept:
            lname = name.lower()
            if lname == b"traceparent":
                parents.append(value)
            elif lname == b"tracestate":
                states.append(value)
            else:
                kept.append((name, value))
        ex.kept = kept
        parent = parse_traceparent(parents[0]) if len(parents) == 1 else None
        if parent is not None:
            trace_id, parent_id, flags = parent
            # ParentBased: obey the remote parent's decision; keep its defined flags
            ex.trace = Trace(
                trace_id,
                parent_id,
                flags & (SAMPLED | RANDOM),
                True,
                parse_tracestate(states) if states else None,
            )
        else:
            # a new root (also when the inbound context was invalid or duplicated)
            trace_id = getrandbits(128) or 1
            sampled = SAMPLED if (trace_id & LOW64) < self.bound else 0
            ex.trace = Trace(trace_id, 0, RANDOM | sampled, False, None)

    def finish(self, ex: Any) -> None:
        trace = ex.trace
        if trace is None or not trace.sampled:
            return
        status = ex.status
        user_agent = b""
        for name, value in ex.kept:
            if name.lower() == b"user-agent":
                user_agent = value
                break
        error = ex.error_type or (str(status) if status >= 500 else "")
        self.sink.add(
            (  # a SpanRecord (hopwire.telemetry.records), as a plain tuple
                trace.trace_id,
                trace.span_id,
                trace.parent_id,
                trace.remote,
                trace.flags,
                trace.tracestate or b"",
                ex.method,
                self.route,
                ex.path,
                redact_query(ex.query),
                ex.host,
                int(ex.port),
                ex.down.client_ip,
                ex.down.client_port,
                "1.0" if ex.http10 else "1.1",
                user_agent.decode("latin-1"),
                status,
                error,
                trace.start,
                time.time_ns(),
                ex.upgrade is not None and status == 101,
                [tuple(a) for a in trace.attempts],
            )
        )


class SpanSink:
    """Batches records to the exporter process(es); never blocks, drops and counts instead."""

    def __init__(self, paths: list[str], worker: Any):
        self.paths = paths
        self.next = 0
        self.worker = worker
        self.buf: list[tuple[Any, ...]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.last_error = 0.0

    def add(self, record: tuple[Any, ...]) -> None:
        self.buf.append(record)
        if len(self.buf) >= BATCH:
            self.flush()

    def flush(self) -> None:
        buf = self.buf
        if not buf:
            return
        self.buf = []
        path = self.paths[self.next]
        self.next = (self.next + 1) % len(self.paths)
        try:
            self.sock.sendto(marshal.dumps(buf), path)
        except OSError as exc:
            self.worker.counters["spans_dropped"] += len(buf)
            now = time.monotonic()
            if now - self.last_error > 10:
                self.last_error = now
                log.warning("span exporter unreachable (%s): dropping span records", exc)
        else:
            self.worker.counters["spans_sent"] += len(buf)
