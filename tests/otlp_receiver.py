"""Real OTLP receivers for the tests: gRPC (grpcio) and HTTP, decoding every request with
opentelemetry-proto and keeping what arrived."""

from __future__ import annotations

import gzip
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.harness import free_port, wait_for


class Spans:
    """Decoded spans with their resource and the metadata/headers of their request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[trace_service_pb2.ExportTraceServiceRequest, dict]] = []

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest, meta: dict) -> None:
        with self.lock:
            self.requests.append((request, meta))

    def spans(self) -> list[Any]:
        out = []
        with self.lock:
            for request, _ in self.requests:
                for rs in request.resource_spans:
                    for ss in rs.scope_spans:
                        out.extend(ss.spans)
        return out

    def resources(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {kv.key: attr_value(kv.value) for kv in rs.resource.attributes}
                for request, _ in self.requests
                for rs in request.resource_spans
            ]

    def wait(self, count: int, timeout: float = 15.0) -> list[Any]:
        wait_for(lambda: len(self.spans()) >= count, timeout=timeout)
        return self.spans()


def attr_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attrs(span: Any) -> dict[str, Any]:
    return {kv.key: attr_value(kv.value) for kv in span.attributes}


class _Service(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, spans: Spans):
        self.store = spans

    def Export(self, request: Any, context: Any) -> Any:
        self.store.add(request, dict(context.invocation_metadata()))
        return trace_service_pb2.ExportTraceServiceResponse()


class GrpcReceiver(Spans):
    def __init__(self, credentials: grpc.ServerCredentials | None = None):
        super().__init__()
        self.port = free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(self), self.server)
        address = f"127.0.0.1:{self.port}"
        if credentials is None:
            self.server.add_insecure_port(address)
        else:
            self.server.add_secure_port(address, credentials)
        self.server.start()
        self.endpoint = address

    def close(self) -> None:
        self.server.stop(0).wait()


class HttpReceiver(Spans):
    def __init__(self) -> None:
        super().__init__()
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                store.add(request, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
