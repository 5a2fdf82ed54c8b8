"""Real OTLP receivers for the tests: gRPC (grpcio) and HTTP, decoding every request of the
three signals (traces, metrics, logs) with opentelemetry-proto and keeping what arrived."""

from __future__ import annotations

import gzip
import ssl
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.harness import free_port, wait_for


class Spans:
    """Decoded spans with their resource and the metadata/headers of their request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[trace_service_pb2.ExportTraceServiceRequest, dict]] = []
        self.metric_requests: list[tuple[Any, dict]] = []
        self.log_requests: list[tuple[Any, dict]] = []

    def add_metrics(self, request: Any, meta: dict) -> None:
        with self.lock:
            self.metric_requests.append((request, meta))

    def add_logs(self, request: Any, meta: dict) -> None:
        with self.lock:
            self.log_requests.append((request, meta))

    def metrics(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, Metric) of every metric of every export, in order."""
        with self.lock:
            return [
                ({kv.key: attr_value(kv.value) for kv in rm.resource.attributes}, metric)
                for request, _ in self.metric_requests
                for rm in request.resource_metrics
                for sm in rm.scope_metrics
                for metric in sm.metrics
            ]

    def last_metrics(self) -> dict[str, Any]:
        """The metrics of the last export, by name."""
        with self.lock:
            if not self.metric_requests:
                return {}
            request = self.metric_requests[-1][0]
        return {
            m.name: m
            for rm in request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }

    def log_records(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, LogRecord) of every record received, in order."""
        with self.lock:
            return [
                ({kv.key: attr_value(kv.value) for kv in rl.resource.attributes}, record)
                for request, _ in self.log_requests
                for rl in request.resource_logs
                for sl in rl.scope_logs
                for record in sl.log_records
            ]

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


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, spans: Spans):
        self.store = spans

    def Export(self, request: Any, context: Any) -> Any:
        self.store.add_metrics(request, dict(context.invocation_metadata()))
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, spans: Spans):
        self.store = spans

    def Export(self, request: Any, context: Any) -> Any:
        self.store.add_logs(request, dict(context.invocation_metadata()))
        return logs_service_pb2.ExportLogsServiceResponse()


class GrpcReceiver(Spans):
    def __init__(self, credentials: grpc.ServerCredentials | None = None):
        super().__init__()
        self.port = free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(self), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _MetricsService(self), self.server
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsService(self), self.server)
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
    """OTLP/HTTP: one connection per request (HTTP/1.0 answers), or kept alive (``keep_alive``);
    ``idle_close`` closes each connection after its answer without saying so, as a collector
    whose idle timeout passed does; ``tls``: HTTPS with that context.  ``connections`` counts
    the connections accepted."""

    def __init__(
        self, keep_alive: bool = False, idle_close: bool = False, tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__()
        store = self
        self.connections = 0
        self.peer_certificates: list[Any] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def handle(self) -> None:
                with store.lock:
                    store.connections += 1
                    if tls is not None:
                        store.peer_certificates.append(self.connection.getpeercert())
                super().handle()

            def do_POST(self) -> None:
                if self.headers.get("content-length") is not None:
                    body = self.rfile.read(int(self.headers["content-length"]))
                else:  # chunked, as Go's client (Traefik) sends
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    body = b"".join(parts)
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                meta = {k.lower(): v for k, v in self.headers.items()}
                meta[":path"] = self.path
                if self.path.endswith("/v1/metrics"):
                    store.add_metrics(
                        metrics_service_pb2.ExportMetricsServiceRequest.FromString(body), meta
                    )
                elif self.path.endswith("/v1/logs"):
                    store.add_logs(logs_service_pb2.ExportLogsServiceRequest.FromString(body), meta)
                else:
                    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    store.add(request, meta)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()
                if idle_close:
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self.port}/v1/traces"
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
