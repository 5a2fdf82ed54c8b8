"""The backend side: one pooled HTTP/1.1 connection, parsing responses with httptools.

The connection is attached to at most one exchange at a time and calls it back with the
response.  Two traps, both measured: ``should_keep_alive()`` is only meaningful inside
``on_message_complete`` (read later it says False and connections silently stop being reused),
and llhttp cannot be told that a response answers HEAD, so a HEAD response ends at its head and
the parser is replaced.

The response head is not delivered field by field: ``on_header`` is not defined, so the parser
calls nothing per field.  llhttp validates the head (CRLF line ends, field syntax, one
Content-Length, no obs-fold), and ``on_headers_complete`` takes the head's bytes as received
(``head``; ``fields()`` splits them when a reader needs the fields), so that the common
response is forwarded with its field block as it came (``hopwire.http.head.forward_head``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpResponseParser,
)

from hopwire.http._head import locate_head
from hopwire.http.flow import HIGH_WATER, LOW_WATER, PEER_FULL, ReadFlow
from hopwire.http.head import Fields, split_fields

if TYPE_CHECKING:
    from hopwire.contracts import Pool
    from hopwire.contracts import UpstreamHooks as Exchange
    from hopwire.http.downstream import Downstream

log = logging.getLogger("hopwire.upstream")

# a body of known length with this much still to come after its head's read is counted,
# not parsed: below it, the parser's copy of each piece costs less than a new parser
COUNTED = 32 * 1024
SLOW_READ = 32 * 1024  # the most read at a time from a slow client's backend (narrow)
_slow_buffer = memoryview(bytearray(SLOW_READ))  # one per process: read, then copied out
HEAD_LIMIT = 1 << 20  # bytes of a response head (Go's transport for Traefik: 1 MiB by default)


class _HeadOnly(Exception):
    """Raised from on_headers_complete to end a response to HEAD at its head."""


class Upstream(asyncio.Protocol):
    __slots__ = (
        "body_left",
        "buf",
        "chunked",
        "closed",
        "ex",
        "fields_at",
        "flow",
        "fresh",
        "head",
        "head_at",
        "headers",
        "idle_since",
        "in_head",
        "interim",
        "keep",
        "length",
        "narrowed",
        "parser",
        "partial",
        "pool",
        "reason",
        "tail",
        "transport",
        "tunnel",
    )

    def __init__(self, pool: Pool):
        self.pool = pool
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: ReadFlow = None  # type: ignore[assignment]
        self.parser = HttpResponseParser(self)
        self.ex: Exchange | None = None  # the exchange this connection serves, if any
        self.fresh = False  # a request was sent and no byte of its response has arrived
        # the response head: the bytes being parsed (``buf``: what is left of a head begun in
        # an earlier read, then this read), where the current message began in them, whether
        # its head is still being read; then the complete head, where its first field line
        # starts, and its fields once split (``fields``)
        self.buf = b""
        self.partial = b""
        self.head_at = 0
        self.in_head = False
        self.head = b""
        self.fields_at = 0
        self.headers: Fields | None = None
        self.reason = b""
        # a body of known length: its Content-Length until the read that held the head ends,
        # then the bytes still to come (counted_body), and whether the connection is reused
        self.length = -1
        self.body_left = 0
        self.keep = False
        self.interim = False
        self.chunked = False  # the response's body is chunked: its trailers are read at its end
        self.tail: list[bytes] = []  # a chunked body's latest reads: its trailers may begin there
        self.idle_since = 0.0
        self.tunnel: Downstream | None = None  # the downstream connection after a 101
        self.closed = False
        self.narrowed = False  # read in small pieces for a slow client (narrow)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        self.flow = ReadFlow(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.tunnel is not None:
            self.tunnel.close()
            return
        ex = self.ex
        if ex is not None:
            self.ex = None
            ex.upstream_lost(self, exc)
        else:
            self.pool.discard(self)

    def eof_received(self) -> bool:
        if self.tunnel is not None and not self.tunnel.closed:
            if self.tunnel.transport.can_write_eof():
                self.tunnel.transport.write_eof()
            return True
        return False

    def pause_writing(self) -> None:
        other = self.tunnel or (self.ex.down if self.ex is not None else None)
        if other is not None:
            other.flow.pause(PEER_FULL)

    def resume_writing(self) -> None:
        other = self.tunnel or (self.ex.down if self.ex is not None else None)
        if other is not None:
            other.flow.resume(PEER_FULL)

    def narrow(self) -> None:
        """The client this response goes to is slow: from now on read from the backend at most
        ``SLOW_READ`` bytes at a time (``SlowReader``), so that the worker holds one small
        read for it rather than a 256 KiB one; the backend waits in its own send buffer.
        uvloop (and asyncio) choose how to read when reading starts, hence the restart."""
        if not self.narrowed and not self.closed:
            self.narrowed = True
            self.read_with(SlowReader(self))

    def widen(self) -> None:
        """Back to whole reads, for the pool's next exchange (whose client may be fast)."""
        if self.narrowed and not self.closed:
            self.narrowed = False
            self.read_with(self)

    def read_with(self, protocol: asyncio.BaseProtocol) -> None:
        """The transport's reads go to ``protocol`` from now on, restarted if it is reading."""
        transport = self.transport
        transport.set_protocol(protocol)
        if not self.flow.reasons:
            transport.pause_reading()
            transport.resume_reading()

    def release(self, reuse: bool, now: float) -> None:
        """What it carried is done with it: back to its pool, reading whole pieces again
        (``reuse``), else closed.  The one release of a backend connection, for an exchange's
        attempt and a middleware's call alike."""
        self.ex = None
        if not reuse:
            self.close()
            return
        if self.narrowed:
            self.widen()
        # the last write to a slow client may have paused this connection's reading; an idle
        # pooled connection must read (to notice the backend closing it)
        if self.flow.reasons:
            self.flow.resume(PEER_FULL)
        self.pool.put(self, now)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def half_close(self) -> None:
        if not self.closed and self.transport.can_write_eof():
            self.transport.write_eof()

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.deadline = tunnel.worker.clock.now + tunnel.ep.idle_timeout
            tunnel.transport.write(data)
            return
        ex = self.ex
        if self.fresh and ex is not None:
            self.fresh = False
            if data[:1] in (b"\r", b"\n"):  # llhttp skips them; they are not a status line
                ex.bad_response(self, "response does not start with a status line")
                return
        if ex is None:
            # Bytes from an idle pooled connection: the backend broke framing (RELIABILITY 24).
            log.info("unsolicited bytes from idle backend %s; dropping connection", self.pool.label)
            self.close()
            return
        if self.body_left:
            self.counted_body(ex, data)
            return
        if self.partial:  # a head begun in an earlier read: it starts the buffer
            self.buf = self.partial + data
            self.partial = b""
        else:
            self.buf = data
            self.head_at = 0
        try:
            self.parser.feed_data(data)
            if self.in_head:  # the head goes on in the next read
                self.keep_partial()
            elif self.length >= 0:  # a Content-Length body goes on past this read
                left = self.length - (len(self.buf) - self.head_at)
                self.length = -1
                if left >= COUNTED:  # counted from now on (counted_body)
                    self.body_left = left
                    self.keep = self.parser.should_keep_alive()  # meaningful until its end
            elif self.chunked:  # a chunked body goes on: its trailer section may begin here
                self.keep_tail(data)
            self.buf = b""
        except HttpParserUpgrade as exc:
            if self.ex is not None:
                self.ex.response_upgraded(self, data[exc.args[0] :])
            return
        except HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadOnly):
                end = data.find(b"\r\n\r\n")
                clean = end >= 0 and end + 4 == len(data)
                self.parser = HttpResponseParser(self)
                if self.ex is not None:
                    self.ex.response_complete(clean and self.keep_alive_header())
            elif self.ex is not None:
                self.ex.bad_response(self, str(exc.__context__ or exc))
            else:
                self.polluted()
        except HttpParserError as exc:
            if self.ex is None:
                self.polluted()
            elif self.parser.get_status_code() == 101 and b"\r\n\r\n" in data:
                # a 101 without "Connection: upgrade": llhttp pauses without an offset
                self.ex.response_upgraded(self, data[data.find(b"\r\n\r\n") + 4 :])
                return
            else:
                self.ex.bad_response(self, str(exc))
        if ex.out:
            ex.flush_down()

    def counted_body(self, ex: Exchange, data: bytes) -> None:
        """The rest of a body of known length, after the read that held its head: handed on
        as it came, without the parser (which would copy every piece); at its end the
        parser is replaced, as the next response begins a new message."""
        left = self.body_left
        size = len(data)
        if size < left:
            self.body_left = left - size
            ex.response_body(data)
        else:
            self.body_left = 0
            self.parser = HttpResponseParser(self)
            ex.response_body(data if size == left else data[:left])
            if self.ex is ex:  # a body filter may have ended the exchange
                # bytes after a complete response: the connection is not reused (RELIABILITY 24)
                ex.response_complete(self.keep and size == left)
            if size > left:
                self.polluted()
        if ex.out:
            ex.flush_down()

    def keep_tail(self, data: bytes) -> None:
        """Keep the reads (references, not copies) that hold a chunked body's last
        ``TRAILER_LIMIT`` bytes so far: a trailer section that begins in one of them and ends
        in a later read is read whole at the body's end (``trailer_fields``)."""
        tail = self.tail
        tail.append(data)
        size = 0
        for n, piece in enumerate(reversed(tail)):
            size += len(piece)
            if size >= TRAILER_LIMIT:
                del tail[: len(tail) - n - 1]
                return

    def keep_partial(self) -> None:
        partial = self.buf[self.head_at :]
        if len(partial) > HEAD_LIMIT:
            self.in_head = False
            if self.ex is not None:
                self.ex.bad_response(self, f"response head over {HEAD_LIMIT} bytes")
            return
        self.partial = partial
        self.head_at = 0

    def fields(self) -> Fields:
        """The fields of the response head, as (name, value) pairs, split once."""
        headers = self.headers
        if headers is None:
            headers = self.headers = split_fields(self.head, self.fields_at)
        return headers

    def polluted(self) -> None:
        """Bytes followed a complete response (RELIABILITY 24): never reuse this connection."""
        log.info("bytes after a complete response from %s; dropping connection", self.pool.label)
        self.close()

    def keep_alive_header(self) -> bool:
        if self.parser.get_http_version() == "1.0":
            return False
        for name, value in self.fields():
            if name.lower() == b"connection" and b"close" in value.lower():
                return False
        return True

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        ex = self.ex
        if ex is None or ex.resp_complete:
            raise RuntimeError("response bytes with no request outstanding")
        self.in_head = True
        self.headers = None

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head, self.head_at, self.fields_at, self.reason, length = locate_head(
            self.buf, self.head_at
        )
        status = self.parser.get_status_code()
        ex = self.ex
        assert ex is not None  # on_message_begin refuses a response nobody asked for
        if not 100 <= status <= 599:  # RFC 9110 §15: invalid outside 100..599
            raise ValueError(f"status code {status} out of range")
        if 100 <= status < 200 and status != 101:
            for name, _ in self.fields():  # RFC 9110 §8.6, RFC 9112 §6.1: not on a 1xx
                if name.lower() in (b"content-length", b"transfer-encoding"):
                    raise ValueError(f"{name.decode('latin-1')} on a {status} response")
            self.interim = True
            ex.response_interim(status, self)
            return
        if status == 101:
            self.interim = True  # the message "completes" before the parser pauses for upgrade
            return
        ex.response_head(status, self)
        if ex.method == "HEAD":
            raise _HeadOnly()
        if length > 0 and status != 204 and status != 304:
            self.length = length  # if the body goes on past this read, it is counted
        elif length < 0:  # no Content-Length: chunked, or to the close (rarer than either)
            self.chunked = b"chunked" in self.head.lower()

    def on_body(self, body: bytes) -> None:
        if self.interim:  # RFC 9110 §15.2: a 1xx response has no content
            raise ValueError("a body on a 1xx response")
        ex = self.ex
        if ex is not None:  # None: a middleware ended the exchange on an earlier piece
            ex.response_body(body)

    def on_message_complete(self) -> None:
        self.length = -1  # the body ended in the read that held the head
        if self.interim:
            self.interim = False
            return
        ex = self.ex
        if self.chunked:
            self.chunked = False
            data = self.buf
            tail = self.tail
            if tail:
                self.tail = []
                if data != b"0\r\n\r\n" and not data.endswith(b"\r\n0\r\n\r\n"):
                    # not the common end without trailers: they may have begun earlier
                    data = b"".join([tail[0][-TRAILER_LIMIT:], *tail[1:], data])
            if ex is not None:
                trailers = trailer_fields(data)
                if trailers:
                    ex.response_trailers(trailers)
        if ex is not None and not ex.resp_complete:
            ex.response_complete(self.parser.should_keep_alive())


