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

import base64
import contextlib
import gzip
import http.client
import logging
import os
import queue
import random
import select
import signal
import socket
import ssl
import struct
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from hopwire import __version__
from hopwire.http.tls.options import client_context
from hopwire.telemetry import logs, metrics, otlp, otlplogs, otlpmetrics
from hopwire.telemetry.records import ACCESS_LOG, APP_LOG, HEADER, SPANS
from hopwire.throttle import Throttle

log = logging.getLogger("hopwire.exporter")

RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
ERROR_LOG_INTERVAL = 10.0
SUBMIT_WAIT = 1.0  # longest wait of the receiving thread for room in the send queue


SIGNALS = {  # the collector's gRPC method of each signal
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}


class Stats:
    """What one signal's pipeline exported, dropped and failed; the spans keep their own
    families (hopwire_tracing_spans_*), the others are labelled by signal
    (hopwire_otlp_*{signal="metrics"|"accesslog"|"log"})."""

    def __init__(self, signal: str = "traces", unit: str = "spans"):
        self.signal = signal
        self.unit = unit
        self.exported = 0
        self.dropped = 0
        self.errors = 0
        self.errors_logged = Throttle(ERROR_LOG_INTERVAL)

    def _count(self, span_family: str, family: str, n: int) -> None:
        if not metrics.enabled():
            return
        if self.signal == "traces":
            metrics.family(span_family).inc(n)
        else:
            metrics.family(family).labels(self.signal).inc(n)

    def sent(self, items: int) -> None:
        self.exported += items
        self._count("spans_exported", "otlp_exported", items)

    def drop(self, items: int) -> None:
        self.dropped += items
        self._count("spans_dropped", "otlp_dropped", items)

    def failed(self, items: int, reason: str) -> None:
        self.errors += 1
        self.drop(items)
        self._count("export_errors", "otlp_export_errors", 1)
        if self.errors_logged.ready():
            log.warning(
                "%s export failed (%s): %d %s dropped so far, %d exported",
                "span" if self.signal == "traces" else self.signal,
                reason,
                self.dropped,
                self.unit,
                self.exported,
            )


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


class GrpcTransport:
    """OTLP/gRPC with the official exporter's behaviour: metadata headers, TLS or plaintext,
    compression, a deadline per call, retry with exponential backoff on transient codes."""

    def __init__(self, cfg: Any, method: str = SIGNALS["traces"]):
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
            method,
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
    """OTLP/HTTP (protobuf) as the official exporter sends it (headers, TLS, gzip, a deadline
    per request, the proxy the environment names), over one kept-alive connection
    (``http.client``).  ``requests``, which the official exporter uses, cost ~600 µs of CPU
    per export here against ~100 µs for this (bench/NOTES.md)."""

    def __init__(self, cfg: Any):
        url = urllib.parse.urlsplit(cfg.endpoint)
        self.https = url.scheme == "https"
        self.host = url.hostname or ""
        self.port = url.port or (443 if self.https else 80)
        self.target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.headers = {
            "Content-Type": "application/x-protobuf",
            "User-Agent": f"hopwire/{__version__}",
            **cfg.headers,
        }
        self.gzip = cfg.compression == "gzip"
        if self.gzip:
            self.headers["Content-Encoding"] = "gzip"
        self.context: ssl.SSLContext | None = None
        if self.https:  # a ca replaces the system's roots, as requests' verify=<file> does
            tls = cfg.tls
            self.context = client_context(tls) if tls is not None else ssl.create_default_context()
        # HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as requests (the official exporter) reads them
        self.proxy: urllib.parse.SplitResult | None = None
        proxy = urllib.request.getproxies().get(url.scheme)
        if proxy and not urllib.request.proxy_bypass(self.host):
            self.proxy = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            if self.proxy.scheme != "http" or not self.proxy.hostname:
                raise ValueError(
                    f"{url.scheme} proxy {proxy!r}: only an http:// proxy is supported"
                )
        self.proxy_auth: dict[str, str] = {}
        if self.proxy is not None and self.proxy.username:
            user = urllib.parse.unquote(self.proxy.username)
            secret = urllib.parse.unquote(self.proxy.password or "")
            token = base64.b64encode(f"{user}:{secret}".encode()).decode()
            self.proxy_auth = {"Proxy-Authorization": f"Basic {token}"}
        self.endpoint = cfg.endpoint
        self.timeout = cfg.timeout
        self.conn: http.client.HTTPConnection | None = None
        self.used = 0  # requests sent on the open connection

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        """A new connection: to the collector, or through the proxy (a CONNECT tunnel for
        https, the request's absolute URL for http)."""
        proxy = self.proxy
        host, port = (proxy.hostname or "", proxy.port or 80) if proxy else (self.host, self.port)
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self.context)
            if proxy is not None:
                conn.set_tunnel(self.host, self.port, headers=self.proxy_auth)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.used = 0
        return conn

    def send(self, body: bytes, deadline: float) -> tuple[bool, bool, str]:
        data = gzip.compress(body) if self.gzip else body
        target, headers = self.target, self.headers
        if self.proxy is not None and not self.https:  # the absolute URL, to the proxy
            target, headers = self.endpoint, {**headers, **self.proxy_auth}
        while True:
            timeout = max(0.05, min(self.timeout, deadline - time.monotonic()))
            conn = self.conn
            if conn is None:
                conn = self.conn = self.connection(timeout)
            elif conn.sock is not None:
                conn.sock.settimeout(timeout)
            conn.timeout = timeout
            reused = self.used > 0
            try:
                conn.request("POST", target, body=data, headers=headers)
                resp = conn.getresponse()
                resp.read(1 << 16)  # the (small) answer; more than that is not read
            except (OSError, http.client.HTTPException) as exc:  # also a timeout, TLS
                self.drop()
                if reused and isinstance(
                    exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                ):
                    continue  # the collector closed the idle connection: once more, anew
                return False, True, type(exc).__name__
            self.used += 1
            if resp.will_close or not resp.isclosed():
                self.drop()
            if 200 <= resp.status < 300:
                return True, False, ""
            return False, resp.status in RETRYABLE_HTTP, f"HTTP {resp.status}"

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        self.drop()


