"""Redirections that hopwire answers itself, with Traefik's status codes and Location.

``scheme_redirect`` is an entrypoint's ``http.redirections.entryPoint``: Traefik makes it a
router of the highest priority whose requests a ``redirectScheme`` middleware answers, and so
does hopwire (``<from>-to-<to>@internal``).  The status: permanent 301 for GET and 308 for any
other method, else 302 and 307; the body is the status text.
"""

from __future__ import annotations

import http
from collections.abc import Callable
from typing import Any

Answer = Callable[[Any], None]


def redirect_status(method: str, permanent: bool) -> int:
    if permanent:
        return 301 if method == "GET" else 308
    return 302 if method == "GET" else 307


def scheme_redirect(scheme: str, port: str, permanent: bool) -> Answer:
    """Answer every request with the same URL on ``scheme`` and ``port`` (the default port
    of the scheme is left out)."""
    default = (scheme == "https" and port == "443") or (scheme == "http" and port == "80")
    suffix = "" if default or not port else ":" + port
    prefix = scheme + "://"

    def answer(ex: Any) -> None:
        authority = ex.authority.decode("latin-1")
        if authority.startswith("["):
            host = authority[: authority.find("]") + 1]
        else:
            host = authority.partition(":")[0]
        # the path as routed (sanitized), as Traefik's RequestURI after its sanitizePath
        location = (prefix + host + suffix).encode("latin-1") + ex.path_query
        status = redirect_status(ex.method, permanent)
        body = http.HTTPStatus(status).phrase.encode()
        ex.respond_local(status, body, extra=[b"location: " + location + b"\r\n"])

    return answer