TRAILER_LIMIT = 16384  # a trailer section longer than this is not relayed
_LAST_CHUNK = re.compile(rb"\r\n0+(?:;[^\r\n]*)?\r\n")  # after the head or a chunk


def trailer_fields(data: bytes) -> list[tuple[bytes, bytes]]:
    """The trailer fields of a chunked body that ends in ``data`` (the read in which llhttp
    completed it, and validated it, after the last ``TRAILER_LIMIT`` bytes of the reads
    before it): the field lines after its last chunk."""
    if not data.endswith(b"\r\n\r\n") or data.endswith(b"\r\n0\r\n\r\n"):
        return []  # no trailer section (the common end), or not where it can be read
    at = len(data) - 4
    while True:
        # the last chunk line closest to the end whose lines after it are all fields
        found = None
        for match in _LAST_CHUNK.finditer(data, max(0, at - TRAILER_LIMIT)):
            if match.end() <= at + 2:
                found = match
        if found is None:
            return []
        block = data[found.end() : len(data) - 2]
        fields = []
        for line in block.split(b"\r\n")[:-1]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name.strip() != name:
                break
            fields.append((name, value.strip(b" \t")))
        else:
            return fields
        at = found.start() - 1
        if at <= 0:
            return []


class SlowReader(asyncio.BufferedProtocol):
    """An ``Upstream``'s protocol while its client is slow (``Upstream.narrow``): the loop
    reads into a small buffer shared by the process, and each read is handed on as bytes,
    as a plain protocol's would be.  Everything else goes to the upstream itself."""

    __slots__ = ("conn",)

    def __init__(self, conn: Upstream):
        self.conn = conn

    def get_buffer(self, sizehint: int) -> memoryview:
        return _slow_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.conn.data_received(bytes(_slow_buffer[:nbytes]))

    def eof_received(self) -> bool:
        return self.conn.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()
