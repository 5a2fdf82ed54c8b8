"""The span exporter process: receives spans from every worker, batches, exports OTLP.

Workers send their sampled requests' spans already encoded (``tracing.SpanSink``): a
datagram is a span count and that many ``ScopeSpans.spans`` entries, which the encoder checks
and adds to its batch (``Encoder.extend``) and wraps in the resource and scope (``take``).

The master forks it (grpcio is imported here, after fork, and in no process that forks later).
The main thread receives datagrams and batches their spans; a sender thread exports finished
batches.
Everything is bounded: the span queue (``batch.maxQueueSize``) and the batches waiting to be
sent.  When the sender is behind, the main thread waits for it a little (``Sender.submit``)
rather than take in what it could not send: the socket fills and the workers drop and count
what is too much.  Export errors are logged at most once per interval.

On SIGTERM it stops receiving, sends what it holds within ``deadline`` seconds and exits 0.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import queue
import random
import select
import signal
import socket
import ssl
import threading
import time
from typing import Any

from hopwire import __version__
from hopwire.telemetry import logs, metrics, otlp
from hopwire.telemetry.records import HEADER

log = logging.getLogger("hopwire.exporter")

RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
ERROR_LOG_INTERVAL = 10.0
SUBMIT_WAIT = 1.0  # longest wait of the receiving thread for room in the send queue


class Stats:
    def __init__(self) -> None:
        self.exported = 0
        self.dropped = 0
        self.errors = 0
        self.last_error_log = 0.0

    def sent(self, spans: int) -> None:
        self.exported += spans
        if metrics.enabled():
            metrics.family("spans_exported").inc(spans)

    def drop(self, spans: int) -> None:
        self.dropped += spans
        if metrics.enabled():
            metrics.family("spans_dropped").inc(spans)

    def failed(self, spans: int, reason: str) -> None:
        self.errors += 1
        self.drop(spans)
        if metrics.enabled():
            metrics.family("export_errors").inc()
        now = time.monotonic()
        if now - self.last_error_log >= ERROR_LOG_INTERVAL:
            self.last_error_log = now
            log.warning(
                "span export failed (%s): %d spans dropped so far, %d exported",
                reason,
                self.dropped,
                self.exported,
            )


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


class GrpcTransport:
    """OTLP/gRPC with the official exporter's behaviour: metadata headers, TLS or plaintext,
    compression, a deadline per call, retry with exponential backoff on transient codes."""

    def __init__(self, cfg: Any):
        import grpc  # only ever imported in the exporter process (DESIGN §3)

        self.grpc = grpc
        tls = cfg.tls
        options = [("grpc.primary_user_agent", f"hopwire/{__version__}")]
        if cfg.insecure:
            channel = grpc.insecure_channel(cfg.endpoint, options=options)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(tls.ca) if tls and tls.ca else None,
                private_key=_read(tls.key) if tls and tls.key else None,
                certificate_chain=_read(tls.cert) if tls and tls.cert else None,
            )
            channel = grpc.secure_channel(cfg.endpoint, creds, options=options)
        self.channel = channel
        self.call = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=None,
        )
        self.metadata = tuple((k.lower(), v) for k, v in cfg.headers.items())
        self.compression = grpc.Compression.Gzip if cfg.compression == "gzip" else None
        self.timeout = cfg.timeout
        self.retryable = {
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.ABORTED,
            grpc.StatusCode.OUT_OF_RANGE,
            grpc.StatusCode.CANCELLED,
            grpc.StatusCode.DATA_LOSS,
        }

    def send(self, body: bytes, deadline: float) -> tuple[bool, bool, str]:
        """(ok, retryable, reason)."""
        timeout = max(0.05, min(self.timeout, deadline - time.monotonic()))
        try:
            self.call(body, timeout=timeout, metadata=self.metadata, compression=self.compression)
        except self.grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            return False, code in self.retryable, f"gRPC {getattr(code, 'name', code)}"
        return True, False, ""

    def close(self) -> None:
        self.channel.close()


class HttpTransport:
    """OTLP/HTTP (protobuf) with the official exporter's behaviour."""

    def __init__(self, cfg: Any):
        import requests

        self.requests = requests
        self.session = requests.Session()
        self.session.headers.update(
            {
                "Content-Type": "application/x-protobuf",
                "User-Agent": f"hopwire/{__version__}",
                **cfg.headers,
            }
        )
        tls = cfg.tls
        if tls is not None:
            self.session.verify = False if tls.insecureSkipVerify else (tls.ca or True)
            if tls.cert:
                self.session.cert = (tls.cert, tls.key)
        self.gzip = cfg.compression == "gzip"
        if self.gzip:
            self.session.headers["Content-Encoding"] = "gzip"
        self.endpoint = cfg.endpoint
        self.timeout = cfg.timeout

    def send(self, body: bytes, deadline: float) -> tuple[bool, bool, str]:
        timeout = max(0.05, min(self.timeout, deadline - time.monotonic()))
        try:
            resp = self.session.post(
                self.endpoint, data=gzip.compress(body) if self.gzip else body, timeout=timeout
            )
        except self.requests.RequestException as exc:
            return False, True, type(exc).__name__
        if 200 <= resp.status_code < 300:
            return True, False, ""
        return False, resp.status_code in RETRYABLE_HTTP, f"HTTP {resp.status_code}"

    def close(self) -> None:
        self.session.close()


