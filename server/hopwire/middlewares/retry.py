"""retry: an attempt that failed is tried again, on the server the balancer picks next.

As Traefik 3.7: a network error counts only before the request was written (hopwire writes the
request as soon as it has a connection, so: a dial refused or timed out); a status in
``status`` counts for idempotent methods (or all with ``retryNonIdempotentMethod``), and then
the request body is held up to ``maxRequestBodyBytes`` so that it can be sent again (over it,
the body streams and only network errors are retried).  The last attempt's answer, or any after
``timeout``, goes to the client.  Waits follow Traefik's exponential backoff: from
``initialInterval``, growing to twice it by the last attempt, randomised by half.  Each attempt
is a CLIENT span; each retry is counted in ``hopwire_service_retries_total``.
"""

from __future__ import annotations

import random
import time
from typing import Any

from hopwire.contracts import ExchangeView
from hopwire.middlewares.bodies import Filter, RequestBody, stream_on

_NON_IDEMPOTENT = frozenset(("POST", "PATCH", "LOCK"))


def status_ranges(specs: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """Traefik's HTTP code ranges: "500", "500,502", "500-599" (ValueError when invalid)."""
    out = []
    for spec in specs:
        for item in spec.split(","):
            low, dash, high = item.strip().partition("-")
            lo = int(low)
            hi = int(high) if dash else lo
            if not 100 <= lo <= hi <= 599:
                raise ValueError(f"{item.strip()!r} is not a status code or a range of them")
            out.append((lo, hi))
    return tuple(out)


def in_ranges(status: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= status <= hi for lo, hi in ranges)


class Retry:
    """The request stage: gives the exchange its retry state."""

    __slots__ = (
        "attempts",
        "initial",
        "max_body",
        "multiplier",
        "network",
        "next",
        "non_idempotent",
        "status",
        "timeout",
    )

    def __init__(self, cfg: Any):
        self.attempts = cfg.attempts
        self.status = status_ranges(cfg.status)
        self.max_body = cfg.maxRequestBodyBytes
        self.network = not cfg.disableRetryOnNetworkError
        self.initial = cfg.initialInterval
        self.timeout = cfg.timeout
        self.non_idempotent = cfg.retryNonIdempotentMethod
        self.multiplier = 2 ** (1 / (self.attempts - 1)) if self.attempts > 1 else 1.0
        self.next = 0

    def __call__(self, ex: ExchangeView) -> bool:
        statuses = self.status if self.non_idempotent or ex.method not in _NON_IDEMPOTENT else ()
        state = Attempts(self, statuses)
        ex.retry = state
        if statuses and ex.has_body:  # held so that a retry can send it again
            RequestBody(ex, self.max_body, self.max_body + 1, self.resume, self.stream)
            return True
        return False

    def resume(self, ex: ExchangeView, body: bytes) -> None:
        ex.replay = body
        ex.resume(self.next)

    def stream(self, ex: ExchangeView, held: RequestBody) -> None:
        state = ex.retry
        assert isinstance(state, Attempts)
        state.statuses = ()  # over maxRequestBodyBytes: status retries are off
        stream_on(ex, held)
        ex.resume(self.next)


class Attempts:
    """One request's retries."""

    __slots__ = ("count", "interval", "policy", "started", "statuses")

    def __init__(self, policy: Retry, statuses: tuple[tuple[int, int], ...]):
        self.policy = policy
        self.statuses = statuses
        self.count = 1
        self.started = time.monotonic()
        self.interval = policy.initial

    def left(self) -> bool:
        policy = self.policy
        if self.count >= policy.attempts:
            return False
        return not policy.timeout or time.monotonic() - self.started < policy.timeout

    def on_status(self, ex: ExchangeView, status: int) -> bool:
        if not self.statuses or not in_ranges(status, self.statuses) or not self.left():
            return False
        ex.origin_status = status  # for the attempt's span
        ex.filters = Discard(ex, self)
        return True

    def on_error(self, ex: ExchangeView) -> bool:
        if not self.policy.network or not self.left():
            return False
        self.again(ex)
        return True

    def delay(self) -> float:
        interval = self.interval
        if interval <= 0:
            return 0.0
        self.interval = min(interval * self.policy.multiplier, 60.0)
        return interval * random.uniform(0.5, 1.5)  # Traefik's backoff: ±50 %

    def again(self, ex: ExchangeView) -> None:
        """Another attempt, after the policy's backoff: the exchange starts it."""
        self.count += 1
        wait = self.delay()
        if wait:
            ex.down.worker.loop.call_later(wait, ex.again)
        else:
            ex.again()


class Discard(Filter):
    """A response that a retry replaces: its body is read (the connection stays reusable) and
    dropped; at its end the next attempt starts."""

    __slots__ = ("attempts",)

    def __init__(self, ex: ExchangeView, attempts: Attempts):
        super().__init__(ex)
        self.attempts = attempts

    def send_data(self, data: bytes) -> None:
        pass

    def send_end(self) -> None:
        self.attempts.again(self.ex)
