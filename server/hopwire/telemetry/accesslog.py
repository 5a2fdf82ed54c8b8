"""The access log: one line per request, with Traefik's field names, written off the request path.

A router's ``AccessLogger`` observer appends one tuple of raw values per request; the worker's
tick (or a full buffer of ``bufferingSize`` lines) formats them — JSON lines by orjson, or the
common log format — and writes them in one call.  Filters, field modes and header modes are
resolved when the config generation is built.  A write error (full disk, vanished directory)
drops that batch, is counted, and is logged at most once per interval; requests never wait for
the log.  SIGUSR1 reopens the file (logrotate).
"""

from __future__ import annotations

import logging
import sys
import time
from random import random
from typing import Any

import orjson

from hopwire.telemetry.otlplogs import LogSink
from hopwire.telemetry.records import ACCESS_LOG, AccessRecord

WALL = AccessRecord._fields.index("wall")
HEADERS = AccessRecord._fields.index("headers")
COMMON = AccessRecord._fields.index("common")
TRACE_ID = AccessRecord._fields.index("trace_id")
SPAN_ID = AccessRecord._fields.index("span_id")

log = logging.getLogger("hopwire.accesslog")

FIELDS = (
    "StartUTC",
    "Duration",
    "entryPointName",
    "RouterName",
    "ServiceName",
    "ServiceURL",
    "ClientHost",
    "ClientPort",
    "RequestMethod",
    "RequestPath",
    "RequestProtocol",
    "RequestHost",
    "RequestContentSize",
    "DownstreamStatus",
    "DownstreamContentSize",
    "OriginStatus",
    "OriginDuration",
    "Overhead",
    "RetryAttempts",
    "trace_id",
    "span_id",
    "RequestScheme",
    "TLSVersion",
    "TLSCipher",
    "TLSClientSubject",
)
ERROR_INTERVAL = 10.0
BATCH = 256
MAX_PENDING = 100_000  # lines held while the file cannot be written; more are dropped


