"""Requests hopwire makes itself on behalf of a middleware (forwardAuth, errors).

A ``Call`` sends one request over a backend ``Pool`` (keep-alive, the same ``Upstream``
protocol and parser as proxied requests) and collects the whole response, bounded in size and
time; ``done(call)`` is called once, with ``status`` set, or ``error`` when it failed.  A
pooled connection the server had closed is retried once on a fresh one, as the proxy does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hopwire import errors
from hopwire.http.upstream import Upstream
from hopwire.http.wire import IDEMPOTENT

if TYPE_CHECKING:
    from hopwire.contracts import Connection
    from hopwire.http.pool import Pool

Fields = list[tuple[bytes, bytes]]

CALL_TIMEOUT = 30.0  # a middleware's call gives up after this long (no other bound applies)


class Call:
    __slots__ = (
        "body",
        "conn",
        "done",
        "down",
        "error",
        "finished",
        "headers",
        "limit",
        "method",
        "out",
        "pool",
        "request",
        "resp_complete",
        "reused",
        "size",
        "status",
        "timer",
        "too_large",
    )

    def __init__(
        self,
        down: Connection,
        pool: Pool,
        method: str,
        request: bytes,
        limit: int,
        done: Callable[[Call], None],
    ):
        self.down = down  # the client connection it serves: writes to it pause like a proxy's
        self.pool = pool
        self.method = method
        self.request = request  # head and body, ready to write
        self.limit = limit  # response body bytes kept; more: error "too_large" (-1: no limit)
        self.done = done
        self.out: list[bytes] = []  # what Upstream flushes to a client: never anything
        self.conn: Upstream | None = None
        self.status = 0
        self.headers: Fields = []
        self.body: list[bytes] = []
        self.size = 0
        self.error = ""
        self.too_large = False
        self.resp_complete = False
        self.reused = False
        self.finished = False
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        loop = self.pool.loop
        self.timer = loop.call_later(CALL_TIMEOUT, self.fail, "timeout")
        conn = self.pool.take()
        if conn is None:
            loop.create_task(self.dial())
        else:
            self.reused = True
            self.send(conn)

    async def dial(self) -> None:
        try:
            conn = await self.pool.connect()
        except (OSError, TimeoutError) as exc:
            self.fail(f"dial {self.pool.label}: {getattr(exc, 'strerror', None) or exc!r}")
            return
        if self.finished:
            conn.release(True, time.monotonic())
            return
        self.send(conn)

    def send(self, conn: Upstream) -> None:
        self.conn = conn
        conn.ex = self  # the Upstream callbacks below
        conn.fresh = True
        conn.transport.write(self.request)

    def finish(self, error: str = "") -> None:
        if self.finished:
            return
        self.finished = True
        self.error = error
        if self.timer is not None:
            self.timer.cancel()
        self.done(self)

    def fail(self, error: str) -> None:
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.release(False, 0.0)
        self.finish(error)

    def cancel(self) -> None:
        """The exchange it served ended first."""
        if not self.finished:
            self.finished = True
            if self.timer is not None:
                self.timer.cancel()
            conn = self.conn
            if conn is not None:
                self.conn = None
                conn.release(False, 0.0)

    # -- what Upstream calls ---------------------------------------------------------------

    def response_interim(self, status: int, conn: Upstream) -> None:
        pass

    def response_head(self, status: int, conn: Upstream) -> None:
        self.status = status
        self.headers = conn.fields()

    def response_body(self, data: bytes) -> None:
        self.size += len(data)
        if 0 <= self.limit < self.size:
            self.too_large = True
            self.fail("too_large")
            return
        self.body.append(data)

    def grpc_status(self, fields: list[tuple[bytes, bytes]]) -> None:
        """A gRPC status: a side call does not count one."""

    def answer_within(self, seconds: float) -> None:
        """A gRPC deadline: a side call keeps its own timeout."""

    def response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """An HTTP/2 backend's trailers: a side call has no use for them."""

    def response_complete(self, keep_alive: bool) -> None:
        self.resp_complete = True
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.release(keep_alive, time.monotonic())
        self.finish()

    def response_upgraded(self, conn: Upstream, rest: bytes) -> None:
        self.fail("unexpected 101 Switching Protocols")

    def bad_response(self, conn: Upstream, detail: str) -> None:
        self.fail(f"bad response from {conn.pool.label}: {detail}")

    def upstream_lost(self, conn: Upstream, exc: Exception | None) -> None:
        self.conn = None
        if self.finished:
            return
        kind = errors.UPSTREAM_CLOSED
        if errors.may_retry(kind, self.reused, 1, self.method in IDEMPOTENT, bool(self.status)):
            self.reused = False  # the keep-alive race, decided as for an exchange: once more
            self.pool.loop.create_task(self.dial())
            return
        self.finish(f"{conn.pool.label} closed before responding")

    def flush_down(self) -> None:
        pass
