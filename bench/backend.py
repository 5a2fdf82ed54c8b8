"""A small, fast HTTP/1.1 backend on uvloop + httptools, for `make run` and the bench.

GET /            -> "hello, world"      (12 bytes)
GET /bytes/N     -> N bytes
GET /health      -> "ok"
anything else    -> the request echoed back as JSON (method, path, headers, body length)
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httptools
import uvloop

_CACHE: dict[int, bytes] = {}


def _body(n: int) -> bytes:
    if n not in _CACHE:
        _CACHE[n] = (b"0123456789abcdef" * (n // 16 + 1))[:n]
    return _CACHE[n]


class Handler(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.size = 0

    def connection_made(self, transport):  # type: ignore[no-untyped-def]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.size += len(body)

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        if path == b"/":
            body = b"hello, world"
        elif path.startswith(b"/bytes/"):
            body = _body(int(path[7:]))
        elif path == b"/health":
            body = b"ok"
        else:
            body = json.dumps(
                {
                    "method": self.parser.get_method().decode(),
                    "path": self.url.decode("latin-1"),
                    "headers": self.headers,
                    "body_length": self.size,
                }
            ).encode()
        keep = self.parser.should_keep_alive()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d"
            b"\r\n%s\r\n%s" % (len(body), b"" if keep else b"connection: close\r\n", body)
        )
        if not keep:
            self.transport.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(Handler, args.host, args.port, backlog=1024)
    )
    print(f"backend listening on {args.host}:{args.port}", flush=True)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()
