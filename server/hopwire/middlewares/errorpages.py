"""errors: a response whose status is in ``status`` is replaced by a page from ``service``.

The backend's response is read to its end (its connection stays reusable) and dropped; the
page is fetched with GET ``query`` (``{status}``, ``{originalStatus}`` and ``{url}`` filled
in) from a server of the named service, through that service's pool, with the request's
fields (all, or ``errorRequestHeaders``), and sent with the original status (or the one
``statusRewrites`` gives) and the page's own fields, as Traefik does.  A page that cannot be
fetched is a 500.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hopwire import errors
from hopwire.contracts import ExchangeView
from hopwire.http.client import Call
from hopwire.http.head import response_fields
from hopwire.http.wire import status_line
from hopwire.middlewares.bodies import Filter, with_length
from hopwire.middlewares.retry import in_ranges, status_ranges

Fields = list[tuple[bytes, bytes]]


def rewrites(mapping: Any) -> list[tuple[tuple[tuple[int, int], ...], int]]:
    return [(status_ranges((spec,)), int(code)) for spec, code in mapping.items()]


class ErrorPages:
    """A response filter factory: a filter only for a status in the ranges."""

    __slots__ = ("fields", "name", "query", "ranges", "rewrites", "service")

    def __init__(self, name: str, cfg: Any, service: Any):
        self.name = name
        self.ranges = status_ranges(cfg.status)
        self.rewrites = rewrites(cfg.statusRewrites)
        self.service = service
        self.query = cfg.query or "/"
        self.fields = (
            None
            if cfg.errorRequestHeaders is None
            else frozenset(n.lower().encode() for n in cfg.errorRequestHeaders)
        )

    def open(self, ex: ExchangeView, headers: Fields) -> Filter | None:
        if not in_ranges(ex.status, self.ranges):
            return None
        return ErrorPage(ex, self)

    def status_for(self, status: int) -> int:
        for ranges, code in self.rewrites:
            if in_ranges(status, ranges):
                return code
        return status

    def request(self, ex: ExchangeView, status: int, server: Any) -> bytes:
        url = f"{ex.down.ep.scheme_str}://{ex.authority.decode('latin-1')}"
        url += ex.path_query.decode("latin-1")
        target = (
            self.query.replace("{status}", str(status))
            .replace("{originalStatus}", str(ex.origin_status))
            .replace("{url}", quote(url, safe=""))
        )
        if not target.startswith("/"):
            target = "/" + target
        host = ex.authority if self.service.pass_host and ex.authority else server.host_header
        parts = [b"GET ", target.encode("latin-1"), b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
        names = self.fields
        for name, value in ex.kept:
            if names is None or name.lower() in names:
                parts += (name, b": ", value, b"\r\n")
        fwd = ex.fwd
        ip = ex.down.client_ip_bytes
        ep = ex.down.ep
        parts += (
            b"x-forwarded-host: ",
            fwd.get(b"x-forwarded-host", ex.authority),
            b"\r\nx-forwarded-proto: ",
            fwd.get(b"x-forwarded-proto", ep.scheme),
            b"\r\nx-forwarded-port: ",
            fwd.get(b"x-forwarded-port") or ex.port or ep.default_port,
            b"\r\nx-real-ip: ",
            fwd.get(b"x-real-ip", ip),
            b"\r\n",
        )
        if ex.trace is not None:
            parts.append(ex.trace.line)
        parts.append(b"\r\n")
        return b"".join(parts)


class ErrorPage(Filter):
    __slots__ = ("cfg", "status")

    def __init__(self, ex: ExchangeView, cfg: ErrorPages):
        super().__init__(ex)
        self.cfg = cfg
        self.status = cfg.status_for(ex.status)

    def send_head(
        self, parts: list[bytes], cl: bytes | None, chunked: bool, headers: Fields
    ) -> None:
        pass  # replaced by the page

    def send_data(self, data: bytes) -> None:
        pass

    def send_end(self) -> None:
        ex = self.ex
        server = self.cfg.service.pick()
        if server is None:
            ex.respond_error(errors.NO_SERVER, f"{self.cfg.name}: no server for the error page")
            return
        call = Call(
            ex.down,
            server.pool,
            "GET",
            self.cfg.request(ex, self.status, server),
            1 << 24,
            self.page,
        )
        ex.held = [*(ex.held or ()), call.cancel]
        call.start()

    def page(self, call: Call) -> None:
        ex = self.ex
        if ex.done:
            return
        if call.error:
            ex.down.worker.middleware_errors[(self.cfg.name, "page_failed")] += 1
            ex.respond_error(errors.MIDDLEWARE_FAILED, f"{self.cfg.name}: error page: {call.error}")
            return
        body = b"".join(call.body)
        parts, _, _, _ = response_fields(call.headers, status_line(self.status))
        ex.status = self.status
        nxt = self.next
        nxt.send_head(with_length(parts, len(body)), b"%d" % len(body), True, call.headers)
        if body:
            nxt.send_data(body)
        nxt.send_end()
