"""gRPC through hopwire: what it needs beyond HTTP/2 to backends and trailers.

gRPC calls are ordinary exchanges (``h2c://`` servers, the codec's streams, the trailers
relayed).  Two things are gRPC's own:

- a failure hopwire answers itself (no server, a backend that cannot be reached, a timeout,
  a middleware's refusal) reaches a gRPC client as a gRPC status, not as an HTML or text
  page: HTTP 200 with ``grpc-status`` and ``grpc-message`` in one HEADERS frame (the
  "Trailers-Only" answer), the status chosen as gRPC maps HTTP statuses
  (``doc/http-grpc-status-mapping.md`` in grpc/grpc), a proxy-side timeout being
  DEADLINE_EXCEEDED;
- the client's deadline, ``grpc-timeout``, bounds the wait for the backend's answer as
  ``responseHeaderTimeout`` does (whichever is sooner).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from hopwire import errors

OK, UNKNOWN, DEADLINE_EXCEEDED, PERMISSION_DENIED, RESOURCE_EXHAUSTED = 0, 2, 4, 7, 8
UNIMPLEMENTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 12, 13, 14, 16

# the HTTP status of a failure, as a gRPC client maps it (gRPC's own table)
_BY_HTTP = {
    400: INTERNAL,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: UNIMPLEMENTED,
    429: UNAVAILABLE,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: UNAVAILABLE,
}
# the failures whose gRPC meaning is sharper than their HTTP status's
_BY_KIND = {
    errors.RESPONSE_TIMEOUT.name: DEADLINE_EXCEEDED,
    errors.REQUEST_TOO_LARGE.name: RESOURCE_EXHAUSTED,
    errors.RESPONSE_TOO_LARGE.name: RESOURCE_EXHAUSTED,
}
_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


def is_grpc(fields: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request is a gRPC call: its content-type is application/grpc (or +proto,
    +json...)."""
    for name, value in fields:
        if len(name) == 12 and name.lower() == b"content-type":
            return value[:16].lower() == b"application/grpc"
    return False


def status_in(fields: Iterable[tuple[bytes, bytes]], default: int) -> int:
    """The ``grpc-status`` of a call's trailers (or of a Trailers-Only head), else ``default``."""
    for name, value in fields:
        if len(name) == 11 and name.lower() == b"grpc-status":
            return int(value) if value.isdigit() and len(value) < 4 else UNKNOWN
    return default


def status_of(kind: errors.ErrorKind) -> int:
    """The gRPC status of a failure hopwire answers itself."""
    return _BY_KIND.get(kind.name) or _BY_HTTP.get(kind.status, UNKNOWN)


def answer(kind: errors.ErrorKind, message: str, extra: list[bytes] | None = None) -> bytes:
    """The Trailers-Only answer of a failed call, as an HTTP/1.1 head (the exchange's one
    response path): status 200, its gRPC status and message, no body."""
    # grpc-message is percent-encoded (gRPC's PROTOCOL-HTTP2: space to ~ stay as they are)
    encoded = quote(message[:512], safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode()
    return b"".join(
        (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n",
            b"grpc-status: %d\r\ngrpc-message: %s\r\n" % (status_of(kind), encoded),
            *(extra or ()),
            b"content-length: 0\r\n\r\n",
        )
    )


def timeout(value: bytes) -> float | None:
    """A ``grpc-timeout`` value in seconds (up to 8 digits and a unit), or None when it is
    malformed (the backend's to refuse)."""
    digits, unit = value[:-1].strip(), value[-1:]
    if not digits.isdigit() or len(digits) > 8 or unit not in _UNITS:
        return None
    return int(digits) * _UNITS[unit]
