"""Services: their servers, how one is picked, and active health checks.

``wrr`` is smooth weighted round robin (the nginx algorithm): over any window of
``sum(weights)`` picks each server is chosen exactly ``weight`` times, interleaved.  ``p2c``
picks two healthy servers at random and takes the one with fewer requests in flight.

Health checks run in every worker for the services it serves; a server that fails leaves the
rotation and returns when a check passes.  Until its first check a server counts as healthy.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from typing import Any
from urllib.parse import urlsplit

from hopwire.http.h2up import H2Pool
from hopwire.http.pool import Pool

log = logging.getLogger("hopwire.balancer")


def ssl_context(transport: Any, h2: bool = False) -> ssl.SSLContext:
    """The client context of a serversTransport: trusted CAs, versions, client certificates;
    ALPN offers ``h2`` first when ``h2`` (HTTP/2 to https:// servers that choose it)."""
    from hopwire.http.tls import VERSIONS

    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"] if h2 else ["http/1.1"])
    for ca in transport.rootCAs:
        ctx.load_verify_locations(cafile=ca)
    ctx.minimum_version = VERSIONS[transport.minVersion]
    if transport.maxVersion:
        ctx.maximum_version = VERSIONS[transport.maxVersion]
    for cert in transport.certificates:
        ctx.load_cert_chain(cert.certFile, cert.keyFile)
    if transport.insecureSkipVerify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def context(
    contexts: dict[tuple[int, bool], ssl.SSLContext], transport: Any, h2: bool
) -> ssl.SSLContext:
    """A serversTransport's client context (one per transport and ALPN offer, shared)."""
    key = (id(transport), h2)
    ctx = contexts.get(key)
    if ctx is None:
        ctx = contexts[key] = ssl_context(transport, h2)
    return ctx


class Server:
    __slots__ = (
        "current",
        "healthy",
        "host_header",
        "inflight",
        "log_url",
        "pool",
        "scheme",
        "url",
        "url_base",
        "weight",
    )

    def __init__(self, url: str, weight: int, pool: Pool, host_header: bytes, scheme: str):
        self.url = url
        self.url_base = url.rstrip("/")  # a CLIENT span's url.full is this plus the path
        self.weight = weight
        self.pool = pool
        self.host_header = host_header
        self.scheme = scheme
        self.healthy = True
        self.inflight = 0
        self.current = 0
        self.log_url: bytes | None = None  # the access log's part of a line (_accesslog)


class Service:
    __slots__ = ("check", "name", "pass_host", "pick", "servers", "task")

    def __init__(
        self,
        name: str,
        lb: Any,
        transport: Any,
        loop: asyncio.AbstractEventLoop,
        contexts: dict[tuple[int, bool], ssl.SSLContext],
    ):
        self.name = name
        self.pass_host = lb.passHostHeader
        self.check = lb.healthCheck
        self.task: asyncio.Task[None] | None = None
        self.servers: list[Server] = []
        for s in lb.servers:
            parts = urlsplit(s.url)
            https = parts.scheme == "https"
            port = parts.port or (443 if https else 80)
            host = parts.hostname or ""
            ctx = check_ctx = None
            h2 = https and not transport.disableHTTP2
            if https:
                check_ctx = context(contexts, transport, False)
                ctx = context(contexts, transport, True) if h2 else check_ctx
            default_port = (https and port == 443) or (not https and port == 80)
            shown = f"[{host}]" if ":" in host else host
            host_header = (shown if default_port else f"{shown}:{port}").encode()
            label = f"{name}:{s.url}"
            pool: Pool
            if parts.scheme == "h2c" or h2:  # h2 to https: if the server chooses it (ALPN)
                pool = H2Pool(loop, host, port, ctx, transport, label, check_ctx)
            else:
                pool = Pool(loop, host, port, ctx, transport, label)
            self.servers.append(Server(s.url, s.weight, pool, host_header, parts.scheme))
        if len(self.servers) == 1:
            self.pick = self._pick_one
        elif lb.strategy == "p2c":
            self.pick = self._pick_p2c
        else:
            self.pick = self._pick_wrr

    def _pick_one(self) -> Server | None:
        server = self.servers[0]
        return server if server.healthy and server.weight else None

    def _pick_wrr(self) -> Server | None:
        best = None
        total = 0
        for s in self.servers:
            if s.healthy and s.weight:
                s.current += s.weight
                total += s.weight
                if best is None or s.current > best.current:
                    best = s
        if best is not None:
            best.current -= total
        return best

    def _pick_p2c(self) -> Server | None:
        up = [s for s in self.servers if s.healthy and s.weight]
        if len(up) < 2:
            return up[0] if up else None
        a, b = random.sample(up, 2)
        return a if a.inflight <= b.inflight else b

    def start_checks(self) -> None:
        if self.check is not None:
            self.task = asyncio.get_running_loop().create_task(self._check_loop())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        for s in self.servers:
            s.pool.retire()

    async def _check_loop(self) -> None:
        while True:
            results = await asyncio.gather(*(self._check(s) for s in self.servers))
            for server, (ok, why) in zip(self.servers, results, strict=True):
                if ok != server.healthy:
                    log.warning(
                        "service %s server %s is %s%s",
                        self.name,
                        server.url,
                        "up" if ok else "down",
                        "" if ok else f": {why}",
                    )
                server.healthy = ok
            await asyncio.sleep(self.check.interval)

    async def _check(self, server: Server) -> tuple[bool, str]:
        check = self.check
        pool = server.pool
        writer = None
        try:
            async with asyncio.timeout(check.timeout):
                # HTTP/1.1 (ALPN http/1.1 where the pool would offer h2)
                reader, writer = await asyncio.open_connection(
                    pool.host, pool.port, ssl=pool.check_ssl, server_hostname=pool.server_hostname
                )
                writer.write(
                    b"GET %s HTTP/1.1\r\nhost: %s\r\nuser-agent: hopwire-healthcheck\r\n"
                    b"connection: close\r\n\r\n" % (check.path.encode(), server.host_header)
                )
                line = await reader.readline()
        except (OSError, TimeoutError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        finally:
            if writer is not None:
                writer.close()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return False, f"malformed status line {line[:80]!r}"
        status = int(parts[1])
        if check.status:
            return status == check.status, f"status {status}"
        return 200 <= status < 400, f"status {status}"
