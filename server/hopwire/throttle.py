"""One log throttle: at most one line per interval about a failure that repeats.

A sink that cannot reach its exporter, a log file that cannot be written, an export that
fails: each would log once per attempt, many times a second.  The counters count every
failure; the log says it once per ``interval`` (10 s).  The per-kind sampling of request
errors, with a count of what was held back, is ``hopwire.telemetry.logs.LineBudget``.
"""

from __future__ import annotations

import math
import time

INTERVAL = 10.0


class Throttle:
    __slots__ = ("interval", "last")

    def __init__(self, interval: float = INTERVAL):
        self.interval = interval
        self.last = -math.inf

    def ready(self, now: float | None = None) -> bool:
        """True when a line may be logged now (and the next one waits ``interval``)."""
        if now is None:
            now = time.monotonic()
        if now - self.last < self.interval:
            return False
        self.last = now
        return True