class Sender(threading.Thread):
    def __init__(self, transport: Any, stats: Stats, export_timeout: float):
        super().__init__(name="otlp-sender", daemon=True)
        self.transport = transport
        self.stats = stats
        self.export_timeout = export_timeout
        self.batches: queue.Queue[tuple[bytes, int] | None] = queue.Queue(maxsize=8)
        self.stop_by = float("inf")  # set on shutdown: no retry may go past it
        self.in_flight = 0  # spans of the batch being sent

    def submit(self, body: bytes, spans: int) -> None:
        """Queue a batch.  When the queue is full the receiving thread waits (up to
        ``SUBMIT_WAIT``) instead of encoding more: the GIL goes to this thread, the socket
        fills, and what is too much is dropped at the workers, before any work is spent on
        it.  A batch that still finds no room is dropped and counted."""
        try:
            self.batches.put_nowait((body, spans))
            return
        except queue.Full:
            pass
        try:
            self.batches.put((body, spans), timeout=SUBMIT_WAIT)
        except queue.Full:
            self.stats.failed(spans, "too many batches waiting: collector too slow")

    def abandon(self) -> int:
        """At the flush deadline: the spans of the batch being sent and of those still
        queued, counted dropped (the thread is a daemon: it ends with the process)."""
        spans = self.in_flight
        self.in_flight = 0
        while True:
            try:
                item = self.batches.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                spans += item[1]
        if spans:
            self.stats.drop(spans)
        return spans

    def run(self) -> None:
        while True:
            item = self.batches.get()
            if item is None:
                return
            body, spans = item
            self.in_flight = spans
            deadline = min(time.monotonic() + self.export_timeout, self.stop_by)
            delay = 1.0
            while True:
                ok, retryable, reason = self.transport.send(body, deadline)
                if not self.in_flight:
                    return  # abandoned at the flush deadline, and counted there
                if ok:
                    self.in_flight = 0
                    self.stats.sent(spans)
                    break
                wait = delay * random.uniform(0.8, 1.2)
                if not retryable or time.monotonic() + wait >= deadline:
                    self.in_flight = 0
                    self.stats.failed(spans, reason)
                    break
                time.sleep(wait)
                delay = min(delay * 2, 32.0)


