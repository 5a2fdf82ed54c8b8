"""A minimal OTLP receiver for the bench (gRPC, and HTTP with --http-port): accepts every
export of the three signals, counts requests and bytes, decodes nothing (its CPU shares the
machine with what is measured)."""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc


def http_sink(port: int, stats: dict[str, int]) -> None:
    """OTLP/HTTP on ``port``: every POST answered 200, connections kept alive."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            size = int(self.headers["content-length"])
            self.rfile.read(size)
            stats["requests"] += 1
            stats["bytes"] += size
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--http-port", type=int, default=0, help="also OTLP/HTTP (kept alive)")
    args = ap.parse_args()
    stats = {"requests": 0, "bytes": 0}

    def export(request: bytes, context: grpc.ServicerContext) -> bytes:
        stats["requests"] += 1
        stats["bytes"] += len(request)
        return b""

    handlers = [
        grpc.method_handlers_generic_handler(
            f"opentelemetry.proto.collector.{signal}.v1.{service}Service",
            {"Export": grpc.unary_unary_rpc_method_handler(export)},
        )
        for signal, service in (("trace", "Trace"), ("metrics", "Metrics"), ("logs", "Logs"))
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(tuple(handlers))
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    if args.http_port:
        http_sink(args.http_port, stats)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(0)
    print(f"otlp sink: {stats['requests']} requests, {stats['bytes']} bytes", flush=True)


if __name__ == "__main__":
    main()
