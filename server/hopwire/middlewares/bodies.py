"""Middlewares that hold a body: buffering (both directions) and compress, and the pieces the
others share (a request body held until it is complete, response head helpers).

Response filters sit between the backend and the exchange: ``send_head(parts, cl, chunked,
headers)``, ``send_data(data)``, ``send_end()``, each passing to ``next`` (another filter, or
the exchange itself) when it is ready.  ``parts`` is a response head as
``head.response_fields`` builds it: the status line, then (name, ": ", value, CRLF) groups.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Callable
from typing import Any

from hopwire import errors
from hopwire.contracts import ExchangeView
from hopwire.http.flow import BUFFERING as _BUFFERING
from hopwire.http.wire import LAST_CHUNK

Fields = list[tuple[bytes, bytes]]
CRLF = b"\r\n"
PIECE = 65536  # a buffered body goes out in pieces of this size


# -- response heads ---------------------------------------------------------------------------


def head_value(parts: list[bytes], name: bytes) -> bytes | None:
    for i in range(1, len(parts) - 3, 4):
        if parts[i].lower() == name:
            return parts[i + 2]
    return None


def without(parts: list[bytes], names: frozenset[bytes]) -> list[bytes]:
    out = [parts[0]]
    for i in range(1, len(parts) - 3, 4):
        if parts[i].lower() not in names:
            out += parts[i : i + 4]
    return out


_LENGTH = frozenset((b"content-length",))


def with_length(parts: list[bytes], n: int) -> list[bytes]:
    out = without(parts, _LENGTH)
    out += (b"content-length", b": ", b"%d" % n, CRLF)
    return out


def no_body(ex: ExchangeView) -> bool:
    return ex.method == "HEAD" or ex.status in (204, 304)


class Filter:
    """Passes everything on; subclasses hold what they need."""

    __slots__ = ("ex", "next")

    def __init__(self, ex: ExchangeView):
        self.ex = ex
        self.next: Any = ex

    def send_head(
        self, parts: list[bytes], cl: bytes | None, chunked: bool, headers: Fields
    ) -> None:
        self.next.send_head(parts, cl, chunked, headers)

    def send_data(self, data: bytes) -> None:
        self.next.send_data(data)

    def send_end(self) -> None:
        self.next.send_end()


class Spool:
    """Body bytes kept in memory up to ``mem``, then in a temporary file (Traefik's
    memRequestBodyBytes / memResponseBodyBytes)."""

    __slots__ = ("file", "size")

    def __init__(self, mem: int):
        self.file = tempfile.SpooledTemporaryFile(max_size=mem)  # noqa: SIM115
        self.size = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)

    def pieces(self) -> list[bytes]:
        f = self.file
        f.seek(0)
        out = []
        while True:
            piece = f.read(PIECE)
            if not piece:
                break
            out.append(piece)
        f.close()
        return out

    def close(self) -> None:
        self.file.close()


# -- request bodies ---------------------------------------------------------------------------


def received_body(ex: ExchangeView) -> list[bytes]:
    """Body bytes already queued for the backend (a pipelined request read before it started),
    without the chunked framing ``Exchange.body`` added."""
    out = ex.up_out
    if not ex.chunked:
        return list(out)
    return [out[i + 1] for i in range(0, len(out) - 2, 3) if out[i] != LAST_CHUNK]


class RequestBody:
    """Takes a request's body until it is complete, then calls ``then(ex, body)``; over
    ``limit`` bytes (-1: none) it calls ``over(ex, held)`` instead, once."""

    __slots__ = ("ex", "limit", "over", "spool", "then")

    def __init__(
        self,
        ex: ExchangeView,
        limit: int,
        mem: int,
        then: Callable[[Any, bytes], None],
        over: Callable[[Any, RequestBody], None],
    ):
        self.ex = ex
        self.limit = limit
        self.then = then
        self.over = over
        self.spool = Spool(mem)
        already = received_body(ex)
        ex.up_out = []
        if ex.up_buffered:
            ex.up_buffered = 0
            ex.down.flow.resume(_BUFFERING)
        ex.sink = self
        ex.held = [*(ex.held or ()), self.spool.close]
        if ex.expect_continue:
            ex.continue_now()  # the client waits for 100 before it sends what is held here
        for data in already:
            self.data(data)
        if ex.req_complete and ex.sink is self:
            self.complete()

    def data(self, chunk: bytes) -> None:
        spool = self.spool
        spool.write(chunk)
        if 0 <= self.limit < spool.size:
            self.ex.sink = None
            self.over(self.ex, self)

    def complete(self) -> None:
        ex = self.ex
        ex.sink = None
        body = b"".join(self.spool.pieces())
        # the backend gets it with a length, as Traefik sends a body it has read
        ex.chunked = False
        ex.cl = b"%d" % len(body)
        if body:
            ex.up_out = [body]
        self.then(ex, body)

    def release(self) -> list[bytes]:
        """Over the limit, to stream on: the bytes held so far (the sink is gone)."""
        return self.spool.pieces()


def stream_on(ex: ExchangeView, held: RequestBody) -> None:
    """Give up holding (retry's maxRequestBodyBytes): what was held is sent, the rest streams."""
    pieces = held.release()
    if ex.chunked:
        for piece in pieces:
            ex.up_out += (b"%x\r\n" % len(piece), piece, CRLF)
    else:
        ex.up_out += pieces


# -- buffering --------------------------------------------------------------------------------


class Buffering:
    """A request stage (the whole request body before the backend) and a response filter
    factory (the whole response before the client)."""

    __slots__ = ("max_request", "max_response", "mem_request", "mem_response", "next")

    def __init__(self, cfg: Any):
        self.max_request = cfg.maxRequestBodyBytes or -1
        self.mem_request = cfg.memRequestBodyBytes
        self.max_response = cfg.maxResponseBodyBytes or -1
        self.mem_response = cfg.memResponseBodyBytes
        self.next = 0

    def __call__(self, ex: ExchangeView) -> bool:
        if not ex.has_body:
            return False
        if ex.cl is not None and 0 <= self.max_request < int(ex.cl):
            self.refuse(ex, None)
            return True
        RequestBody(ex, self.max_request, self.mem_request, self.resume, self.refuse)
        return True

    def resume(self, ex: ExchangeView, body: bytes) -> None:
        ex.resume(self.next)

    def refuse(self, ex: ExchangeView, held: RequestBody | None) -> None:
        ex.respond_error(
            errors.REQUEST_TOO_LARGE,
            f"request body over maxRequestBodyBytes ({self.max_request})",
            b"Request Entity Too Large",
            b"",
        )

    def open(self, ex: ExchangeView, headers: Fields) -> Filter | None:
        return None if no_body(ex) else BufferedResponse(ex, self)


class BufferedResponse(Filter):
    __slots__ = ("cfg", "head", "spool")

    def __init__(self, ex: ExchangeView, cfg: Buffering):
        super().__init__(ex)
        self.cfg = cfg
        self.spool = Spool(cfg.mem_response)
        self.head: tuple[list[bytes], Fields] = ([], [])

    def send_head(
        self, parts: list[bytes], cl: bytes | None, chunked: bool, headers: Fields
    ) -> None:
        self.head = (parts, headers)

    def send_data(self, data: bytes) -> None:
        spool = self.spool
        if spool.size < 0:
            return  # refused already
        spool.write(data)
        if 0 <= self.cfg.max_response < spool.size:
            spool.size = -1
            spool.close()
            self.ex.respond_error(
                errors.RESPONSE_TOO_LARGE,
                f"response body over maxResponseBodyBytes ({self.cfg.max_response})",
                b"Internal Server Error",
                b"",
            )

    def send_end(self) -> None:
        spool = self.spool
        if spool.size < 0:
            return
        ex = self.ex
        parts, headers = self.head
        size = spool.size
        spool.file.seek(0)
        ex.held = [*(ex.held or ()), spool.close]  # whatever the outcome
        self.next.send_head(with_length(parts, size), b"%d" % size, True, headers)
        self.pump()

    def pump(self) -> None:
        """Send the spooled body while the client has room, the rest when it has room again
        (``Downstream.resume_writing`` calls back): a slow reader holds a piece or two, not
        the whole body.  A client that fills up is slow: what is left of a spool still in
        memory moves to its temporary file, as nginx's proxy_temp holds it."""
        ex = self.ex
        down = ex.down
        f = self.spool.file
        nxt = self.next
        while not ex.done:
            if down.full:
                f.rollover()
                down.writer = self.pump
                return
            piece = f.read(PIECE)
            if not piece:
                down.writer = None
                nxt.send_end()
                return
            nxt.send_data(piece)
            ex.flush_down()


# -- compress ---------------------------------------------------------------------------------


def media_type(value: bytes | str) -> tuple[str, dict[str, str]] | None:
    """A Content-Type's media type and parameters, lower-cased (None: unparsable)."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    kind, _, rest = text.partition(";")
    kind = kind.strip().lower()
    if kind.count("/") != 1 or not all(kind.split("/")):
        return None
    params: dict[str, str] = {}
    for item in rest.split(";"):
        if not item.strip():
            continue
        key, eq, val = item.partition("=")
        if not eq:
            return None
        params[key.strip().lower()] = val.strip().strip('"')
    return kind, params


def _matches(wanted: tuple[str, dict[str, str]], got: tuple[str, dict[str, str]]) -> bool:
    if wanted[0] != got[0]:
        return False
    return not wanted[1] or wanted[1] == got[1]


ENCODINGS = ("gzip", "br", "zstd")
IDENTITY = "identity"
_NONE = ""


def _gzip() -> Any:
    # level 5: on text it compresses as well as 6 here at twice the speed (80 vs 42 MB/s)
    return zlib.compressobj(5, zlib.DEFLATED, 31)


def _brotli() -> Any:
    import brotli

    return brotli.Compressor(quality=5)


def _zstd() -> Any:
    import zstandard

    return zstandard.ZstdCompressor(level=3).compressobj()


class _Gzip:
    __slots__ = ("c",)

    def __init__(self) -> None:
        self.c = _gzip()

    def piece(self, data: bytes) -> bytes:
        return self.c.compress(data) + self.c.flush(zlib.Z_SYNC_FLUSH)

    def last(self) -> bytes:
        return self.c.flush(zlib.Z_FINISH)


class _Brotli:
    __slots__ = ("c",)

    def __init__(self) -> None:
        self.c = _brotli()

    def piece(self, data: bytes) -> bytes:
        return bytes(self.c.process(data)) + bytes(self.c.flush())

    def last(self) -> bytes:
        return bytes(self.c.finish())


class _Zstd:
    __slots__ = ("c",)

    def __init__(self) -> None:
        self.c = _zstd()

    def piece(self, data: bytes) -> bytes:
        import zstandard

        return self.c.compress(data) + self.c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def last(self) -> bytes:
        return self.c.flush()


CODERS: dict[str, Callable[[], Any]] = {"gzip": _Gzip, "br": _Brotli, "zstd": _Zstd}


class Compress:
    """The compress middleware: a response filter factory (no request stage)."""

    __slots__ = ("default", "encodings", "excludes", "includes", "min", "rank")

    def __init__(self, cfg: Any):
        self.encodings = tuple(cfg.encodings)
        self.default = cfg.defaultEncoding
        self.min = cfg.minResponseBodyBytes or 1024
        grpc: list[tuple[str, dict[str, str]]] = [("application/grpc", {})]
        self.excludes = grpc + [
            parsed for parsed in map(media_type, cfg.excludedContentTypes) if parsed
        ]
        self.includes = [parsed for parsed in map(media_type, cfg.includedContentTypes) if parsed]
        self.rank = {name: i for i, name in enumerate(self.encodings)}
        self.rank["*"] = -1
        self.rank[IDENTITY] = len(self.encodings)

    def choose(self, accept: list[bytes]) -> str:
        """The encoding for these Accept-Encoding values, as Traefik chooses it."""
        if len(accept) == 1 and not accept[0].strip():
            return IDENTITY
        found: list[tuple[float, int, str]] = []
        for line in accept:
            for item in line.decode("latin-1").replace(" ", "").split(","):
                name, _, param = item.partition(";")
                if name not in self.rank:
                    continue
                weight = 1.0
                if param.startswith("q="):
                    try:
                        weight = float(param[2:])
                    except ValueError:
                        weight = 0.0
                    if weight == 0:
                        continue
                found.append((-weight, self.rank[name], name))
        if not found:
            return _NONE
        best = min(found)[2]
        if best == "*":
            return self.default or self.encodings[0]
        return best

    def open(self, ex: ExchangeView, headers: Fields) -> Filter | None:
        if ex.method == "HEAD":
            return None
        accept: list[bytes] = []
        request_type = None
        for name, value in ex.kept:
            lname = name.lower()
            if lname == b"accept-encoding":
                accept.append(value)
            elif lname == b"content-type":
                request_type = media_type(value)
        if request_type is not None and any(_matches(x, request_type) for x in self.excludes):
            return None
        encoding = self.choose(accept) if accept else self.default
        if encoding not in CODERS:
            return None
        filt = Compressing(ex, self, encoding)
        if encoding == "gzip" and not _names_gzip(accept):
            # Traefik's gzip handler asks for gzip itself (a "*" or defaultEncoding is not
            # enough): the response only varies
            filt.state = Compressing.OFF
        return filt


def _names_gzip(accept: list[bytes]) -> bool:
    for line in accept:
        for item in line.decode("latin-1").replace(" ", "").lower().split(","):
            name, _, param = item.partition(";")
            if name == "gzip":
                if not param.startswith("q="):
                    return True
                try:
                    return float(param[2:]) > 0
                except ValueError:
                    return False
    return False


_COMPRESSED_DROP = frozenset((b"content-length", b"accept-ranges"))


class Compressing(Filter):
    __slots__ = ("buf", "cfg", "coder", "encoding", "head", "state")

    WAITING, ON, OFF = 0, 1, 2

    def __init__(self, ex: ExchangeView, cfg: Compress, encoding: str):
        super().__init__(ex)
        self.cfg = cfg
        self.encoding = encoding
        self.coder: Any = None
        self.state = self.WAITING
        self.buf: list[bytes] = []
        self.head: tuple[list[bytes], bool, Fields] = ([], False, [])

    def send_head(
        self, parts: list[bytes], cl: bytes | None, chunked: bool, headers: Fields
    ) -> None:
        parts += (b"Vary", b": ", b"Accept-Encoding", CRLF)
        framed = chunked or cl is not None  # the backend's body ends by itself, not at a close
        if (
            self.state == self.OFF
            or no_body(self.ex)
            or not self.eligible(parts)
            or (cl is not None and int(cl) < self.cfg.min)
        ):
            self.state = self.OFF
            self.next.send_head(parts, cl, chunked, headers)
            return
        self.head = (parts, framed, headers)
        if cl is not None:
            self.start()

    def eligible(self, parts: list[bytes]) -> bool:
        if head_value(parts, b"content-encoding") or head_value(parts, b"content-range"):
            return False
        if self.ex.status == 206:
            return False
        ctype = head_value(parts, b"content-type")
        if ctype is None:
            return True
        parsed = media_type(ctype)
        if parsed is None:
            return False
        cfg = self.cfg
        if cfg.includes and not any(_matches(x, parsed) for x in cfg.includes):
            return False
        return not any(_matches(x, parsed) for x in cfg.excludes)

    def start(self) -> None:
        parts, framed, headers = self.head
        parts = without(parts, _COMPRESSED_DROP)
        parts += (b"Content-Encoding", b": ", self.encoding.encode(), CRLF)
        self.state = self.ON
        self.coder = CODERS[self.encoding]()
        self.next.send_head(parts, None, framed, headers)
        if self.buf:
            data = b"".join(self.buf)
            self.buf = []
            self.send_data(data)

    def send_data(self, data: bytes) -> None:
        state = self.state
        if state == self.ON:
            out = self.coder.piece(data)
            if out:
                self.next.send_data(out)
        elif state == self.OFF:
            self.next.send_data(data)
        elif data:
            # a body of unknown length starts at once: Traefik's proxy flushes every piece of
            # one, and a flush starts its compression whatever minResponseBodyBytes says
            self.buf.append(data)
            self.start()

    def send_end(self) -> None:
        state = self.state
        nxt = self.next
        if state == self.ON:
            tail = self.coder.last()
            if tail:
                nxt.send_data(tail)
        elif state == self.WAITING:  # a body of unknown length that was empty
            parts, _, headers = self.head
            data = b"".join(self.buf)
            nxt.send_head(with_length(parts, len(data)), b"%d" % len(data), True, headers)
            if data:
                nxt.send_data(data)
        nxt.send_end()