class Writer:
    """The worker's access-log file and its pending lines."""

    def __init__(self, cfg: Any, worker: Any):
        self.cfg = cfg
        self.worker = worker
        self.path = cfg.filePath
        self.common = cfg.format == "common"
        # a batch is written every tick or every `limit` lines; small batches keep the records
        # young for the garbage collector (measured: holding a whole tick's lines cost 2x)
        self.limit = cfg.bufferingSize or BATCH
        self.pending: list[tuple[Any, ...]] = []
        self.fh: Any = None
        self.last_error = 0.0
        fields = cfg.fields
        self.fields = tuple(f for f in FIELDS if fields.names.get(f, fields.defaultMode) == "keep")
        headers = fields.headers
        self.header_modes = {k.lower(): v for k, v in headers.names.items()}
        self.header_default = headers.defaultMode
        self.header_names = {k.lower(): k for k in headers.names}
        self.want_headers = headers.defaultMode != "drop" or any(
            mode != "drop" for mode in headers.names.values()
        )
        self.all_fields = self.fields == FIELDS
        self.kept = [FIELDS.index(f) for f in self.fields]
        self.second = -1
        self.prefix = ""
        # accessLog.otlp: records to the exporter as LogRecords; the file too with dualOutput
        otlp = cfg.otlp
        self.file_out = otlp is None or cfg.dualOutput
        self.sink: LogSink | None = None
        if otlp is not None:
            self.sink = LogSink(worker.span_paths, ACCESS_LOG, self.otlp_dropped)
            self.only_sampled = otlp.onlySampled
            self.rate = otlp.sampleRate
        filters = cfg.filters
        self.filter = filters is not None
        self.ranges: list[tuple[int, int]] = []
        if filters is not None:
            for item in filters.statusCodes:
                low, _, high = item.partition("-")
                self.ranges.append((int(low), int(high or low)))
            self.retried = filters.retryAttempts
            self.min_duration = filters.minDuration
        self.open()

    def otlp_dropped(self, records: int) -> None:
        self.worker.counters["otlp_dropped_accesslog"] += records

    def open(self) -> None:
        if not self.file_out:
            return
        if not self.path:
            self.fh = sys.stdout.buffer
            return
        try:
            self.fh = open(self.path, "ab")  # noqa: SIM115 (kept open; reopened on SIGUSR1)
        except OSError as exc:
            self.fh = None
            self.error(exc)

    def reopen(self) -> None:
        self.flush()
        if self.path and self.fh is not None:
            self.fh.close()
        self.open()

    def error(self, exc: OSError) -> None:
        self.worker.counters["accesslog_errors"] += 1
        now = time.monotonic()
        if now - self.last_error >= ERROR_INTERVAL:
            self.last_error = now
            log.error(
                "access log %s cannot be written (%s); lines are dropped until it can",
                self.path or "<stdout>",
                exc.strerror or exc,
            )

    def add(self, line: tuple[Any, ...]) -> None:  # a raw record, formatted at flush
        pending = self.pending
        if len(pending) >= MAX_PENDING:
            self.worker.counters["accesslog_dropped"] += 1
            return
        pending.append(line)
        if self.limit and len(pending) >= self.limit:
            self.flush()

    def keep(self, status: int, retries: int, duration: float) -> bool:
        if not self.filter:
            return True
        if any(low <= status <= high for low, high in self.ranges):
            return True
        if self.retried and retries > 0:
            return True
        return bool(self.min_duration) and duration > self.min_duration

    def flush(self) -> None:
        if not self.pending:
            return
        lines, self.pending = self.pending, []
        if self.sink is not None:
            data = self.to_otlp(lines)
            if not self.file_out:
                return
        else:
            line = self.common_line if self.common else self.json_line
            data = b"".join([line(record) for record in lines])
        if self.fh is None:
            self.open()
            if self.fh is None:
                self.worker.counters["accesslog_dropped"] += len(lines)
                return
        try:
            self.fh.write(data)
            self.fh.flush()
        except OSError as exc:
            self.worker.counters["accesslog_dropped"] += len(lines)
            self.error(exc)

    def start_utc(self, wall: float) -> str:
        second = int(wall)
        if second != self.second:  # strftime once a second, not once a line
            self.second = second
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self.prefix}.{int((wall - second) * 1e6):06d}Z"

    def values(self, r: tuple[Any, ...]) -> tuple[Any, ...]:
        """The FIELDS values of an AccessRecord (hopwire.telemetry.records)."""
        (
            wall,
            duration,
            entrypoint,
            router,
            service,
            service_url,
            client_host,
            client_port,
            method,
            path_query,
            http10,
            host,
            request_size,
            status,
            response_size,
            origin_status,
            origin_duration,
            retries,
            trace_id,
            span_id,
            _,
            _,
            scheme,
            tls,
        ) = r
        nanos = int(duration * 1e9)
        origin = int(origin_duration * 1e9) if origin_duration is not None else None
        return (
            self.start_utc(wall),
            nanos,
            entrypoint,
            router or None,
            service or None,
            service_url,
            client_host,
            client_port,
            method,
            path_query.decode("latin-1"),
            "HTTP/1.0" if http10 else "HTTP/1.1",
            host,
            request_size,
            status,
            response_size,
            origin_status,
            origin,
            nanos - (origin or 0),
            retries,
            trace_id.decode() if trace_id else None,
            span_id.decode() if span_id else None,
            scheme,
            *(tls or (None, None, None)),
        )

    def to_otlp(self, records: list[tuple[Any, ...]]) -> bytes:
        """Hand the records to the exporter as log items (body: the line as the file has it,
        attributes: its fields); the file's lines, when it is written too."""
        sink = self.sink
        assert sink is not None
        out = []
        only_sampled, rate, common = self.only_sampled, self.rate, self.common
        for record in records:
            doc = self.doc(record)
            line = self.common_line(record) if common else orjson.dumps(doc)
            out.append(line)
            trace_id = record[TRACE_ID]
            if (only_sampled and trace_id is None) or (rate < 1.0 and random() >= rate):
                continue
            sink.add(
                [  # a LogItem (hopwire.telemetry.records)
                    int(record[WALL] * 1e9),
                    9,
                    "INFO",
                    line.decode("utf-8", "replace").rstrip("\n"),
                    doc,
                    trace_id.decode() if trace_id else None,
                    record[SPAN_ID].decode() if trace_id else None,
                ]
            )
        sink.flush()
        if not self.file_out:
            return b""
        return b"".join(out) if common else b"\n".join(out) + b"\n"

    def json_line(self, record: tuple[Any, ...]) -> bytes:
        return orjson.dumps(self.doc(record), option=orjson.OPT_APPEND_NEWLINE)

    def doc(self, record: tuple[Any, ...]) -> dict[str, Any]:
        """The fields of a record as the JSON line has them."""
        values = self.values(record)
        if self.all_fields:
            doc = dict(zip(FIELDS, values, strict=True))
            if values[19] is None:
                del doc["trace_id"], doc["span_id"]
            if values[22] is None:  # not a TLS connection
                del doc["TLSVersion"], doc["TLSCipher"], doc["TLSClientSubject"]
            elif values[24] is None:  # no client certificate
                del doc["TLSClientSubject"]
        else:
            doc = {FIELDS[i]: values[i] for i in self.kept if values[i] is not None}
        headers = record[HEADERS]
        if headers:
            for name, value in headers:
                doc["request_" + name] = value
        return doc

    def common_line(self, record: tuple[Any, ...]) -> bytes:
        v = self.values(record)
        ua, referer = record[COMMON] or ("-", "-")
        when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(record[WALL]))
        return (
            f'{v[6]} - - [{when}] "{v[8]} {v[9]} {v[10]}" {v[13]} {v[14]} "{referer}" '
            f'"{ua}" {v[18]} "{v[3] or "-"}" "{v[5] or "-"}" {int(v[1] / 1e6)}ms\n'
        ).encode()


