"""``rateLimit``, as Traefik 3.7's, with one limit for the whole instance.

Traefik keeps a token bucket per source (golang.org/x/time/rate): ``burst`` tokens, refilled
at ``average`` per ``period``; a request takes one, and when none is left it waits for the
next up to ``maxDelay`` (half the interval between tokens, 500 ms below one request per
second), or gets 429 with ``Retry-After`` and ``X-Retry-In``.  A client's requests reach
every worker (one connection each, spread by the kernel), so the buckets cannot be per worker:
they live in shared memory the master maps before it forks the generation
(``SharedBuckets``), striped, with one process-shared lock per stripe.  A slot is
(key, tokens, last refill) keyed by a hash of the middleware and the source; a slot unused
for its ttl, or the stalest of the probed ones, is taken over by a new source.
"""

from __future__ import annotations

import functools
import http
import math
import mmap
import multiprocessing
import struct
import time
from typing import Any

from hopwire.contracts import ExchangeView
from hopwire.middlewares.access import client_ip
from hopwire.middlewares.headers import field

SLOT = struct.Struct("qdd")  # key, tokens, last refill (time.monotonic, shared by the host)
SIZE, UNPACK, PACK = SLOT.size, SLOT.unpack_from, SLOT.pack_into
STRIPES = 64
PER_STRIPE = 256  # 16,384 sources per rateLimit middleware (Traefik keeps 65,536)
PROBE = 8
TOO_MANY = http.HTTPStatus(429).phrase.encode()


