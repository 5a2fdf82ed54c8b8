"""One error taxonomy and its one mapping.

Every failure on the request path is an ``ErrorKind``: what went wrong, on which side
(``source``), and everything that follows from it, decided here and nowhere else:

    status      sent to the client when no response head has gone out yet
    log_level   of the line logged when an exchange ends with it (a ``logging`` level)
    keep_alive  whether the client connection may serve further requests (default: not)
    retry       whether the request may be tried again: once on a fresh connection (the
                keep-alive race), or as the retry middleware's policy says (a network error)

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
NETWORK = 2  # the connection could not be made: the retry middleware may try again


@dataclass(frozen=True, slots=True)
class ErrorKind:
    name: str  # metric label and log field
    source: str  # DOWNSTREAM, UPSTREAM or INTERNAL
    status: int
    keep_alive: bool = False
    retry: int = NEVER
    log_level: int = logging.INFO
    doc: str = ""  # what happened, for the docs' table


# Downstream: the client sent something we must refuse (RFC 9112 asks to close after a
# framing error, because the rest of the stream cannot be trusted).
BAD_REQUEST = ErrorKind(
    "bad_request", DOWNSTREAM, 400, doc="the request's head or framing is malformed"
)
URI_TOO_LONG = ErrorKind(
    "uri_too_long", DOWNSTREAM, 414, doc="the request target is over `http.maxRequestLineBytes`"
)
HEADERS_TOO_LARGE = ErrorKind(
    "headers_too_large",
    DOWNSTREAM,
    431,
    doc="the head is over `http.maxHeaderBytes` or `http.maxHeaderFields`",
)
VERSION_NOT_SUPPORTED = ErrorKind(
    "version_not_supported", DOWNSTREAM, 505, doc="an HTTP version other than 1.0 and 1.1"
)
NOT_IMPLEMENTED = ErrorKind(
    "not_implemented", DOWNSTREAM, 501, doc="a transfer coding other than chunked"
)
EXPECTATION_FAILED = ErrorKind(
    "expectation_failed", DOWNSTREAM, 417, doc="an `Expect` other than 100-continue"
)
METHOD_NOT_ALLOWED = ErrorKind(
    "method_not_allowed", DOWNSTREAM, 405, doc="CONNECT, which a reverse proxy does not serve"
)
REQUEST_TIMEOUT = ErrorKind(
    "request_timeout", DOWNSTREAM, 408, doc="the request was not read within `readTimeout`"
)
# The client went away: nothing can be answered (499 is what the access log and metrics show,
# as nginx does).
CLIENT_CLOSED = ErrorKind(
    "client_closed",
    DOWNSTREAM,
    499,
    doc="the client went away before the answer (499 in the log and metrics only)",
)
# The client did not read the response within writeTimeout (the head has gone out already).
WRITE_TIMEOUT = ErrorKind(
    "write_timeout",
    DOWNSTREAM,
    504,
    doc="the client did not read the response within `writeTimeout` or the stall bound",
)
# Routing: the request was fine; nothing can serve it.  The connection stays usable.
NO_ROUTE = ErrorKind(
    "no_route", INTERNAL, 404, keep_alive=True, doc="no router matches the request"
)
NO_SERVER = ErrorKind(
    "no_server",
    UPSTREAM,
    503,
    keep_alive=True,
    log_level=logging.WARNING,
    doc="the service has no healthy server",
)
# Upstream failures.
CONNECT_FAILED = ErrorKind(
    "connect_failed",
    UPSTREAM,
    502,
    keep_alive=True,
    retry=NETWORK,
    log_level=logging.WARNING,
    doc="the backend refused the connection, or it could not be made",
)
CONNECT_TIMEOUT = ErrorKind(
    "connect_timeout",
    UPSTREAM,
    504,
    keep_alive=True,
    retry=NETWORK,
    log_level=logging.WARNING,
    doc="no connection to the backend within `dialTimeout`",
)
RESPONSE_TIMEOUT = ErrorKind(
    "response_timeout",
    UPSTREAM,
    504,
    log_level=logging.WARNING,
    doc="no response head within `responseHeaderTimeout`, or the backend stalled",
)
BAD_RESPONSE = ErrorKind(
    "bad_response",
    UPSTREAM,
    502,
    log_level=logging.WARNING,
    doc="the backend's response head is malformed",
)
UPSTREAM_CLOSED = ErrorKind(
    "upstream_closed",
    UPSTREAM,
    502,
    retry=REUSED,
    log_level=logging.WARNING,
    doc="the backend closed before responding",
)
# The backend closed after the response head had gone out: the client's connection is closed
# without completing the body (RELIABILITY 23).
UPSTREAM_TRUNCATED = ErrorKind(
    "upstream_truncated",
    UPSTREAM,
    502,
    log_level=logging.WARNING,
    doc="the backend closed mid-response: the response is cut short",
)
INTERNAL_ERROR = ErrorKind(
    "internal_error",
    INTERNAL,
    500,
    log_level=logging.ERROR,
    doc="a bug in hopwire: logged with its traceback",
)
# Middlewares: a body over a buffering limit, and a middleware that could not do its work (an
# authentication or error-page server unreachable, Redis down): answered as Traefik does.
REQUEST_TOO_LARGE = ErrorKind(
    "request_too_large",
    DOWNSTREAM,
    413,
    doc="a request body over a middleware's limit (`buffering`, `retry`)",
)
RESPONSE_TOO_LARGE = ErrorKind(
    "response_too_large",
    UPSTREAM,
    500,
    log_level=logging.WARNING,
    doc="a response body over a middleware's limit",
)
MIDDLEWARE_FAILED = ErrorKind(
    "middleware_failed",
    INTERNAL,
    500,
    keep_alive=True,
    log_level=logging.WARNING,
    doc="a middleware could not do its work (an auth server or Redis unreachable)",
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


class ProxyError(Exception):
    """A failure of one kind, with a detail for the log."""

    def __init__(self, kind: ErrorKind, detail: str = ""):
        super().__init__(f"{kind.name}: {detail}" if detail else kind.name)
        self.kind = kind
        self.detail = detail


_RETRIES = {NEVER: "no", REUSED: "once, on a fresh connection", NETWORK: "as `retry` allows"}


def markdown() -> str:
    """The kinds as a Markdown table (docs/http.md; ``python -m hopwire.errors``)."""
    rows = [
        "| kind | side | status | connection | retried | log level | what happened |",
        "| --- | --- | ---: | --- | --- | --- | --- |",
    ]
    for kind in KINDS:
        rows.append(
            f"| `{kind.name}` | {kind.source} | {kind.status} | "
            f"{'kept' if kind.keep_alive else 'closed'} | {_RETRIES[kind.retry]} | "
            f"{logging.getLevelName(kind.log_level).lower()} | {kind.doc} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())