class AccessLogger:
    """The access-log observer of one router (or of an entrypoint's unrouted requests)."""

    __slots__ = ("entrypoint", "router", "service", "writer")

    def __init__(self, writer: Writer, entrypoint: str, router: str, service: str):
        self.writer = writer
        self.entrypoint = entrypoint
        self.router = router
        self.service = service

    def start(self, ex: Any) -> None:
        ex.t0 = time.monotonic()
        ex.wall = time.time()
        ex.timed = True  # the exchange times its backend attempts for OriginDuration

    def finish(self, ex: Any) -> None:
        duration = time.monotonic() - ex.t0
        retries = ex.attempts - 1 if ex.attempts > 1 else 0
        writer = self.writer
        if writer.filter and not writer.keep(ex.status, retries, duration):
            return
        server = ex.server if ex.attempts else None
        trace = ex.trace
        sampled = trace is not None and trace.sampled
        headers = None
        if writer.want_headers:
            headers = []
            modes, default, names = writer.header_modes, writer.header_default, writer.header_names
            for name, value in ex.headers:
                text = name.decode("latin-1")
                lname = text.lower()
                mode = modes.get(lname, default)
                if mode != "drop":
                    headers.append(
                        (
                            names.get(lname, text),
                            value.decode("latin-1") if mode == "keep" else "REDACTED",
                        )
                    )
        extra = None
        if writer.common:  # the common format always shows these two, whatever the modes
            ua = referer = "-"
            for name, value in ex.headers:
                lname = name.lower()
                if lname == b"user-agent":
                    ua = value.decode("latin-1")
                elif lname == b"referer":
                    referer = value.decode("latin-1")
            extra = (ua, referer)
        down = ex.down
        writer.add(
            (  # an AccessRecord (hopwire.telemetry.records), as a plain tuple
                ex.wall,
                duration,
                self.entrypoint,
                self.router,
                self.service,
                server.url if server is not None else None,
                down.client_ip,
                down.client_port,
                ex.method,
                ex.path_query,
                ex.http10,
                ex.host,
                ex.req_bytes,
                ex.status,
                ex.resp_bytes,
                ex.origin_status if server is not None else None,
                ex.origin_duration if server is not None else None,
                retries,
                trace.tid_hex if sampled else None,
                trace.span_hex if sampled else None,
                headers,
                extra,
                down.ep.scheme_str,
                down.tls_fields() if down.ep.tls else None,
            )
        )
