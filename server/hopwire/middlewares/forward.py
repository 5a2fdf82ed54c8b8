"""forwardAuth: ask an authentication server, then forward, or answer with what it said.

The worker sends the authentication request through its own keep-alive pool to ``address``
(``hopwire.http.client.Call``), with the client's fields (all, or ``authRequestHeaders``) and
the X-Forwarded-* fields Traefik sends (For, Proto, Port, Host, Method, Uri, and X-Real-Ip),
GET unless ``preserveRequestMethod``, the body too with ``forwardBody``.  A 2xx answer lets
the request through with ``authResponseHeaders`` / ``authResponseHeadersRegex`` copied into
it, and the cookies named in ``addAuthCookiesToResponse`` added to the response; any other
answer goes to the client as it came (with ``Location`` resolved against ``address``, unless
``preserveLocationHeader``; a 401 becomes a redirect to ``authSigninURL`` when set).  The call
is a CLIENT span of the request's trace.  An unreachable server is a 500, as in Traefik.
"""

from __future__ import annotations

import re
import ssl
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

from hopwire import errors
from hopwire.contracts import ExchangeView, WorkerState
from hopwire.http.client import Call
from hopwire.http.pool import Pool
from hopwire.http.tls.options import client_context
from hopwire.http.wire import HOP_BY_HOP
from hopwire.middlewares.bodies import RequestBody
from hopwire.middlewares.redirect import answer
from hopwire.telemetry.records import ATTEMPT_END, ATTEMPT_ERROR, ATTEMPT_STATUS

Fields = list[tuple[bytes, bytes]]

_COOKIES = "forwardAuth cookies"  # the key of the cookies kept for the response in ex.notes
_LOCAL = frozenset((b"content-length", b"date", b"server", b"transfer-encoding"))


def cookie_name(value: bytes) -> str:
    return value.split(b"=", 1)[0].strip().decode("latin-1")


