"""The request path in one process, no sockets: for A/B of Python-level changes.

A real ``Downstream`` and ``Upstream`` (httptools parsers, the routing table, the exchange, the
metrics meter of a default config) exchange bytes through fake transports; the backend's fake
transport answers every request head at once with a fixed response.  What is measured is
hopwire's own work per request, without the loop and the syscalls (``bench/run.py`` measures
those).  Stable enough for ``valgrind --tool=callgrind`` and quick enough for a few million
requests:

    python bench/callpath.py --requests 200000            # ns per request, best of --repeat
    python bench/callpath.py --profile                     # cProfile of one run, top 25
    python bench/callpath.py --tracing 1.0 --parent sampled   # the worker's tracing cost
    PYTHONPATH=/tmp/old/server python bench/callpath.py    # another tree (git archive REV)
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import gc
import marshal
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.fuzz.world
REQUEST = b"GET /12B HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 01 Dec 2026 09:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 12\r\n"
    b"Last-Modified: Tue, 01 Dec 2026 08:00:00 GMT\r\nConnection: keep-alive\r\n"
    b'ETag: "1-c"\r\nAccept-Ranges: bytes\r\n\r\nxxxxxxxxxxxx'
)


class Transport:
    """Just what the protocols call; ``sink`` receives what is written."""

    def __init__(self, peer: tuple[str, int], sink: Any = None):
        self.peer = peer
        self.sink = sink
        self.written = 0

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.sink is not None:
            self.sink(data)

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.written += len(part)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False


PARENTS = {
    "none": b"",
    "sampled": b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n",
    "unsampled": b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00\r\n",
}


class Sink:
    """Takes spans as the worker's SpanSink would: encoded in the worker (``encoder``,
    ``limit``) and drained per datagram, or in trees before the worker encoded (``buf``,
    ``add``) marshalled per datagram; the send itself is left out."""

    def __init__(self) -> None:
        self.buf: list[Any] = []
        self.records = 0
        self.bytes = 0
        self.encoder: Any = None
        try:
            from hopwire.telemetry import otlp

            self.encoder = otlp.encoder("c")
        except ImportError:  # a tree before the compiled encoder
            pass
        self.limit = 256

    def add(self, record: Any) -> None:  # what trees before 4822e57 call
        self.buf.append(record)
        if len(self.buf) >= 64:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.records += len(self.buf)
            self.bytes += len(marshal.dumps(self.buf))
            self.buf = []
        encoder = self.encoder
        if encoder is not None and encoder.pending:
            self.records += encoder.pending
            self.bytes += len(encoder.drain())


MIDDLEWARES = {
    "none": [],
    "headers+strip": [
        "--http.middlewares.hdr.headers.customRequestHeaders.X-One=1",
        "--http.middlewares.hdr.headers.customRequestHeaders.X-Two=2",
        "--http.middlewares.hdr.headers.stsSeconds=31536000",
        "--http.middlewares.hdr.headers.forceSTSHeader=true",
        "--http.middlewares.hdr.headers.contentTypeNosniff=true",
        "--http.middlewares.strip.stripPrefix.prefixes=/api",
    ],
    "ratelimit": [
        "--http.middlewares.limit.rateLimit.average=1000000000",
        "--http.middlewares.limit.rateLimit.burst=1000000000",
    ],
}


def stages_of(kind: str) -> Any:
    """The compiled stages of one MIDDLEWARES setting (shared buckets made here)."""
    if kind == "none":
        return ((), None)
    from hopwire.middlewares import compile_stages, limits

    try:
        from hopwire.checks import load
    except ImportError:  # an older server tree (bench/instructions.py --ref)
        from hopwire.config import load  # type: ignore[no-redef]

    flags = MIDDLEWARES[kind]
    config = load(None, flags, {})
    names = sorted(config.http.middlewares)
    return compile_stages(names, config.http.middlewares, limits.shared_state(config))


# what the worker does besides the default metrics (the access logs write to /dev/null; over
# OTLP they go to a socket nobody reads, the worker's work all the same)
TELEMETRY = {
    "metrics": (),
    "metrics+otlp": ("--metrics.otlp=true",),
    "accesslog": ("--accessLog.filePath=/dev/null",),
    "accesslog otlp": ("--accessLog.otlp=true",),
}


def build(
    rate: float | None = None, middlewares: str = "none", flags: Any = (), keep: bool = False
) -> Any:
    from tests.fuzz.world import catch_all

    from hopwire.http.downstream import Downstream
    from hopwire.http.upstream import Upstream
    from hopwire.telemetry.tracing import Tracer

    tracer = (
        (
            Tracer("all", rate, Sink(), keep_errors=True) if keep else Tracer("all", rate, Sink())  # type: ignore[arg-type]
        )
        if rate is not None
        else None
    )
    ep, worker, service = catch_all(tracer, stages_of(middlewares), tuple(flags))
    if worker.access is not None and worker.access.sink is not None:
        import socket

        reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = f"/tmp/hopwire-callpath-{os.getpid()}.sock"
        reader.bind(path)
        atexit.register(os.unlink, path)
        worker.access.sink.paths = [path]
        worker.access.sink.reader = reader  # kept open, never read: sends fail when full
    down = Downstream(ep)
    down.connection_made(Transport(("127.0.0.1", 40000)))
    pool = service.servers[0].pool
    up = Upstream(pool)
    up.connection_made(Transport(("127.0.0.1", 9)))
    pool.put(up, worker.clock.now)
    return down, up


def run(down: Any, up: Any, n: int, request: bytes = REQUEST) -> float:
    """n requests: the client's bytes, then the backend's answer (as a loop would deliver)."""
    feed, answer = down.data_received, up.data_received
    started = time.perf_counter()
    for _ in range(n):
        feed(request)
        answer(RESPONSE)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--tracing", type=float, default=None, help="a tracer at this sample rate")
    ap.add_argument(
        "--keep", action="store_true", help="the tracer keeps unsampled errors (tracing.keep)"
    )
    ap.add_argument("--parent", choices=PARENTS, default="none", help="inbound traceparent")
    ap.add_argument("--middlewares", choices=MIDDLEWARES, default="none")
    ap.add_argument("--telemetry", choices=TELEMETRY, default="metrics")
    args = ap.parse_args()
    down, up = build(args.tracing, args.middlewares, TELEMETRY[args.telemetry], args.keep)
    request = REQUEST[:-2] + PARENTS[args.parent] + b"\r\n"
    if args.middlewares == "headers+strip":
        request = request.replace(b"GET /12B", b"GET /api/12B")
    run(down, up, 1000, request)  # warm
    # what start-up left for the collector is collected now and frozen: a collection that
    # falls inside one run and not in another would move instruction counts by 10k a request
    gc.collect()
    gc.freeze()
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(down, up, args.requests, request)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    best = min(run(down, up, args.requests, request) for _ in range(args.repeat))
    served = down.served
    assert served >= args.requests, served
    print(f"{best / args.requests * 1e9:.0f} ns per request (best of {args.repeat})")


if __name__ == "__main__":
    main()
