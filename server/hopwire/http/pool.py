"""Keep-alive connections to one backend server: LIFO idle list, per-server cap, idle timeout.

LIFO keeps the most recently used connections warm and lets the oldest ones age out through the
idle timeout.  The worker's tick calls ``sweep``; nothing here arms a timer per connection.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from hopwire.http.upstream import Upstream


class Pool:
    __slots__ = (
        "check_ssl",
        "dial_timeout",
        "expect_continue_timeout",
        "host",
        "idle",
        "idle_timeout",
        "label",
        "loop",
        "max_idle",
        "port",
        "response_header_timeout",
        "server_hostname",
        "ssl",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        transport: Any,
        label: str,
    ):
        self.loop = loop
        self.host = host
        self.port = port
        self.ssl = ssl_context
        self.check_ssl = ssl_context  # the health checks' (HTTP/1.1 as the requests)
        # SNI and the name verified: serversTransport.serverName, else the server's host
        self.server_hostname = (transport.serverName or host) if ssl_context is not None else None
        timeouts = transport.forwardingTimeouts
        self.dial_timeout = timeouts.dialTimeout or None
        self.idle_timeout = timeouts.idleConnTimeout
        self.response_header_timeout = timeouts.responseHeaderTimeout
        self.expect_continue_timeout = timeouts.expectContinueTimeout
        self.max_idle = transport.maxIdleConnsPerHost
        self.idle: list[Upstream] = []
        self.label = label

    def take(self) -> Upstream | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def put(self, conn: Upstream, now: float) -> None:
        if conn.closed or len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = now
        self.idle.append(conn)

    def discard(self, conn: Upstream) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    async def connect(self) -> Upstream:
        """Dial a new connection; raises TimeoutError or OSError."""
        _, proto = await asyncio.wait_for(
            self.loop.create_connection(
                lambda: Upstream(self),
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=self.server_hostname,
            ),
            self.dial_timeout,
        )
        return proto

    def sweep(self, now: float) -> None:
        if not self.idle or not self.idle_timeout:
            return
        limit = now - self.idle_timeout
        while self.idle and self.idle[0].idle_since < limit:
            self.idle.pop(0).close()

    def close_all(self) -> None:
        while self.idle:
            self.idle.pop().close()

    def retire(self) -> None:
        """No longer used by new requests: close the idle connections, and each busy one
        when it comes back."""
        self.max_idle = 0
        self.close_all()
