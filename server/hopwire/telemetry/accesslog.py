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
from typing import Any

import orjson

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
)
ERROR_INTERVAL = 10.0
MAX_PENDING = 100_000  # lines held while the file cannot be written; more are dropped


class Writer:
    """The worker's access-log file and its pending lines."""

    def __init__(self, cfg: Any, worker: Any):
        self.cfg = cfg
        self.worker = worker
        self.path = cfg.filePath
        self.common = cfg.format == "common"
        self.limit = cfg.bufferingSize
        self.pending: list[tuple[Any, ...]] = []
        self.fh: Any = None
        self.last_error = 0.0
        fields = cfg.fields
        self.fields = tuple(f for f in FIELDS if fields.names.get(f, fields.defaultMode) == "keep")
        headers = fields.headers
        self.header_modes = {k.lower(): v for k, v in headers.names.items()}
        self.header_default = headers.defaultMode
        self.header_names = {k.lower(): k for k in headers.names}
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

    def open(self) -> None:
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

    def add(self, line: tuple[Any, ...]) -> None:
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
        data = b"".join(self.format(line) for line in lines)
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

    def format(self, line: tuple[Any, ...]) -> bytes:
        values, headers = line
        if self.common:
            return self.common_line(values)
        doc = {name: values[name] for name in self.fields if values.get(name) is not None}
        for name, value in headers:
            doc["request_" + name] = value
        return orjson.dumps(doc) + b"\n"

    def common_line(self, v: dict[str, Any]) -> bytes:
        ua = v.get("_ua", "-")
        referer = v.get("_referer", "-")
        when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(v["_start"]))
        return (
            f'{v["ClientHost"]} - - [{when}] "{v["RequestMethod"]} {v["RequestPath"]} '
            f'{v["RequestProtocol"]}" {v["DownstreamStatus"]} {v["DownstreamContentSize"]} '
            f'"{referer}" "{ua}" {v["RetryAttempts"]} "{v["RouterName"] or "-"}" '
            f'"{v["ServiceURL"] or "-"}" {int(v["Duration"] / 1e6)}ms\n'
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
        retries = max(0, ex.attempts - 1)
        writer = self.writer
        if not writer.keep(ex.status, retries, duration):
            return
        origin = ex.origin_duration
        trace = ex.trace
        ids = trace.ids() if trace is not None and trace.sampled else {}
        server = ex.server if ex.attempts else None
        values = {
            "_start": ex.wall,
            "StartUTC": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ex.wall))
            + f".{int(ex.wall % 1 * 1e6):06d}Z",
            "Duration": (nanos := int(duration * 1e9)),
            "entryPointName": self.entrypoint,
            "RouterName": self.router or None,
            "ServiceName": self.service or None,
            "ServiceURL": server.url if server is not None else None,
            "ClientHost": ex.down.client_ip,
            "ClientPort": ex.down.client_port,
            "RequestMethod": ex.method,
            "RequestPath": ex.path_query.decode("latin-1"),
            "RequestProtocol": "HTTP/1.0" if ex.http10 else "HTTP/1.1",
            "RequestHost": ex.host,
            "RequestContentSize": ex.req_bytes,
            "DownstreamStatus": ex.status,
            "DownstreamContentSize": ex.resp_bytes,
            "OriginStatus": ex.origin_status if server is not None else None,
            "OriginDuration": (origin_nanos := int(origin * 1e9)) if server is not None else None,
            "Overhead": nanos - (origin_nanos if server is not None else 0),
            "RetryAttempts": retries,
            "trace_id": ids.get("trace_id"),
            "span_id": ids.get("span_id"),
        }
        if writer.common:  # the common format always shows these two, whatever the modes
            for name, value in ex.headers:
                lname = name.lower()
                if lname == b"user-agent":
                    values["_ua"] = value.decode("latin-1")
                elif lname == b"referer":
                    values["_referer"] = value.decode("latin-1")
        headers = []
        modes, default, names = writer.header_modes, writer.header_default, writer.header_names
        for name, value in ex.headers:
            lname = name.decode("latin-1").lower()
            mode = modes.get(lname, default)
            if mode == "keep":
                headers.append((names.get(lname, name.decode("latin-1")), value.decode("latin-1")))
            elif mode == "redact":
                headers.append((names.get(lname, name.decode("latin-1")), "REDACTED"))
        writer.add((values, headers))
