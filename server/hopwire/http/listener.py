"""The accept loop of an entrypoint that terminates TLS.

Like Traefik, it looks at each connection's first bytes: a TLS ClientHello starts a handshake
whose context ``tls.Chooser`` picks from the SNI; anything else is plain HTTP, served by the
entrypoint's plain routers (none when every router is TLS: a 404).  The bytes are only
peeked (``MSG_PEEK``): OpenSSL and the HTTP parser read them from the socket as if nothing
had looked.  While a ClientHello is incomplete, ``SO_RCVLOWAT`` keeps the loop from waking
before the rest of its record has arrived.

Plain-HTTP entrypoints never come here: they keep the loop's own server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable

from hopwire.http.tls import HANDSHAKE, RECORD_MAX, Chooser, client_hello_sni, record_length

log = logging.getLogger("hopwire.tls")

ACCEPT_BATCH = 64  # connections accepted per wake-up, then the loop serves others


def handshake_reason(exc: BaseException) -> str:
    """A short label for a failed handshake (the metric's ``reason``)."""
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or exc.__class__.__name__).lower()
    if isinstance(exc, ConnectionAbortedError) and "handshake" in str(exc):
        return "timeout"
    if isinstance(exc, (ConnectionError, EOFError)):
        return "closed"
    return exc.__class__.__name__.lower()


class TLSListener:
    """Accepts connections on one listening socket and sorts them into TLS and plain."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        plain: Callable[[], asyncio.Protocol],
        secure: Callable[[], asyncio.Protocol],
        chooser: Chooser,
        timeout: float,
        failed: Callable[[str], None],
    ):
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.plain = plain  # protocol factory of plain connections
        self.secure = secure  # protocol factory of TLS connections
        self.chooser = chooser
        self.timeout = timeout or 60.0  # first bytes and handshake, bounded by readTimeout
        self.failed = failed  # counts a failed handshake by reason
        self.peeking: set[Peek] = set()
        self.closed = False
        loop.add_reader(self.fd, self.accept)

    def close(self) -> None:
        """Stop accepting (the socket stays open: it is the master's)."""
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.fd)

    def accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: the next wake-up tries again
                log.warning("accept failed: %s", exc)
                return
            conn.setblocking(False)
            self.peeking.add(Peek(self, conn))

    def serve_plain(self, conn: socket.socket) -> None:
        self.loop.create_task(self._plain(conn))

    async def _plain(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.plain, conn)
        except OSError:
            conn.close()

    def serve_tls(self, conn: socket.socket, ctx: ssl.SSLContext, timeout: float) -> None:
        self.loop.create_task(self._handshake(conn, ctx, timeout))

    async def _handshake(self, conn: socket.socket, ctx: ssl.SSLContext, timeout: float) -> None:
        try:
            await self.loop.connect_accepted_socket(
                self.secure, conn, ssl=ctx, ssl_handshake_timeout=max(timeout, 0.001)
            )
        except (OSError, EOFError) as exc:  # ssl.SSLError and ConnectionError are OSErrors
            reason = handshake_reason(exc)
            log.debug("TLS handshake failed (%s): %s", reason, exc)
            self.failed(reason)
            conn.close()


class Peek:
    """One accepted connection whose first bytes are not yet known."""

    __slots__ = ("conn", "deadline", "fd", "listener", "lowat", "timer")

    def __init__(self, listener: TLSListener, conn: socket.socket):
        self.listener = listener
        self.conn = conn
        self.fd = conn.fileno()
        loop = listener.loop
        self.deadline = time.monotonic() + listener.timeout
        self.lowat = False  # SO_RCVLOWAT raised while a ClientHello is incomplete
        self.timer = loop.call_later(listener.timeout, self.expire)
        loop.add_reader(self.fd, self.readable)

    def release(self) -> None:
        self.listener.loop.remove_reader(self.fd)
        self.timer.cancel()
        self.listener.peeking.discard(self)

    def drop(self, reason: str | None) -> None:
        self.release()
        self.conn.close()
        if reason is not None:
            log.debug("TLS connection refused before the handshake: %s", reason)
            self.listener.failed(reason)

    def expire(self) -> None:
        self.drop("timeout")

    def readable(self) -> None:
        conn = self.conn
        try:
            data = conn.recv(RECORD_MAX, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.drop(None)
            return
        if not data:
            self.drop(None)  # closed before a byte (a TCP probe): not a handshake
            return
        listener = self.listener
        if data[0] != HANDSHAKE:
            self.release()
            listener.serve_plain(conn)
            return
        need = record_length(data)
        if need > RECORD_MAX:
            self.drop("malformed")
            return
        if need == 0 or len(data) < need:  # wake when the whole record is there
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, need or 5)
            self.lowat = True
            return
        try:
            sni = client_hello_sni(data)
        except ValueError:
            self.drop("malformed")
            return
        ctx = listener.chooser.context(sni)
        if ctx is None:
            self.drop("sni_strict")
            return
        if self.lowat:  # or the TLS layer's reads would wait for that much too
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        self.release()
        listener.serve_tls(conn, ctx, self.deadline - time.monotonic())
