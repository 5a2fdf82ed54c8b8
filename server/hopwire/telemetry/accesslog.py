"""The access log: one line per request, with Traefik's field names, written off the request path.

A router's ``AccessLogger`` observer keeps the ended exchange (nothing of it changes any more);
the worker's tick (or a full buffer of ``bufferingSize`` lines) formats them — JSON lines by
orjson, or the common log format — and writes them in one call; with ``accessLog.otlp`` the
same fields go to the exporter as encoded LogRecords.  Filters, field modes and header modes are
resolved when the config generation is built.  A write error (full disk, vanished directory)
drops that batch, is counted, and is logged at most once per interval; requests never wait for
the log.  SIGUSR1 reopens the file (logrotate).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
from random import random
from typing import Any

import orjson

from hopwire.contracts import ExchangeView, WorkerState
from hopwire.telemetry._accesslog import Logger, fields, json_line, json_lines, records
from hopwire.telemetry._accesslog import record as access_record
from hopwire.telemetry._otlp import log_record
from hopwire.telemetry.otlplogs import LogSink
from hopwire.telemetry.records import ACCESS_LOG, AccessRecord
from hopwire.throttle import Throttle

WALL = AccessRecord._fields.index("wall")
COMMON = AccessRecord._fields.index("common")

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
IOV_MAX = 1024  # the buffers one writev takes (Linux)
BATCH = 256  # lines written together (bufferingSize, when set)
FORMAT_BATCH = 32  # ended exchanges formatted together


def protocol_of(ex: ExchangeView) -> str:
    """RequestProtocol, as Traefik writes it: HTTP/1.0, HTTP/1.1, or HTTP/2.0 for a stream."""
    if ex.http10:
        return "HTTP/1.0"
    return "HTTP/2.0" if ex.down.version == "2" else "HTTP/1.1"


class Writer:
    """The worker's access-log file and its pending lines."""

    def __init__(self, cfg: Any, worker: WorkerState):
        self.cfg = cfg
        self.worker = worker
        self.path = cfg.filePath
        self.common = cfg.format == "common"
        # a batch is written every tick or every `limit` lines; small batches keep the records
        # young for the garbage collector (measured: holding a whole tick's lines cost 2x)
        self.limit = cfg.bufferingSize or BATCH
        self.batch = min(FORMAT_BATCH, self.limit)
        self.lines: list[bytes] = []  # formatted, not yet written
        self.formatted = 0  # the lines in them
        # ended exchanges and their logger; the same list for the writer's life
        self.pending: list[tuple[Any, Any]] = []
        self.fh: Any = None
        self.unwritable = Throttle(ERROR_INTERVAL)
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
        self.keep_fields = frozenset(self.fields)
        # every field, no header, JSON: the line (and its LogRecord) in C, _accesslog
        self.compiled = self.all_fields and not self.want_headers and not self.common
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
            # unbuffered: the formatted batches go out with one writev (write_all), not joined
            self.fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 (reopened on SIGUSR1)
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
        if self.unwritable.ready():
            log.error(
                "access log %s cannot be written (%s); lines are dropped until it can",
                self.path or "<stdout>",
                exc.strerror or exc,
            )

    def keep(self, status: int, retries: int, duration: float) -> bool:
        if not self.filter:
            return True
        if any(low <= status <= high for low, high in self.ranges):
            return True
        if self.retried and retries > 0:
            return True
        return bool(self.min_duration) and duration > self.min_duration

    def format(self) -> None:
        """Format the pending exchanges' lines (and their OTLP records): in batches of
        ``batch``, not one by one at each exchange's end (measured: formatting inside the
        request path cost 25% more time, its code and the request path's taking turns in the
        caches), nor a whole write's worth (256 ended exchanges held cost 3% more
        instructions than 32: their memory is not reused at once)."""
        if not self.pending:
            return
        # the same list object stays pending: compiled loggers (_accesslog.Logger) hold it
        taken = self.pending[:]
        self.pending.clear()
        # the requests' wall-clock start from their monotonic one: one time() per batch
        offset = time.time() - time.monotonic()
        if self.sink is not None:
            data = self.to_otlp(taken, offset)
            if not self.file_out:
                return
        elif self.common:
            data = b"".join([self.common_line(self.record(ex, lg, offset)) for ex, lg in taken])
        elif self.compiled:  # every field, no header: the lines in C, the same documents
            try:
                data = json_lines(taken, offset)
            except (TypeError, ValueError, OverflowError):  # one of them: the others written
                data = b"".join(self.each(json_line, taken, offset))
        else:
            doc, dumps, newline = self.doc, orjson.dumps, orjson.OPT_APPEND_NEWLINE
            data = b"".join([dumps(doc(ex, lg, offset), option=newline) for ex, lg in taken])
        self.lines.append(data)
        self.formatted += len(taken)
        if self.formatted >= self.limit:
            self.write()

    def flush(self) -> None:
        """Everything pending out: the lines written in one call, the OTLP records sent (the
        worker's tick, a reopen, the worker's end)."""
        self.format()
        self.write()
        if self.sink is not None:
            self.sink.flush()

    def write(self) -> None:
        if not self.lines:
            return
        chunks = self.lines
        count = self.formatted
        self.lines, self.formatted = [], 0
        if self.fh is None:
            self.open()
            if self.fh is None:
                self.worker.counters["accesslog_dropped"] += count
                return
        try:
            if not self.path:  # standard output: what Python buffered for it goes first
                self.fh.flush()
            write_all(self.fh.fileno(), chunks)
        except OSError as exc:
            self.worker.counters["accesslog_dropped"] += count
            self.error(exc)

    def start_utc(self, wall: float) -> str:
        second = int(wall)
        if second != self.second:  # strftime once a second, not once a line
            self.second = second
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self.prefix}.{int((wall - second) * 1e6):06d}Z"

    def to_otlp(self, taken: list[tuple[Any, Any]], offset: float) -> bytes:
        """Hand the records to the exporter as encoded LogRecords (body: the line as the file
        has it, attributes: its fields), those the sampling keeps; the file's lines."""
        sink = self.sink
        assert sink is not None
        out = []
        only_sampled, rate, common = self.only_sampled, self.rate, self.common
        now = time.time_ns()
        if self.compiled:  # the lines and their LogRecords in C, from one read of each exchange
            if not only_sampled and rate >= 1.0:
                try:
                    lines, entries = records(taken, offset, now)
                except (TypeError, ValueError, OverflowError):
                    pass  # one of them: the others sent, one by one below
                else:
                    sink.add_many(entries, len(taken))
                    return lines if self.file_out else b""
            for ex, logger in taken:
                trace = ex.trace
                if (only_sampled and (trace is None or not trace.sampled)) or (
                    rate < 1.0 and random() >= rate
                ):
                    out.extend(self.each(json_line, [(ex, logger)], offset))
                    continue
                try:
                    line, entry = access_record(ex, logger, offset, now)
                except (TypeError, ValueError, OverflowError) as exc:
                    self.lost(exc)
                    continue
                out.append(line)
                sink.add(entry)  # sent every RECORDS_PER_DATAGRAM, and at the tick
            return b"".join(out) if self.file_out else b""
        for ex, logger in taken:
            doc = self.doc(ex, logger, offset)
            line = (
                self.common_line(self.record(ex, logger, offset))
                if common
                else orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)
            )
            out.append(line)
            trace = ex.trace
            sampled = trace is not None and trace.sampled
            if (only_sampled and not sampled) or (rate < 1.0 and random() >= rate):
                continue
            try:
                entry = log_record(
                    int((ex.t0 + offset) * 1e9),
                    9,
                    "INFO",
                    line[:-1],  # UTF-8 already (orjson; the common line is encoded so)
                    doc,
                    trace.tid if sampled else None,
                    trace.span_raw if sampled else None,
                    now,
                )
            except (TypeError, ValueError, OverflowError) as exc:  # never the request's problem
                self.otlp_dropped(1)
                self.error(OSError(str(exc)))
                continue
            sink.add(entry)
        return b"".join(out) if self.file_out else b""

    def each(self, line: Any, taken: list[tuple[Any, Any]], offset: float) -> list[bytes]:
        """The compiled lines one by one, when a batch of them failed: a line that cannot be
        made is counted as dropped and logged, the others are written."""
        out = []
        for ex, logger in taken:
            try:
                out.append(line(ex, logger, offset))
            except (TypeError, ValueError, OverflowError) as exc:
                self.lost(exc)
        return out

    def lost(self, exc: Exception) -> None:
        """A line (and its record) that could not be made from its exchange."""
        self.worker.counters["accesslog_dropped"] += 1
        if self.sink is not None:
            self.otlp_dropped(1)
        self.error(OSError(str(exc)))

    def headers_of(self, ex: ExchangeView) -> list[tuple[str, str]]:
        """The request headers the modes keep (request_<Name> fields)."""
        headers = []
        modes, default, names = self.header_modes, self.header_default, self.header_names
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
        return headers

    def doc(self, ex: ExchangeView, logger: AccessLogger, offset: float) -> dict[str, Any]:
        """The fields of one request as its JSON line has them, read from the exchange (it
        has ended: nothing of it changes any more)."""
        nanos = int((ex.t1 - ex.t0) * 1e9)
        server = ex.server if ex.attempts else None
        if server is not None:
            url, origin_status = server.url, ex.origin_status
            origin = int((ex.t1 - ex.origin_t0) * 1e9)
        else:
            url, origin_status, origin = None, None, None
        down = ex.down
        trace = ex.trace
        doc = {
            "StartUTC": self.start_utc(ex.t0 + offset),
            "Duration": nanos,
            "entryPointName": logger.entrypoint,
            "RouterName": logger.router or None,
            "ServiceName": logger.service or None,
            "ServiceURL": url,
            "ClientHost": down.client_ip,
            "ClientPort": down.client_port,
            "RequestMethod": ex.method,
            "RequestPath": ex.path_query.decode("latin-1"),
            "RequestProtocol": protocol_of(ex),
            "RequestHost": ex.host,
            "RequestContentSize": ex.req_bytes,
            "DownstreamStatus": ex.status,
            "DownstreamContentSize": ex.resp_bytes,
            "OriginStatus": origin_status,
            "OriginDuration": origin,
            "Overhead": nanos - (origin or 0),
            "RetryAttempts": ex.attempts - 1 if ex.attempts > 1 else 0,
        }
        if trace is not None and trace.sampled:
            doc["trace_id"] = trace.tid_hex.decode()
            doc["span_id"] = trace.span_hex.decode()
        doc["RequestScheme"] = down.ep.scheme_str
        tls = down.tls_fields() if down.ep.tls else None
        if tls is not None:
            doc["TLSVersion"], doc["TLSCipher"] = tls[0], tls[1]
            if tls[2] is not None:
                doc["TLSClientSubject"] = tls[2]
        if not self.all_fields:
            keep = self.keep_fields
            doc = {k: v for k, v in doc.items() if k in keep and v is not None}
        if self.want_headers:
            for name, value in self.headers_of(ex):
                doc["request_" + name] = value
        return doc

    def record(self, ex: ExchangeView, logger: AccessLogger, offset: float) -> tuple[Any, ...]:
        """The AccessRecord (hopwire.telemetry.records) of an ended exchange."""
        server = ex.server if ex.attempts else None
        trace = ex.trace
        sampled = trace is not None and trace.sampled
        down = ex.down
        ua = referer = "-"
        for name, value in ex.headers:
            lname = name.lower()
            if lname == b"user-agent":
                ua = value.decode("latin-1")
            elif lname == b"referer":
                referer = value.decode("latin-1")
        return (
            ex.t0 + offset,
            ex.t1 - ex.t0,
            logger.entrypoint,
            logger.router,
            logger.service,
            server.url if server is not None else None,
            down.client_ip,
            down.client_port,
            ex.method,
            ex.path_query,
            protocol_of(ex),
            ex.host,
            ex.req_bytes,
            ex.status,
            ex.resp_bytes,
            ex.origin_status if server is not None else None,
            ex.t1 - ex.origin_t0 if server is not None else None,
            ex.attempts - 1 if ex.attempts > 1 else 0,
            trace.tid_hex if sampled else None,
            trace.span_hex if sampled else None,
            self.headers_of(ex) if self.want_headers else None,
            (ua, referer),  # the common format always shows these two, whatever the modes
            down.ep.scheme_str,
            down.tls_fields() if down.ep.tls else None,
        )

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
            protocol,
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
            protocol,
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

    def common_line(self, record: tuple[Any, ...]) -> bytes:
        v = self.values(record)
        ua, referer = record[COMMON]
        when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(record[WALL]))
        return (
            f'{v[6]} - - [{when}] "{v[8]} {v[9]} {v[10]}" {v[13]} {v[14]} "{referer}" '
            f'"{ua}" {v[18]} "{v[3] or "-"}" "{v[5] or "-"}" {int(v[1] / 1e6)}ms\n'
        ).encode()