Done = Callable[[bool], None] | None  # told whether a batch was accepted (metrics' delta)


class Sender(threading.Thread):
    def __init__(self, transport: Any, stats: Stats, export_timeout: float):
        super().__init__(name=f"otlp-sender-{stats.signal}", daemon=True)
        self.transport = transport
        self.stats = stats
        self.export_timeout = export_timeout
        self.batches: queue.Queue[tuple[bytes, int, Done] | None] = queue.Queue(maxsize=8)
        self.stop_by = float("inf")  # set on shutdown: no retry may go past it
        self.in_flight = 0  # items of the batch being sent

    def submit(self, body: bytes, items: int, done: Done = None) -> None:
        """Queue a batch.  When the queue is full the receiving thread waits (up to
        ``SUBMIT_WAIT``) instead of encoding more: the GIL goes to this thread, the socket
        fills, and what is too much is dropped at the workers, before any work is spent on
        it.  A batch that still finds no room is dropped and counted."""
        try:
            self.batches.put_nowait((body, items, done))
            return
        except queue.Full:
            pass
        try:
            self.batches.put((body, items, done), timeout=SUBMIT_WAIT)
        except queue.Full:
            self.stats.failed(items, "too many batches waiting: collector too slow")
            if done is not None:
                done(False)

    def abandon(self) -> int:
        """At the flush deadline: the items of the batch being sent and of those still
        queued, counted dropped (the thread is a daemon: it ends with the process)."""
        items = self.in_flight
        self.in_flight = 0
        while True:
            try:
                item = self.batches.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                items += item[1]
        if items:
            self.stats.drop(items)
        return items

    def run(self) -> None:
        while True:
            item = self.batches.get()
            if item is None:
                return
            body, items, done = item
            self.in_flight = items
            deadline = min(time.monotonic() + self.export_timeout, self.stop_by)
            delay = 1.0
            while True:
                ok, retryable, reason = self.transport.send(body, deadline)
                if not self.in_flight:
                    return  # abandoned at the flush deadline, and counted there
                if ok:
                    self.in_flight = 0
                    self.stats.sent(items)
                    break
                wait = delay * random.uniform(0.8, 1.2)
                if not retryable or time.monotonic() + wait >= deadline:
                    self.in_flight = 0
                    self.stats.failed(items, reason)
                    break
                time.sleep(wait)
                delay = min(delay * 2, 32.0)
            if done is not None:
                done(ok)


