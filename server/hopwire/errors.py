"""One error taxonomy and its one mapping.

Every failure on the request path is an ``ErrorKind``: what went wrong, on which side
(``source``), whether a retry on a fresh connection could help (``retryable``), and what it
becomes: the status code sent to the client, the log level, the metric label, and whether the
client connection may be kept (default: not).  Code that detects a failure raises or passes a
``ProxyError(kind, detail)``; only ``ErrorKind`` decides what that means.
"""

from __future__ import annotations

from dataclasses import dataclass

DOWNSTREAM = "downstream"
UPSTREAM = "upstream"
INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class ErrorKind:
    name: str  # metric label and log field
    source: str  # DOWNSTREAM, UPSTREAM or INTERNAL
    status: int  # sent to the client when no response head has gone out yet
    retryable: bool = False  # a retry on a fresh upstream connection may succeed
    keep_alive: bool = False  # the client connection may serve further requests
    log_level: str = "INFO"


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
CLIENT_CLOSED = ErrorKind("client_closed", DOWNSTREAM, 499)
# Routing: the request was fine; nothing can serve it.  The connection stays usable.
NO_ROUTE = ErrorKind("no_route", INTERNAL, 404, keep_alive=True)
NO_SERVER = ErrorKind("no_server", UPSTREAM, 503, keep_alive=True, log_level="WARN")
# Upstream failures.
CONNECT_FAILED = ErrorKind("connect_failed", UPSTREAM, 502, keep_alive=True, log_level="WARN")
CONNECT_TIMEOUT = ErrorKind("connect_timeout", UPSTREAM, 504, keep_alive=True, log_level="WARN")
RESPONSE_TIMEOUT = ErrorKind("response_timeout", UPSTREAM, 504, log_level="WARN")
BAD_RESPONSE = ErrorKind("bad_response", UPSTREAM, 502, log_level="WARN")
UPSTREAM_CLOSED = ErrorKind("upstream_closed", UPSTREAM, 502, retryable=True, log_level="WARN")
INTERNAL_ERROR = ErrorKind("internal_error", INTERNAL, 500, log_level="ERROR")


class ProxyError(Exception):
    """A failure of one kind, with a detail for the log."""

    def __init__(self, kind: ErrorKind, detail: str = ""):
        super().__init__(f"{kind.name}: {detail}" if detail else kind.name)
        self.kind = kind
        self.detail = detail