def write_all(fd: int, chunks: list[bytes] | list[bytes | memoryview]) -> None:
    """Write the chunks in order with as few calls as the kernel allows: writev, no copy of
    them joined; a short write (a pipe, a signal) goes on from where it stopped."""
    at = 0
    while at < len(chunks):
        group = chunks[at : at + IOV_MAX]
        done = os.writev(fd, group)
        if not done and any(group):
            raise OSError(errno.EIO, "nothing was written")
        for chunk in group:
            if done < len(chunk):
                break
            done -= len(chunk)
            at += 1
        else:
            continue
        chunks = [memoryview(chunks[at])[done:], *chunks[at + 1 :]]  # the rest of one chunk
        at = 0


def access_logger(writer: Writer, entrypoint: str, router: str, service: str) -> Any:
    """The access-log observer of one router: compiled (``_accesslog.Logger``, no Python frame
    at each end of a request) unless the writer filters lines, which ``AccessLogger`` does."""
    if writer.filter:
        return AccessLogger(writer, entrypoint, router, service)
    return Logger(writer, entrypoint, router, service, writer.pending, writer.batch)


class AccessLogger:
    """The access-log observer of one router (or of an entrypoint's unrouted requests).

    The request path keeps the ended exchange and this logger; the writer reads the fields
    from them when it formats the lines (at the tick, or every ``limit`` lines)."""

    __slots__ = ("entrypoint", "log_names", "router", "service", "writer")

    def __init__(self, writer: Writer, entrypoint: str, router: str, service: str):
        self.writer = writer
        self.entrypoint = entrypoint
        self.router = router
        self.service = service
        self.log_names: bytes | None = None  # the names' part of a compiled line (_accesslog)

    def start(self, ex: ExchangeView) -> None:
        ex.timed = 1  # the exchange notes when its backend attempt starts (OriginDuration)

    def finish(self, ex: ExchangeView) -> None:
        writer = self.writer
        if writer.filter and not writer.keep(
            ex.status, ex.attempts - 1 if ex.attempts > 1 else 0, ex.t1 - ex.t0
        ):
            return
        down = ex.down
        if writer.compiled:  # the connection's part of the C line, made while it is open (once)
            fields(down)
        elif down.ep.tls:
            down.tls_fields()  # read (once per connection) while it is open
        pending = writer.pending
        pending.append((ex, self))
        if len(pending) >= writer.batch:
            writer.format()