def transport_for(otlp_cfg: Any, signal: str) -> Any:
    """The transport an OTLP section names (``http`` or ``grpc``) for ``signal``."""
    if otlp_cfg.http is not None:
        return HttpTransport(otlp_cfg.http)
    return GrpcTransport(otlp_cfg.grpc, SIGNALS[signal])


class Pipeline:
    """One signal's way out: its transport, its sender thread and its counts."""

    def __init__(self, otlp_cfg: Any, signal: str, stats: Stats, export_timeout: float):
        self.stats = stats
        self.sender = Sender(transport_for(otlp_cfg, signal), stats, export_timeout)

    def start(self) -> None:
        self.sender.start()

    def due(self, now: float) -> float:
        """When ``export`` must run next (the spans' batch is the main loop's own)."""
        return float("inf")

    def export(self) -> None:
        """Hand what is pending to the sender."""


def resource_attributes(
    service_name: str, extra: Mapping[str, str], instance_id: str
) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        sdk_version = version("opentelemetry-sdk")
    except PackageNotFoundError:
        sdk_version = "unknown"
    attrs = {
        "service.name": service_name,
        "service.version": __version__,
        "service.instance.id": instance_id,
        "host.name": socket.gethostname(),
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": sdk_version,
    }
    attrs.update(extra)
    return attrs


class LogPipeline(Pipeline):
    """Access-log or application-log records: batched as the SDKs' batch log record
    processor does (OTEL_BLRP_* defaults), exported with their signal's resource."""

    def __init__(self, config: Any, section: Any, signal: str, instance_id: str):
        super().__init__(section, "logs", Stats(signal, "records"), otlplogs.EXPORT_TIMEOUT)
        name, extra = config.resource_of(section)
        self.batch = otlplogs.LogBatch(
            resource_attributes(name, extra, instance_id), ("hopwire", __version__)
        )

    def take_in(self, payload: bytes | memoryview, count: int) -> None:
        """A datagram's records; a batch never grows past MAX_BATCH (a worker's datagram
        holds at most RECORDS_PER_DATAGRAM), nor the queue past MAX_QUEUE."""
        batch = self.batch
        if batch.pending and batch.pending + count > otlplogs.MAX_BATCH:
            self.export()
        if batch.pending + count > otlplogs.MAX_QUEUE:
            self.stats.drop(count)
            return
        batch.extend(payload, count)
        if batch.pending >= otlplogs.MAX_BATCH:
            self.export()

    def due(self, now: float) -> float:
        """When the pending records must go (inf: none pending)."""
        batch = self.batch
        return batch.first_at + otlplogs.SCHEDULE_DELAY if batch.pending else float("inf")

    def export(self) -> None:
        if self.batch.pending:
            body, count = self.batch.take()
            self.sender.submit(body, count)


class MetricsPipeline(Pipeline):
    """The instance's metrics, every pushInterval, by the exporter that holds the push lock;
    one export in flight at a time (a delta is computed from what the collector accepted)."""

    def __init__(self, config: Any, instance_id: str, directory: str, started_ns: int):
        cfg = config.metrics.otlp
        super().__init__(
            cfg, "metrics", Stats("metrics", "data points"), (cfg.http or cfg.grpc).timeout
        )
        name, extra = config.resource_of(cfg)
        self.interval = cfg.pushInterval
        self.push = otlpmetrics.MetricsPush(
            cfg, directory, resource_attributes(name, extra, instance_id), started_ns
        )
        self.next_at = time.monotonic() + self.interval
        self.in_flight = False

    def due(self, now: float) -> float:
        return self.next_at

    def export(self) -> None:
        self.next_at = time.monotonic() + self.interval
        if self.in_flight or not self.push.acquire():
            return  # the last export is still being sent, or another process pushes
        try:
            body, points = self.push.body(time.time_ns())
        except (OSError, ValueError, RuntimeError, struct.error) as exc:
            self.stats.failed(0, f"metrics not read: {exc}")
            return
        self.in_flight = True
        self.sender.submit(body, points, self.done)

    def done(self, ok: bool) -> None:
        if ok:
            self.push.sent()
        self.in_flight = False


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_heap() -> None:
    """Keep the batches' memory in the heap: every export is a new bytes object of up to
    ~0.5 MB (a log batch), which glibc would otherwise give back to the kernel when it is
    freed and fault in again for the next one.  Measured (the access log over OTLP, three
    interleaved runs): the exporter's CPU per record 1.46 -> 1.31 µs over gRPC, 1.17 -> 1.04
    µs over HTTP.  The exporter's memory is bounded (its queues), so what the heap keeps is
    too."""
    import ctypes

    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:  # not glibc: its allocator's own policy
        log.debug("exporter: no mallopt here, the heap is left as the allocator keeps it")
        return
    mallopt(M_MMAP_THRESHOLD, 16 << 20)
    mallopt(M_TRIM_THRESHOLD, 32 << 20)