class SharedBuckets:
    """Token buckets in anonymous shared memory, made before fork (inherited by workers)."""

    def __init__(self) -> None:
        self.mem = mmap.mmap(-1, SIZE * STRIPES * PER_STRIPE)  # MAP_SHARED
        self.locks = [multiprocessing.Lock() for _ in range(STRIPES)]

    def reserve(self, key: int, rate: float, burst: int, max_delay: float, ttl: float) -> float:
        """Take a token for ``key``; the wait before it is there (0: now).  A wait above
        ``max_delay`` takes nothing (the caller refuses the request)."""
        key = key or 1
        stripe = key % STRIPES
        base = stripe * PER_STRIPE
        start = (key // STRIPES) % PER_STRIPE
        mem = self.mem
        lock = self.locks[stripe]
        lock.acquire()
        try:
            now = time.monotonic()
            offset = (base + start) * SIZE
            k, tokens, last = UNPACK(mem, offset)
            if k != key:  # not in its first slot: probe, or take a free or the stalest one
                offset, tokens, last = self._find(key, base, start, now, float(burst), ttl)
            tokens = min(float(burst), tokens + (now - last) * rate) - 1.0
            delay = -tokens / rate if tokens < 0 else 0.0
            if delay > max_delay:
                tokens += 1.0  # cancelled: the token is not taken
            PACK(mem, offset, key, tokens, now)
        finally:
            lock.release()
        return delay

    def _find(
        self, key: int, base: int, start: int, now: float, full: float, ttl: float
    ) -> tuple[int, float, float]:
        mem = self.mem
        free = oldest = -1
        oldest_last = math.inf
        for i in range(PROBE):
            offset = (base + (start + i) % PER_STRIPE) * SIZE
            k, t, lst = UNPACK(mem, offset)
            if k == key:
                return offset, t, lst
            if k == 0 or now - lst > ttl:
                if free < 0:
                    free = offset
            elif lst < oldest_last:
                oldest, oldest_last = offset, lst
        return (free if free >= 0 else oldest), full, now  # a new source starts full


COUNT = struct.Struct("qq")  # key, requests in flight


class SharedCounts:
    """Requests in flight per source, in shared memory made before fork (``inFlightReq``).
    A slot whose count is 0 is free."""

    def __init__(self) -> None:
        self.mem = mmap.mmap(-1, COUNT.size * STRIPES * PER_STRIPE)  # MAP_SHARED
        self.locks = [multiprocessing.Lock() for _ in range(STRIPES)]

    def _slot(self, key: int, claim: bool) -> int:
        """The offset of ``key``'s slot (or, with ``claim``, a free one); -1: none."""
        base = (key % STRIPES) * PER_STRIPE
        start = (key // STRIPES) % PER_STRIPE
        free = -1
        for i in range(PROBE * 4):
            offset = (base + (start + i) % PER_STRIPE) * COUNT.size
            k, n = COUNT.unpack_from(self.mem, offset)
            if k == key and n > 0:
                return offset
            if n <= 0 and free < 0:
                free = offset
        return free if claim else -1

    def take(self, key: int, amount: int) -> bool:
        """One more in flight for ``key`` unless ``amount`` already are."""
        key = key or 1
        lock = self.locks[key % STRIPES]
        lock.acquire()
        try:
            offset = self._slot(key, True)
            if offset < 0:
                return True  # every probed slot busy: let it through rather than refuse all
            k, n = COUNT.unpack_from(self.mem, offset)
            n = n if k == key else 0
            if n >= amount:
                return False
            COUNT.pack_into(self.mem, offset, key, n + 1)
            return True
        finally:
            lock.release()

    def give_back(self, key: int) -> None:
        key = key or 1
        lock = self.locks[key % STRIPES]
        lock.acquire()
        try:
            offset = self._slot(key, False)
            if offset >= 0:
                k, n = COUNT.unpack_from(self.mem, offset)
                COUNT.pack_into(self.mem, offset, key, n - 1)
        finally:
            lock.release()


class InFlight:
    """The request stage of one inFlightReq middleware."""

    def __init__(self, name: str, cfg: Any, counts: SharedCounts):
        self.amount = cfg.amount
        criterion = cfg.sourceCriterion
        if criterion is None or (
            criterion.ipStrategy is None
            and not criterion.requestHeaderName
            and not criterion.requestHost
        ):
            self.source: Any = lambda ex: ex.authority.decode("latin-1")  # Traefik: the Host
        else:
            self.source = source_of(criterion)
        self.salt = hash(name)
        self.counts = counts
        self.refusal = f"max connections reached: {self.amount}".encode()  # Traefik's (oxy)

    def __call__(self, ex: ExchangeView) -> bool:
        key = (hash(self.source(ex)) ^ self.salt) or 1
        counts = self.counts
        if not counts.take(key, self.amount):
            ex.respond_local(429, self.refusal)
            return True
        release = functools.partial(counts.give_back, key)
        if ex.held is None:
            ex.held = [release]
        else:
            ex.held.append(release)
        return False


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() of a positive duration below an hour (X-Retry-In)."""
    ns = round(seconds * 1e9)
    if ns < 1000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _trim(f"{ns / 1e3:.3f}") + "µs"
    if ns < 1_000_000_000:
        return _trim(f"{ns / 1e6:.6f}") + "ms"
    minutes, rest = divmod(ns, 60_000_000_000)
    text = _trim(f"{rest / 1e9:.9f}") + "s"
    return f"{minutes}m{text}" if minutes else text


def _trim(number: str) -> str:
    return number.rstrip("0").rstrip(".") if "." in number else number


def source_of(criterion: Any) -> Any:
    """The function giving a request's source, per Traefik's sourceCriterion."""
    if criterion is not None and criterion.requestHeaderName:
        name = criterion.requestHeaderName.lower().encode("latin-1")

        def by_header(ex: ExchangeView) -> str:
            value = field(ex.kept, name)
            return value.decode("latin-1") if value is not None else ""

        return by_header
    if criterion is not None and criterion.requestHost:
        return lambda ex: ex.authority.decode("latin-1")
    return client_ip(criterion.ipStrategy if criterion is not None else None)


class RateLimit:
    """The request stage of one rateLimit middleware (``next``: the stage after it)."""

    def __init__(self, name: str, cfg: Any, buckets: SharedBuckets):
        period = cfg.period or 1.0
        self.rate = cfg.average / period
        self.burst = max(cfg.burst, 1)
        self.max_delay = 0.5 if self.rate < 1 else 1.0 / (int(self.rate) * 2)
        self.ttl = 2.0 if self.rate >= 1 else 1.0 + int(1 / self.rate)
        self.source = source_of(cfg.sourceCriterion)
        self.name = name
        self.salt = hash(name)  # the same source under two middlewares: two buckets
        self.buckets = buckets
        self.next = 0  # set by compile_stages

    def __call__(self, ex: ExchangeView) -> bool:
        key = hash(self.source(ex)) ^ self.salt
        delay = self.buckets.reserve(key, self.rate, self.burst, self.max_delay, self.ttl)
        if delay <= 0:
            return False
        if delay > self.max_delay:
            extra = [
                b"Retry-After: %d\r\n" % math.ceil(delay),
                b"X-Retry-In: " + go_duration(delay).encode() + b"\r\n",
            ]
            ex.respond_local(429, TOO_MANY, extra=extra)
            return True
        ex.down.worker.loop.call_later(delay, ex.resume, self.next)
        return True


def _shared_kind(mw: Any) -> type[SharedBuckets] | type[SharedCounts] | None:
    """The shared memory a middleware needs: local rate limits and in-flight counts."""
    limit = mw.rateLimit
    if limit is not None and limit.redis is not None:
        return None  # in Redis (middlewares.redislimit)
    if limit is not None and limit.average > 0:
        return SharedBuckets
    if mw.inFlightReq is not None and mw.inFlightReq.amount > 0:
        return SharedCounts
    return None


def shared_kinds(config: Any) -> dict[str, type]:
    """Which middleware has which kind of shared memory (a change needs new workers)."""
    kinds = {name: _shared_kind(mw) for name, mw in config.http.middlewares.items()}
    return {name: kind for name, kind in kinds.items() if kind is not None}


def shared_state(config: Any) -> dict[str, Any]:
    """The shared memory of every rateLimit and inFlightReq middleware of a config (made by
    the master before it forks the generation's workers)."""
    return {name: kind() for name, kind in shared_kinds(config).items()}
