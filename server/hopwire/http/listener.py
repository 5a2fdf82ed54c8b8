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
            # on a busy loop the ClientHello is often there already: no reader, no timer
            need = self.sort(conn, self.timeout, False)
            if need:
                Peek(self, conn, need)  # kept alive by its reader and timer callbacks

    def sort(self, conn: socket.socket, timeout: float, lowat: bool) -> int:
        """Hand a connection on by its first bytes: 0 when done (served or refused), else
        how many bytes must be there before the next look.  ``lowat``: SO_RCVLOWAT was
        raised and must come down before the connection is handed on."""
        try:
            data = conn.recv(RECORD_MAX, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return 1
        except OSError:
            conn.close()
            return 0
        if not data:
            conn.close()  # closed before a byte (a TCP probe): not a handshake
            return 0
        if data[0] != HANDSHAKE:
            if lowat:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            self.serve_plain(conn)
            return 0
        need = record_length(data)
        if need > RECORD_MAX:
            self.refuse(conn, "malformed")
            return 0
        if need == 0 or len(data) < need:  # wake when the whole record is there
            return need or 5
        try:
            sni = client_hello_sni(data)
        except ValueError:
            self.refuse(conn, "malformed")
            return 0
        ctx = self.chooser.context(sni)
        if ctx is None:
            self.refuse(conn, "sni_strict")
            return 0
        if lowat:  # or the TLS layer's reads would wait for that much too
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        self.serve_tls(conn, ctx, timeout)
        return 0

    def refuse(self, conn: socket.socket, reason: str) -> None:
        conn.close()
        log.debug("TLS connection refused before the handshake: %s", reason)
        self.failed(reason)

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
    """An accepted connection whose first bytes have not all arrived: the loop wakes when
    they have (SO_RCVLOWAT), or the deadline closes it."""

    __slots__ = ("conn", "deadline", "fd", "listener", "lowat", "timer")

    def __init__(self, listener: TLSListener, conn: socket.socket, need: int):
        self.listener = listener
        self.conn = conn
        self.fd = conn.fileno()
        loop = listener.loop
        self.deadline = time.monotonic() + listener.timeout
        self.lowat = False
        self.wait_for(need)
        self.timer = loop.call_later(listener.timeout, self.expire)
        loop.add_reader(self.fd, self.readable)

    def wait_for(self, need: int) -> None:
        if need > 1:
            self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, need)
            self.lowat = True

    def release(self) -> None:
        self.listener.loop.remove_reader(self.fd)
        self.timer.cancel()

    def expire(self) -> None:
        self.release()
        self.listener.refuse(self.conn, "timeout")

    def readable(self) -> None:
        listener = self.listener
        loop = listener.loop
        loop.remove_reader(self.fd)  # before sort may close the socket or hand it on
        need = listener.sort(self.conn, self.deadline - time.monotonic(), self.lowat)
        if need:
            self.wait_for(need)
            loop.add_reader(self.fd, self.readable)
        else:
            self.timer.cancel()
