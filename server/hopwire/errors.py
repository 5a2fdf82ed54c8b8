"""One error taxonomy and its one mapping.

Every failure on the request path is an ``ErrorKind``: what went wrong, on which side
(``source``), and everything that follows from it, decided here and nowhere else:

    status      sent to the client when no response head has gone out yet
    log_level   of the line logged when an exchange ends with it (a ``logging`` level)
    keep_alive  whether the client connection may serve further requests (default: not)
    retry       whether the request may be tried again on a fresh upstream connection

Code that detects a failure raises or passes a ``ProxyError(kind, detail)``; the exchange's one
ending (``Exchange.end``) reads the kind for the answer, the log line, the counter
(``hopwire_errors_total{kind}``) and the connection decision.  (The model is pingora's
``ErrorType`` / ``ErrorSource`` / ``RetryType``.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

DOWNSTREAM = "downstream"  # the client: a bad request, a timeout reading it, a client gone
UPSTREAM = "upstream"  # a backend: refused, timed out, malformed or cut-short response
INTERNAL = "internal"  # hopwire itself: no route, or a bug

# RetryType
NEVER = 0
REUSED = 1  # retry once when a *reused* connection failed before any response byte


@dataclass(frozen=True, slots=True)
class ErrorKind:
    name: str  # metric label and log field
    source: str  # DOWNSTREAM, UPSTREAM or INTERNAL
    status: int
    keep_alive: bool = False
    retry: int = NEVER
    log_level: int = logging.INFO


# Downstream: the client sent something we must refuse (RFC 9112 asks to close after a
# framing error, because the rest of the stream cannot be trusted).
BAD_REQUEST = ErrorKind("bad_request", DOWNSTREAM, 400)
URI_TOO_LONG = ErrorKind("uri_too_long", DOWNSTREAM, 414)
HEADERS_TOO_LARGE = ErrorKind("headers_too_large", DOWNSTREAM, 431)
VERSION_NOT_SUPPORTED = ErrorKind("version_not_supported", DOWNSTREAM, 505)
NOT_IMPLEMENTED = ErrorKind("not_implemented", DOWNSTREAM, 501)
EXPECTATION_FAILED = ErrorKind("expectation_failed", DOWNSTREAM, 417)
METHOD_NOT_ALLOWED = ErrorKind("method_not_allowed", DOWNSTREAM, 405)
REQUEST_TIMEOUT = ErrorKind("request_timeout", DOWNSTREAM, 408)
# The client went away: nothing can be answered (499 is what the access log and metrics show,
# as nginx does).
CLIENT_CLOSED = ErrorKind("client_closed", DOWNSTREAM, 499)
# The client did not read the response within writeTimeout (the head has gone out already).
WRITE_TIMEOUT = ErrorKind("write_timeout", DOWNSTREAM, 504)
# Routing: the request was fine; nothing can serve it.  The connection stays usable.
NO_ROUTE = ErrorKind("no_route", INTERNAL, 404, keep_alive=True)
NO_SERVER = ErrorKind("no_server", UPSTREAM, 503, keep_alive=True, log_level=logging.WARNING)
# Upstream failures.
CONNECT_FAILED = ErrorKind(
    "connect_failed", UPSTREAM, 502, keep_alive=True, log_level=logging.WARNING
)
CONNECT_TIMEOUT = ErrorKind(
    "connect_timeout", UPSTREAM, 504, keep_alive=True, log_level=logging.WARNING
)
RESPONSE_TIMEOUT = ErrorKind("response_timeout", UPSTREAM, 504, log_level=logging.WARNING)
BAD_RESPONSE = ErrorKind("bad_response", UPSTREAM, 502, log_level=logging.WARNING)
UPSTREAM_CLOSED = ErrorKind(
    "upstream_closed", UPSTREAM, 502, retry=REUSED, log_level=logging.WARNING
)
# The backend closed after the response head had gone out: the client's connection is closed
# without completing the body (RELIABILITY 23).
UPSTREAM_TRUNCATED = ErrorKind("upstream_truncated", UPSTREAM, 502, log_level=logging.WARNING)
INTERNAL_ERROR = ErrorKind("internal_error", INTERNAL, 500, log_level=logging.ERROR)
# Middlewares: a body over a buffering limit, and a middleware that could not do its work (an
# authentication or error-page server unreachable, Redis down): answered as Traefik does.
REQUEST_TOO_LARGE = ErrorKind("request_too_large", DOWNSTREAM, 413)
RESPONSE_TOO_LARGE = ErrorKind("response_too_large", UPSTREAM, 500, log_level=logging.WARNING)
MIDDLEWARE_FAILED = ErrorKind(
    "middleware_failed", INTERNAL, 500, keep_alive=True, log_level=logging.WARNING
)

KINDS = tuple(v for v in tuple(globals().values()) if isinstance(v, ErrorKind))


def may_retry(
    kind: ErrorKind, reused: bool, attempts: int, idempotent: bool, sent_down: bool
) -> bool:
    """Whether a failed attempt is tried again on a fresh connection (RELIABILITY 25, 26).

    Only the keep-alive race qualifies: a pooled connection the backend had closed, on the
    first attempt, for an idempotent request without a body, before anything was answered.
    """
    return kind.retry == REUSED and reused and attempts == 1 and idempotent and not sent_down


def closes(kind: ErrorKind | None, keep_alive: bool, body_pending: bool, draining: bool) -> bool:
    """Whether the client connection closes after an answer (``kind`` None: a normal one)."""
    return (kind is not None and not kind.keep_alive) or not keep_alive or body_pending or draining


class ProxyError(Exception):
    """A failure of one kind, with a detail for the log."""

    def __init__(self, kind: ErrorKind, detail: str = ""):
        super().__init__(f"{kind.name}: {detail}" if detail else kind.name)
        self.kind = kind
        self.detail = detail
