"""Application log: JSON lines (orjson) to standard error or a file that SIGUSR1 reopens."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson

LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}


class JSONFormatter(logging.Formatter):
    def __init__(self, worker: str):
        super().__init__()
        self.worker = worker
        self.pid = os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "msg": record.getMessage(),
            "logger": record.name,
            "pid": self.pid,
            "worker": self.worker,
        }
        trace_id = getattr(record, "trace_id", None)
        if trace_id is not None:
            doc["trace_id"] = trace_id
            doc["span_id"] = getattr(record, "span_id", "")
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


class CommonFormatter(logging.Formatter):
    """Plain text: time, level, process, message (and the trace ids when present)."""

    def __init__(self, worker: str):
        super().__init__()
        self.prefix = f"[{os.getpid()} {worker}]"

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (
            f"{when}.{int(record.msecs):03d}Z {record.levelname} {self.prefix} "
            f"{record.getMessage()}"
        )
        trace_id = getattr(record, "trace_id", None)
        if trace_id is not None:
            line += f" trace_id={trace_id} span_id={getattr(record, 'span_id', '')}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class ReopenableHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to a path (appending) and reopens it on ``reopen()`` (logrotate, SIGUSR1)."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(open(path, "a", encoding="utf-8"))  # noqa: SIM115

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            self.stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            old.close()
        finally:
            self.release()


def setup(level: str, path: str, worker: str, fmt: str = "json") -> logging.Handler:
    """(Re)configure the root logger for this process; returns the handler."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler = (
        ReopenableHandler(path) if path else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(CommonFormatter(worker) if fmt == "common" else JSONFormatter(worker))
    root.addHandler(handler)
    root.setLevel(LEVELS[level.upper()])
    return handler


def reopen() -> None:
    for h in logging.getLogger().handlers:
        if isinstance(h, ReopenableHandler):
            h.reopen()
