"""Logs over OTLP: access-log records (``accessLog.otlp``) and application log lines
(``log.otlp``) as OpenTelemetry LogRecords, through the exporter process.

A worker (or the master) encodes its records itself, as it encodes spans: ``log_record``
(C, ``_otlp.log_record``; ``otlp.log_record`` is the reference) makes one
``ScopeLogs.log_records`` entry, with the trace and span ids in the record's own fields.
They go to the exporter over the same never-blocking unix datagram socket as spans: a
``HEADER`` (kind ``ACCESS_LOG`` or ``APP_LOG``, the number of records) and the entries.  A
full socket, or an exporter that is not there, drops the datagram and counts its records
(``hopwire_otlp_dropped_total{signal}``).  Nothing here runs on the request path: the access
log's writer encodes at the tick, as it formats its lines.

The exporter (``LogBatch``) only checks the entries and wraps a batch of them in its
signal's resource and scope (the layout of a logs export is that of a trace export), with
the ``OTEL_BLRP_*`` defaults of the SDKs' batch log record processor.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from hopwire.telemetry import otlp
from hopwire.telemetry._otlp import log_record
from hopwire.telemetry.records import Courier
from hopwire.throttle import Throttle

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


class LogSink(Courier):
    """A process's way to the exporter for one kind of log record: ``add`` keeps an encoded
    entry, ``flush`` sends what is kept (at most RECORDS_PER_DATAGRAM per datagram, spread
    over the exporters as spans are); never blocks."""

    def __init__(self, paths: list[str], kind: int, dropped: Callable[[int], None]):
        super().__init__(paths)
        self.kind = kind
        self.dropped = dropped
        self.items: list[bytes] = []  # encoded entries, one or several each
        self.counts: list[int] = []  # the entries in each
        self.count = 0
        self.unreachable = Throttle()

    def add(self, entry: bytes) -> None:
        self.add_many(entry, 1)

    def add_many(self, entries: bytes, count: int) -> None:
        """``count`` encoded entries, one after the other in ``entries``."""
        self.items.append(entries)
        self.counts.append(count)
        self.count += count
        if self.count >= RECORDS_PER_DATAGRAM:
            self.flush()

    def flush(self) -> None:
        items = self.items
        if not items:
            return
        if not self.paths:  # no exporter yet (the master's first lines): kept, a few
            while self.count >= RECORDS_PER_DATAGRAM:
                del items[0]
                lost = self.counts.pop(0)
                self.count -= lost
                self.dropped(lost)
            return
        count = self.count
        self.items, self.counts, self.count = [], [], 0
        try:
            self.send(self.kind, count, items)
        except OSError as exc:
            self.dropped(count)
            if self.unreachable.ready():
                # not through logging: this may run inside the OTLP log handler
                os.write(2, f"hopwire: log records not handed to the exporter ({exc})\n".encode())


class OTLPLogHandler(logging.Handler):
    """The application log's records, over OTLP: severity from the level, the logger, the
    process and the fields as attributes, the trace ids when the line has them.  Sent at
    once (application lines are few: the error lines are sampled, logs.LineBudget)."""

    def __init__(self, deliver: Callable[[bytes], None], role: str):
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
            trace_id = str(getattr(record, "trace_id", "") or "")
            span_id = str(getattr(record, "span_id", "") or "")
            ids = len(trace_id) == 32 and len(span_id) == 16
            self.deliver(
                log_record(
                    int(record.created * 1e9),
                    number,
                    text,
                    record.getMessage(),
                    attrs,
                    bytes.fromhex(trace_id) if ids else None,
                    bytes.fromhex(span_id) if ids else None,
                    time.time_ns(),
                )
            )
        except Exception:
            self.handleError(record)
        finally:
            self.local.busy = False


def install(deliver: Callable[[bytes], None], role: str) -> OTLPLogHandler:
    """Add the OTLP handler to the root logger (beside the file or standard error)."""
    handler = OTLPLogHandler(deliver, role)
    logging.getLogger().addHandler(handler)
    return handler


# ---------------------------------------------------------------------------------------------
# The exporter side.


class LogBatch:
    """The exporter's pending entries of one signal, wrapped in its resource on take.  The
    entries are checked and kept as the compiled span encoder keeps encoded spans (the same
    framing: tag 2, length, message), with no per-entry work in Python."""

    def __init__(self, resource_attributes: dict[str, str], scope: tuple[str, str]):
        from hopwire.telemetry import _otlp

        self.resource, self.scope = otlp.resource_part(resource_attributes, *scope)
        self.entries = _otlp.Encoder(otlp.redact_query)
        self.first_at = 0.0

    @property
    def pending(self) -> int:
        return int(self.entries.pending)

    def extend(self, payload: bytes | memoryview, count: int) -> None:
        """The entries of one datagram; ValueError (nothing added) when it is not ``count``
        entries exactly."""
        if not self.pending:
            self.first_at = time.monotonic()
        try:
            self.entries.extend(payload, count)
        except ValueError:
            raise ValueError("not that many log records") from None

    def take(self) -> tuple[bytes, int]:
        """(ExportLogsServiceRequest, records) of every pending entry."""
        count = self.pending
        return self.entries.take(self.resource, self.scope), count
