"""A gRPC server for bench/grpc.py: one unary method, ``/bench.B/Echo``, answering every call
with the same 12-byte message (raw bytes: no generated code), on h2c."""

from __future__ import annotations

import argparse
from concurrent import futures
from typing import Any

import grpc

REPLY = b"hello world!"


def echo(request: bytes, ctx: Any) -> bytes:
    return REPLY


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    handler = grpc.method_handlers_generic_handler(
        "bench.B", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
