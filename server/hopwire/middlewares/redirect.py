"""Redirections that hopwire answers itself, with Traefik's status codes and Location.

``scheme_redirect`` is the ``redirectScheme`` middleware and, with ``always``, an
entrypoint's ``http.redirections.entryPoint``: Traefik makes the latter a router of the
highest priority whose requests a redirectScheme answers, and so does hopwire
(``<from>-to-<to>@internal``).  The status: permanent 301 for GET and 308 for any other
method, else 302 and 307; the body is the status text.  Like Traefik's, the middleware lets a
request through when the URL would not change (already on that scheme and port).
"""

from __future__ import annotations

import http
import re
from collections.abc import Callable
from typing import Any

from hopwire.contracts import ExchangeView
from hopwire.middlewares.paths import go_template

Stage = Callable[[Any], bool]  # True: answered


def redirect_status(method: str, permanent: bool) -> int:
    if permanent:
        return 301 if method == "GET" else 308
    return 302 if method == "GET" else 307


def _default(scheme: str, port: str) -> bool:
    return (scheme == "https" and port == "443") or (scheme == "http" and port == "80")


def host_and_port(ex: ExchangeView) -> tuple[str, str]:
    """The Host's name (brackets kept) and port ("" without one)."""
    authority = ex.authority.decode("latin-1")
    if authority.startswith("["):
        end = authority.find("]") + 1
        host, rest = authority[:end], authority[end:]
    else:
        host, _, port = authority.partition(":")
        rest = ":" + port if port else ""
    return host, rest[1:]


def client_scheme(ex: ExchangeView) -> str:
    """http or https, as the client sees it (a trusted X-Forwarded-Proto wins, as Traefik)."""
    proto = ex.fwd.get(b"x-forwarded-proto")
    if proto is not None:
        p = proto.lower()
        if p in (b"http", b"ws"):
            return "http"
        if p in (b"https", b"wss"):
            return "https"
    return ex.down.ep.scheme_str


def answer(ex: ExchangeView, location: str, status: int) -> bool:
    body = http.HTTPStatus(status).phrase.encode()
    ex.respond_local(status, body, extra=[b"location: " + location.encode("latin-1") + b"\r\n"])
    return True


def regex_redirect(regex: str, replacement: str, permanent: bool) -> Stage:
    """``redirectRegex``: the request's URL (scheme://Host/path?query, as Traefik builds it)
    rewritten; redirected when it changed, else on to the backend."""
    pattern = re.compile(regex)
    expand = go_template(replacement)

    def stage(ex: ExchangeView) -> bool:
        old = ex.down.ep.scheme_str + "://" + ex.authority.decode("latin-1")
        old += ex.path_query.decode("latin-1")
        if pattern.search(old) is None:
            return False
        new = pattern.sub(expand, old)
        if new == old:
            return False
        return answer(ex, new, redirect_status(ex.method, permanent))

    return stage


def scheme_redirect(scheme: str, port: str, permanent: bool, always: bool = False) -> Stage:
    """Answer with the same URL on ``scheme`` and ``port`` (the default port of the scheme is
    left out; an empty port drops the Host's)."""
    suffix = "" if _default(scheme, port) or not port else ":" + port
    prefix = scheme + "://"

    def stage(ex: ExchangeView) -> bool:
        host, old_port = host_and_port(ex)
        # the path as routed (sanitized), as Traefik's RequestURI after its sanitizePath
        uri = ex.path_query.decode("latin-1")
        if not always:
            was = client_scheme(ex)
            old = "" if not old_port or _default(was, old_port) else ":" + old_port
            if was == scheme and old == suffix:
                return False  # nothing would change: on to the backend
        return answer(ex, prefix + host + suffix + uri, redirect_status(ex.method, permanent))

    return stage