def run_exporter(
    config: Any,
    path: str,
    instance_id: str,
    index: int,
    flush_deadline: float,
    metrics_dir: str = "",
    started_ns: int = 0,
) -> int:
    """Entry point of the exporter process (after fork): the spans of ``config.tracing``,
    the access-log and application-log records, and (index 0) the instance's metrics."""
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    log_cfg = config.log
    logs.setup(log_cfg.level, log_cfg.filePath, f"exporter-{index}", log_cfg.format)
    keep_heap()
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

    tracing = config.tracing if config.traces_anything() else None
    access_cfg = config.accessLog.otlp if config.accessLog is not None else None
    pipelines: list[Pipeline] = []
    logs_by_kind: dict[int, LogPipeline] = {}
    spans: Pipeline | None = None
    pusher: MetricsPipeline | None = None
    own_logs: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    try:
        if tracing is not None:
            spans = Pipeline(tracing.otlp, "traces", Stats(), tracing.batch.exportTimeout)
            pipelines.append(spans)
        if access_cfg is not None:
            logs_by_kind[ACCESS_LOG] = LogPipeline(config, access_cfg, "accesslog", instance_id)
        if config.log.otlp is not None:
            logs_by_kind[APP_LOG] = LogPipeline(config, config.log.otlp, "log", instance_id)
            otlplogs.install(own_logs.put, f"exporter-{index}")
        pipelines += logs_by_kind.values()
        if config.metrics.otlp is not None and index == 0 and metrics_dir:
            pusher = MetricsPipeline(config, instance_id, metrics_dir, started_ns)
            pipelines.append(pusher)
    except (OSError, ssl.SSLError, ValueError) as exc:
        log.error("exporter cannot start: %s", exc)
        os.unlink(binding)
        return 3
    for pipeline in pipelines:
        pipeline.start()

    # the batch being built: the workers' encoded spans (Encoder.extend), wrapped by take;
    # the workers' encoders redacted the queries (tracing.safeQueryParams)
    encoder: Any = None
    resource = scope = b""
    batch_size = queue_max = 1
    schedule_delay = 5.0
    if tracing is not None:
        encoder = otlp.encoder(tracing.encoder)
        name, extra = config.resource_of(tracing)
        resource, scope = otlp.resource_part(
            resource_attributes(name, extra, instance_id), "hopwire", __version__
        )
        batch_size = tracing.batch.maxExportBatchSize
        queue_max = tracing.batch.maxQueueSize
        schedule_delay = tracing.batch.scheduleDelay
    first_at = 0.0
    last_report = last_sample = time.monotonic()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    os.rename(binding, path)
    others = [p.stats.signal for p in pipelines if p is not spans]
    if encoder is not None:
        log.info(
            "span exporter %d ready on %s (%s encoder%s)",
            index,
            path,
            encoder.name,
            "".join(f", {o}" for o in others),
        )
    else:
        log.info("exporter %d ready on %s (%s)", index, path, ", ".join(others))

    def export_spans() -> None:
        count = encoder.pending if encoder is not None else 0
        if count and spans is not None:
            spans.sender.submit(encoder.take(resource, scope), count)

    def malformed(size: int, why: str) -> None:
        log.warning("malformed datagram (%d bytes) ignored: %s", size, why)

    def take_in(data: memoryview) -> None:
        """A datagram: spans (HEADER, then encoded spans) into the span batch, whose size
        never passes maxExportBatchSize (a worker's datagram holds no more); log records
        into their signal's batch."""
        nonlocal first_at
        size = len(data)
        if size <= HEADER.size:
            malformed(size, "shorter than its header")
            return
        kind, count = HEADER.unpack_from(data)
        if kind in logs_by_kind:
            try:
                logs_by_kind[kind].take_in(data[HEADER.size :], count)
            except ValueError as exc:
                malformed(size, str(exc))
            return
        if kind != SPANS or encoder is None:
            malformed(size, f"kind {kind} is not exported here")
            return
        if not 0 < count <= (size - HEADER.size) // 2:  # an encoded span is 2 bytes at least
            malformed(size, "span count")
            return
        pending = encoder.pending
        if pending and pending + count > batch_size:
            export_spans()
            pending = 0
        if pending + count > queue_max:
            assert spans is not None
            spans.stats.drop(count)
            return
        try:
            encoder.extend(data[HEADER.size :], count)
        except ValueError:
            malformed(size, "not that many encoded spans")
            return
        if not pending:
            first_at = time.monotonic()

    def take_own_logs() -> None:
        batch = logs_by_kind[APP_LOG].batch
        while not own_logs.empty():
            batch.extend(own_logs.get_nowait(), 1)

    while not stopping.is_set():
        now = time.monotonic()
        due = min((p.due(now) for p in pipelines), default=float("inf"))
        if encoder is not None and encoder.pending:
            due = min(due, first_at + schedule_delay)
        try:
            ready, _, _ = select.select([sock], [], [], max(0.0, min(due - now, 0.5)))
        except InterruptedError:
            continue
        if ready:
            for _ in range(256):
                try:
                    size = sock.recv_into(buffer)  # one reused buffer: no 1 MiB allocation
                except BlockingIOError:
                    break
                take_in(view[:size])
                if encoder is not None and encoder.pending >= batch_size:
                    export_spans()
        if APP_LOG in logs_by_kind:
            take_own_logs()
        now = time.monotonic()
        if encoder is not None and encoder.pending and now - first_at >= schedule_delay:
            export_spans()
        for pipeline in pipelines:
            if pipeline.due(now) <= now:
                pipeline.export()
        if now - last_sample >= 2:
            last_sample = now
            metrics.process_sample("exporter")
        if now - last_report >= 60:
            last_report = last_sample = now
            for pipeline in pipelines:
                stats = pipeline.stats
                log.info(
                    "%s: %d %s exported, %d dropped, %d export errors",
                    stats.signal,
                    stats.exported,
                    stats.unit,
                    stats.dropped,
                    stats.errors,
                )

    # Shutdown.  The path goes first, so that a worker still sending learns it (ENOENT) and
    # counts its spans dropped, instead of queueing datagrams that nobody will read; then
    # what is queued in the socket is taken in and everything is sent within the deadline
    # (the metrics once more: the workers' last interval is in the files).  What the
    # deadline leaves unsent is counted dropped and logged.
    deadline = time.monotonic() + flush_deadline
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    while True:
        try:
            size = sock.recv_into(buffer)
        except BlockingIOError:
            break
        take_in(view[:size])
    if APP_LOG in logs_by_kind:
        take_own_logs()
    export_spans()
    for pipeline in pipelines:
        pipeline.export()
    for pipeline in pipelines:
        pipeline.sender.stop_by = deadline
        pipeline.sender.batches.put(None)
    for pipeline in pipelines:
        sender = pipeline.sender
        sender.join(max(0.0, deadline - time.monotonic()))
        if sender.is_alive():
            unsent = sender.abandon()
            log.warning(
                "exporter: flush deadline passed: %d %s unsent, counted dropped",
                unsent,
                pipeline.stats.unit,
            )
    for pipeline in pipelines:
        stats = pipeline.stats
        if pipeline is spans:
            log.info(
                "span exporter %d stopped: %d spans exported, %d dropped, %d export errors",
                index,
                stats.exported,
                stats.dropped,
                stats.errors,
            )
        else:
            log.info(
                "exporter %d stopped: %s: %d %s exported, %d dropped, %d export errors",
                index,
                stats.signal,
                stats.exported,
                stats.unit,
                stats.dropped,
                stats.errors,
            )
    sock.close()
    return 0
