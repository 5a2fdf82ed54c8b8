"""Logs over OTLP: access-log records (``accessLog.otlp``) and application log lines
(``log.otlp``) as OpenTelemetry LogRecords, through the exporter process.

A worker (or the master) hands its records to the exporter over the same never-blocking
unix datagram socket as spans: a ``HEADER`` (kind ``ACCESS_LOG`` or ``APP_LOG``, the number of
records) and the records as one orjson list of ``LogItem`` lists.  A full socket, or an
exporter that is not there, drops the datagram and counts its records
(``hopwire_otlp_dropped_total{signal}``).  Nothing here runs on the request path: the access
log's writer builds the items from its records at the tick, as it formats its lines.

The exporter (``LogBatch``) makes LogRecords of them with opentelemetry-proto, the trace and
span ids in the record's own fields, and batches them with the ``OTEL_BLRP_*`` defaults.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from hopwire.telemetry.records import HEADER

RECORDS_PER_DATAGRAM = 256
# OTEL_BLRP_* defaults: the batch log record processor of the SDKs
SCHEDULE_DELAY = 1.0
MAX_QUEUE = 2048
MAX_BATCH = 512
EXPORT_TIMEOUT = 30.0
SEVERITY = {
    logging.DEBUG: (5, "DEBUG"),
    logging.INFO: (9, "INFO"),
    logging.WARNING: (13, "WARN"),
    logging.ERROR: (17, "ERROR"),
    logging.CRITICAL: (21, "FATAL"),
}


def severity(level: int) -> tuple[int, str]:
    """OTLP SeverityNumber and text of a logging level (between levels: the one below)."""
    for at in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if level >= at:
            return SEVERITY[at]
    return SEVERITY[logging.DEBUG]


class LogSink:
    """A process's way to the exporter for one kind of log record: ``add`` keeps the item,
    ``flush`` sends what is kept (at most RECORDS_PER_DATAGRAM per datagram, spread over the
    exporters as spans are); never blocks."""

    def __init__(self, paths: list[str], kind: int, dropped: Callable[[int], None]):
        self.paths = paths
        self.kind = kind
        self.dropped = dropped
        self.next = 0
        self.items: list[list[Any]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.last_error = 0.0

    def add(self, item: list[Any]) -> None:
        self.items.append(item)
        if len(self.items) >= RECORDS_PER_DATAGRAM:
            self.flush()

    def flush(self) -> None:
        items = self.items
        if not items:
            return
        if not self.paths:  # no exporter yet (the master's first lines): kept, a few
            if len(items) >= RECORDS_PER_DATAGRAM:
                del items[: len(items) - RECORDS_PER_DATAGRAM + 1]
                self.dropped(1)
            return
        self.items = []
        path = self.paths[self.next % len(self.paths)]
        self.next += 1
        try:
            payload = orjson.dumps(items)
            self.sock.sendmsg((HEADER.pack(self.kind, len(items)), payload), (), 0, path)
        except (OSError, TypeError) as exc:
            self.dropped(len(items))
            now = time.monotonic()
            if now - self.last_error > 10:
                self.last_error = now
                # not through logging: this may run inside the OTLP log handler
                os.write(2, f"hopwire: log records not handed to the exporter ({exc})\n".encode())

    def close(self) -> None:
        self.sock.close()


class OTLPLogHandler(logging.Handler):
    """The application log's records, over OTLP: severity from the level, the logger, the
    process and the fields as attributes, the trace ids when the line has them.  Sent at
    once (application lines are few: the error lines are sampled, logs.LineBudget)."""

    def __init__(self, deliver: Callable[[list[Any]], None], role: str):
        super().__init__()
        self.deliver = deliver
        self.role = role
        self.pid = os.getpid()
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self.local, "busy", False):
            return  # a line logged while delivering one: not sent again
        self.local.busy = True
        try:
            number, text = severity(record.levelno)
            attrs: dict[str, Any] = {
                "logger": record.name,
                "process.pid": self.pid,
                "hopwire.role": self.role,
                "code.function": record.funcName,
                "code.lineno": record.lineno,
            }
            if record.exc_info:
                attrs["exception.stacktrace"] = logging.Formatter().formatException(record.exc_info)
            self.deliver(
                [
                    int(record.created * 1e9),
                    number,
                    text,
                    record.getMessage(),
                    attrs,
                    getattr(record, "trace_id", None),
                    getattr(record, "span_id", None) or None,
                ]
            )
        except Exception:
            self.handleError(record)
        finally:
            self.local.busy = False


def install(deliver: Callable[[list[Any]], None], role: str) -> OTLPLogHandler:
    """Add the OTLP handler to the root logger (beside the file or standard error)."""
    handler = OTLPLogHandler(deliver, role)
    logging.getLogger().addHandler(handler)
    return handler


# ---------------------------------------------------------------------------------------------
# The exporter side.


def _any_value(value: Any, common: Any) -> Any:
    if isinstance(value, bool):
        return common.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common.AnyValue(int_value=value)
    if isinstance(value, float):
        return common.AnyValue(double_value=value)
    return common.AnyValue(string_value=str(value))


class LogBatch:
    """The exporter's pending LogRecords of one signal, wrapped in their resource on take."""

    def __init__(self, resource_attributes: dict[str, str], scope: tuple[str, str]):
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.logs.v1 import logs_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2

        self.service = logs_service_pb2
        self.common = common_pb2
        self.logs = logs_pb2
        self.resource = resource_pb2.Resource(
            attributes=[
                common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
                for k, v in resource_attributes.items()
            ]
        )
        self.scope = common_pb2.InstrumentationScope(name=scope[0], version=scope[1])
        self.records: list[Any] = []
        self.first_at = 0.0

    @property
    def pending(self) -> int:
        return len(self.records)

    def extend(self, payload: bytes, count: int) -> None:
        """The records of one datagram; ValueError (nothing added) when it is not ``count``
        well-formed items."""
        try:
            items = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(items, list) or len(items) != count or count <= 0:
            raise ValueError("not that many log records")
        now = time.time_ns()
        common, logs = self.common, self.logs
        made = []
        for item in items:
            try:
                t, number, text, body, attrs, trace_id, span_id = item
                record = logs.LogRecord(
                    time_unix_nano=t,
                    observed_time_unix_nano=now,
                    severity_number=number,
                    severity_text=text,
                    body=common.AnyValue(string_value=body),
                    attributes=[
                        common.KeyValue(key=k, value=_any_value(v, common))
                        for k, v in attrs.items()
                        if v is not None
                    ],
                )
                if trace_id and span_id:
                    record.trace_id = bytes.fromhex(trace_id)
                    record.span_id = bytes.fromhex(span_id)
                    record.flags = 1  # sampled: only a sampled request's ids are given
            except (TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"bad log record: {exc}") from None
            made.append(record)
        if not self.records:
            self.first_at = time.monotonic()
        self.records += made

    def add(self, item: list[Any]) -> None:
        """One record made in this process (its own application log)."""
        self.extend(orjson.dumps([item]), 1)

    def take(self, limit: int = MAX_BATCH) -> tuple[bytes, int]:
        """(ExportLogsServiceRequest, records) of at most ``limit`` pending records."""
        records, self.records = self.records[:limit], self.records[limit:]
        if self.records:
            self.first_at = time.monotonic()
        request = self.service.ExportLogsServiceRequest(
            resource_logs=[
                self.logs.ResourceLogs(
                    resource=self.resource,
                    scope_logs=[self.logs.ScopeLogs(scope=self.scope, log_records=records)],
                )
            ]
        )
        return request.SerializeToString(), len(records)