def resource_attributes(cfg: Any, instance_id: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        sdk_version = version("opentelemetry-sdk")
    except PackageNotFoundError:
        sdk_version = "unknown"
    attrs = {
        "service.name": cfg.serviceName,
        "service.version": __version__,
        "service.instance.id": instance_id,
        "host.name": socket.gethostname(),
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": sdk_version,
    }
    attrs.update(cfg.resourceAttributes)
    return attrs


def run_exporter(
    cfg: Any, log_cfg: Any, path: str, instance_id: str, index: int, flush_deadline: float
) -> int:
    """Entry point of the exporter process (after fork)."""
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    logs.setup(log_cfg.level, log_cfg.filePath, f"exporter-{index}", log_cfg.format)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    signal.signal(signal.SIGUSR1, lambda *_: logs.reopen())

    # Bound under a temporary name and renamed into place once this process receives: the
    # master starts the workers only when the path exists (Arbiter.wait_exporters), so no
    # worker sends spans into a path nobody reads.
    binding = f"{path}.{os.getpid()}"
    for stale in (path, binding):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(binding)
    sock.setblocking(False)

    otlp_cfg = cfg.otlp
    try:
        transport: Any = (
            HttpTransport(otlp_cfg.http)
            if otlp_cfg.http is not None
            else GrpcTransport(otlp_cfg.grpc)
        )
    except (OSError, ssl.SSLError, ValueError) as exc:
        log.error("span exporter cannot start: %s", exc)
        os.unlink(binding)
        return 3
    batch_cfg = cfg.batch
    stats = Stats()
    sender = Sender(transport, stats, batch_cfg.exportTimeout)
    sender.start()
    # the batch being built: the workers' encoded spans (Encoder.extend), wrapped by take;
    # the workers' encoders redacted the queries (tracing.safeQueryParams)
    encoder = otlp.encoder(cfg.encoder)
    extend = encoder.extend
    resource, scope = otlp.resource_part(
        resource_attributes(cfg, instance_id), "hopwire", __version__
    )
    batch_size = batch_cfg.maxExportBatchSize
    queue_max = batch_cfg.maxQueueSize
    first_at = 0.0
    last_report = last_sample = time.monotonic()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    os.rename(binding, path)
    log.info("span exporter %d ready on %s (%s encoder)", index, path, encoder.name)

    def export_pending() -> None:
        spans = encoder.pending
        if spans:
            sender.submit(encoder.take(resource, scope), spans)

    def take_in(data: memoryview) -> None:
        """A datagram's spans (HEADER, then encoded spans) into the batch; a batch that would
        grow past maxExportBatchSize is sent first (a worker's datagram holds no more)."""
        nonlocal first_at
        size = len(data)
        (count,) = HEADER.unpack_from(data) if size > HEADER.size else (0,)
        if not 0 < count <= (size - HEADER.size) // 2:  # an encoded span is 2 bytes at least
            log.warning("malformed span datagram (%d bytes) ignored", size)
            return
        pending = encoder.pending
        if pending and pending + count > batch_size:
            export_pending()
            pending = 0
        if pending + count > queue_max:
            stats.drop(count)
            return
        try:
            extend(data[HEADER.size :], count)
        except ValueError:
            log.warning("malformed span datagram (%d bytes) ignored", size)
            return
        if not pending:
            first_at = time.monotonic()

    while not stopping.is_set():
        timeout = (
            batch_cfg.scheduleDelay
            if not encoder.pending
            else max(0.0, first_at + batch_cfg.scheduleDelay - time.monotonic())
        )
        try:
            ready, _, _ = select.select([sock], [], [], min(timeout, 0.5))
        except InterruptedError:
            continue
        if ready:
            for _ in range(256):
                try:
                    size = sock.recv_into(buffer)  # one reused buffer: no 1 MiB allocation
                except BlockingIOError:
                    break
                take_in(view[:size])
                if encoder.pending >= batch_size:
                    export_pending()
        if encoder.pending and time.monotonic() - first_at >= batch_cfg.scheduleDelay:
            export_pending()
        if time.monotonic() - last_sample >= 2:
            last_sample = time.monotonic()
            metrics.process_sample("exporter")
        if time.monotonic() - last_report >= 60:
            last_report = last_sample = time.monotonic()
            log.info(
                "spans: %d exported, %d dropped, %d export errors",
                stats.exported,
                stats.dropped,
                stats.errors,
            )

    # Shutdown.  The path goes first, so that a worker still sending learns it (ENOENT) and
    # counts its spans dropped, instead of queueing datagrams that nobody will read; then
    # what is queued in the socket is taken in and everything is sent within the deadline.
    # What the deadline leaves unsent is counted dropped and logged.
    deadline = time.monotonic() + flush_deadline
    sender.stop_by = deadline
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    while True:
        try:
            size = sock.recv_into(buffer)
        except BlockingIOError:
            break
        take_in(view[:size])
    export_pending()
    sender.batches.put(None)
    sender.join(max(0.0, deadline - time.monotonic()))
    if sender.is_alive():
        unsent = sender.abandon()
        log.warning(
            "span exporter: flush deadline passed: %d spans unsent, counted dropped", unsent
        )
    log.info(
        "span exporter %d stopped: %d spans exported, %d dropped, %d export errors",
        index,
        stats.exported,
        stats.dropped,
        stats.errors,
    )
    sock.close()
    return 0
