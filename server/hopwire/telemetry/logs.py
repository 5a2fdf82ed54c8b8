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


class LineBudget:
    """At most ``burst`` lines per ``interval`` seconds for each key (an error kind).

    Under attack, one line per aborted connection or refused request would flood the log;
    the counters (``hopwire_errors_total``) count every one, so the lines are samples.  What
    is held back is counted and said in one line per key when its interval ends (``allow``
    for the next line of that key, or ``flush`` on the worker's tick)."""

    def __init__(self, logger: logging.Logger, burst: int = 10, interval: float = 10.0):
        self.log = logger
        self.burst = burst
        self.interval = interval
        self.windows: dict[str, list[float]] = {}  # key -> [start, lines, held back, level]

    def allow(self, key: str, level: int, now: float) -> bool:
        window = self.windows.get(key)
        if window is None or now - window[0] >= self.interval:
            if window is not None and window[2]:
                self.say(key, window)
            self.windows[key] = [now, 1, 0, level]
            return True
        if window[1] < self.burst:
            window[1] += 1
            return True
        window[2] += 1
        window[3] = max(window[3], level)
        return False

    def flush(self, now: float) -> None:
        for key, window in list(self.windows.items()):
            if now - window[0] >= self.interval:
                if window[2]:
                    self.say(key, window)
                del self.windows[key]

    def say(self, key: str, window: list[float]) -> None:
        self.log.log(
            int(window[3]),
            "%d more %s lines held back in %.3gs (every one is counted in hopwire_errors_total)",
            int(window[2]),
            key,
            self.interval,
        )


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
