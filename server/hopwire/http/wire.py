"""Precomputed wire bytes.  The request path only joins and writes these."""

from __future__ import annotations

import http
import time
from email.utils import formatdate

from hopwire.contracts import Clock as ClockView

# RFC 9110 §7.6.1: fields that apply to one connection only, removed in both directions, plus
# the fields a Connection header names.  Upgrade is kept only when a tunnel is being set up.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Fields hopwire sets itself from the client's connection (forwardedHeaders).
# the key in a request's ``fwd`` (not a field name) under which a headers middleware lists the
# X-Forwarded-* fields hopwire must not write (an empty customRequestHeaders value)
UNFORWARDED = b"(removed)"

FORWARDED = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-real-ip",
    }
)

STATUS_LINE = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("latin-1")) for s in http.HTTPStatus
}


def status_line(code: int, reason: bytes = b"") -> bytes:
    line = STATUS_LINE.get(code)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (code, reason or b"Unknown")
    return line


CRLF = b"\r\n"
CHUNKED = b"transfer-encoding: chunked\r\n"
CONN_CLOSE = b"connection: close\r\n"
CONN_KEEP_ALIVE = b"connection: keep-alive\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class Clock:
    """Coarse time for deadlines and the Date header, refreshed by the worker's tick."""

    __slots__ = ("date", "now")

    def __init__(self, now: float):
        self.now = now
        self.date = b""
        self.tick(now)

    def tick(self, now: float) -> None:
        self.now = now
        self.date = b"date: " + formatdate(time.time(), usegmt=True).encode() + CRLF


def simple_response(
    clock: ClockView,
    code: int,
    body: bytes,
    close: bool,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: list[bytes] | None = None,
) -> bytes:
    """A complete response hopwire answers itself (errors, /ping); ``extra``: more field
    lines (each ending in CRLF); an empty ``content_type`` sends none."""
    return b"".join(
        (
            status_line(code),
            clock.date,
            b"server: hopwire\r\n",
            b"content-type: " + content_type + CRLF if content_type else b"",
            b"content-length: %d\r\n" % len(body),
            b"".join(extra) if extra else b"",
            CONN_CLOSE if close else b"",
            CRLF,
            body,
        )
    )
