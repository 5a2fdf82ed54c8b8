"""An HTTP/1.1 backend for bench/grpc_cost.py as slow as its grpcio server: every request
costs it ~150 µs of Python work before it answers 16 KiB, so that it, too, answers a few
thousand requests a second and hopwire wakes for nearly every answer.  It puts the gRPC
call behind grpcio beside an HTTP/1.1 request in the same regime."""

from __future__ import annotations

import argparse
import asyncio
import time

BODY = b"x" * 16 * 1024
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY
)
WORK = 150e-6  # seconds of CPU per request


class Slow(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while (end := buf.find(b"\r\n\r\n")) >= 0:  # bodiless GETs only
            buf = buf[end + 4 :]
            until = time.perf_counter() + WORK
            while time.perf_counter() < until:
                pass
            self.transport.write(ANSWER)
        self.buf = buf


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Slow, "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    asyncio.run(serve(ap.parse_args().port))


if __name__ == "__main__":
    main()
