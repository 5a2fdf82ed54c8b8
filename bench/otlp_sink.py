"""A minimal OTLP/gRPC receiver for the bench: accepts every export of the three signals,
counts requests and bytes, decodes nothing (its CPU shares the machine with what is measured)."""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures

import grpc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
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
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(0)
    print(f"otlp sink: {stats['requests']} requests, {stats['bytes']} bytes", flush=True)


if __name__ == "__main__":
    main()