class ForwardAuth:
    __slots__ = (
        "cookies",
        "forward_body",
        "header_field",
        "host",
        "max_body",
        "max_response",
        "name",
        "next",
        "pool",
        "preserve_location",
        "preserve_method",
        "regex",
        "request_names",
        "response_names",
        "signin",
        "target",
        "trust",
        "url",
        "url_base",
        "worker",
    )

    def __init__(self, name: str, cfg: Any, worker: WorkerState):
        self.name = name
        self.worker = worker
        url = urlsplit(cfg.address)
        self.url = cfg.address
        https = url.scheme == "https"
        port = url.port or (443 if https else 80)
        host = url.hostname or ""
        self.host = url.netloc.encode()
        self.url_base = f"{url.scheme}://{url.netloc}"
        self.target = ((url.path or "/") + (f"?{url.query}" if url.query else "")).encode()
        context = client_context(cfg.tls) if https and cfg.tls is not None else None
        if https and context is None:
            context = ssl.create_default_context()
        self.pool = Pool(
            worker.loop, host, port, context, worker.config.serversTransport, f"{name}@{host}"
        )
        worker.side_pools.append(self.pool)
        self.trust = cfg.trustForwardHeader
        self.request_names = frozenset(n.lower().encode() for n in cfg.authRequestHeaders)
        self.response_names = [n.encode() for n in cfg.authResponseHeaders]
        self.regex = (
            re.compile(cfg.authResponseHeadersRegex) if cfg.authResponseHeadersRegex else None
        )
        self.cookies = frozenset(cfg.addAuthCookiesToResponse)
        self.forward_body = cfg.forwardBody
        self.max_body = cfg.maxBodySize
        self.max_response = cfg.maxResponseBodySize
        self.preserve_method = cfg.preserveRequestMethod
        self.preserve_location = cfg.preserveLocationHeader
        self.signin = cfg.authSigninURL
        self.header_field = cfg.headerField
        self.next = 0

    def __call__(self, ex: ExchangeView) -> bool:
        if self.forward_body and ex.has_body:
            RequestBody(ex, self.max_body, 1 << 20, self.ask, self.too_large)
        else:
            self.ask(ex, b"")
        return True

    def too_large(self, ex: ExchangeView, held: RequestBody) -> None:
        ex.respond_error(
            errors.REQUEST_TOO_LARGE,
            f"{self.name}: request body over maxBodySize ({self.max_body})",
        )

    def head(self, ex: ExchangeView, body: bytes, line: bytes) -> bytes:
        down = ex.down
        method = ex.method if self.preserve_method else "GET"
        parts = [method.encode("latin-1"), b" ", self.target, b" HTTP/1.1\r\nhost: ", self.host]
        parts.append(b"\r\n")
        names = self.request_names
        for name, value in ex.kept:
            if not names or name.lower() in names:
                parts += (name, b": ", value, b"\r\n")
        fwd = ex.fwd
        ip = down.client_ip_bytes
        xff = fwd.get(b"x-forwarded-for") if self.trust else None
        ep = down.ep
        proto = fwd.get(b"x-forwarded-proto", ep.scheme)
        port = fwd.get(b"x-forwarded-port") or ex.port or ep.default_port
        parts += (
            b"x-forwarded-for: ",
            xff + b", " + ip if xff else ip,
            b"\r\nx-forwarded-proto: ",
            proto,
            b"\r\nx-forwarded-port: ",
            port,
            b"\r\nx-forwarded-host: ",
            fwd.get(b"x-forwarded-host", ex.authority),
            b"\r\nx-real-ip: ",
            fwd.get(b"x-real-ip", ip),
            b"\r\nx-forwarded-method: ",
            ex.method.encode("latin-1"),
            b"\r\nx-forwarded-uri: ",
            ex.path_query,
            b"\r\n",
        )
        if line:
            parts.append(line)
        if body or method not in ("GET", "HEAD"):
            parts.append(b"content-length: %d\r\n" % len(body))
        parts += (b"\r\n", body)
        return b"".join(parts)

    def ask(self, ex: ExchangeView, body: bytes) -> None:
        trace = ex.trace
        line, record = b"", None
        if trace is not None:
            line, record = trace.side_call(self.url_base, self.pool.host, self.pool.port)
        call = Call(
            ex.down,
            self.pool,
            "GET",
            self.head(ex, body, line),
            self.max_response,
            lambda c: self.answered(ex, c, record),
        )
        ex.held = [*(ex.held or ()), call.cancel]
        call.start()

    def answered(self, ex: ExchangeView, call: Call, record: list[Any] | None) -> None:
        if record is not None:
            record[ATTEMPT_END] = time.time_ns()
            record[ATTEMPT_STATUS] = call.status
            record[ATTEMPT_ERROR] = (
                "forward_auth_failed"
                if call.error
                else (str(call.status) if call.status >= 400 else "")
            )
        if ex.done:
            return
        if call.too_large:  # Traefik answers 401 when the answer is over maxResponseBodySize
            self.unauthorized(ex)
            return
        if call.error:
            self.worker.middleware_errors[(self.name, "unreachable")] += 1
            ex.respond_error(errors.MIDDLEWARE_FAILED, f"{self.name}: {call.error}", b"", b"")
            return
        status = call.status
        auth = call.headers
        if self.signin and status == 401:
            answer(ex, self.signin, 302)
            return
        if not 200 <= status < 300:
            self.refuse(ex, call)
            return
        kept: Fields = ex.kept
        for name in self.response_names:
            lname = name.lower()
            values = [(n, v) for n, v in auth if n.lower() == lname]
            kept[:] = [(n, v) for n, v in kept if n.lower() != lname]
            kept += [(name, v) for _, v in values]
        regex = self.regex
        if regex is not None:
            kept[:] = [(n, v) for n, v in kept if not regex.search(_canonical(n))]
            kept += [(n, v) for n, v in auth if regex.search(_canonical(n))]
        if self.cookies:
            cookies = [v for n, v in auth if n.lower() == b"set-cookie"]
            if cookies:
                notes = ex.notes if ex.notes is not None else {}
                notes[_COOKIES] = cookies
                ex.notes = notes
        ex.resume(self.next)

    def unauthorized(self, ex: ExchangeView) -> None:
        ex.respond_local(401, b"", b"")

    def refuse(self, ex: ExchangeView, call: Call) -> None:
        extra = []
        location: bytes | None = None
        for name, value in call.headers:
            lname = name.lower()
            if lname in HOP_BY_HOP or lname in _LOCAL:
                continue
            if lname == b"location":
                location = value
                continue
            extra.append(b"%s: %s\r\n" % (name, value))
        if location is not None:
            if not self.preserve_location:
                location = urljoin(self.url, location.decode("latin-1")).encode("latin-1")
            extra.append(b"Location: %s\r\n" % location)
        ex.respond_local(call.status, b"".join(call.body), b"", extra)

    def response_step(self) -> tuple[frozenset[bytes], Any] | None:
        if not self.cookies:
            return None
        names = self.cookies

        def cookies(ex: ExchangeView, backend: Fields) -> Fields:
            notes = ex.notes
            mine = notes.get(_COOKIES) if notes is not None else None
            out = [
                (n, v)
                for n, v in backend
                if n.lower() == b"set-cookie" and (mine is None or cookie_name(v) not in names)
            ]
            if mine:
                out += [(b"Set-Cookie", v) for v in mine if cookie_name(v) in names]
            return out

        return frozenset((b"set-cookie",)), cookies


def _canonical(name: bytes) -> str:
    """Go's canonical form of a field name (authResponseHeadersRegex sees it)."""
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.decode("latin-1").split("-"))
