"""``rateLimit.redis``: the token buckets of a rateLimit kept in Redis, so that every hopwire
instance that shares one Redis gives a client one limit (Traefik 3.4+'s option).

Each request runs one Lua script (EVALSHA) that refills the source's bucket for the time
passed, takes a token, and answers (allowed, delay): a request may wait for its token up to
the same maxDelay as the local limiter, and a refusal takes nothing.  The clock is the
instance's, in microseconds, as Traefik passes it.  With Redis unreachable (or too slow for
readTimeout) the request gets 500, as Traefik fails closed, and it is counted in
``hopwire_middleware_errors_total{reason="redis"}``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

from hopwire import errors
from hopwire.contracts import ExchangeView, WorkerState
from hopwire.middlewares.limits import RateLimit

log = logging.getLogger("hopwire.middlewares")

# KEYS[1]: the bucket; ARGV: tokens per microsecond, burst, ttl (s), now (µs), maxDelay (µs)
BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[4])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1]) or burst
local at = tonumber(saved[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
tokens = tokens - 1
local delay = 0
if tokens < 0 then delay = -tokens / rate end
if delay > tonumber(ARGV[5]) then return {'false', '0'} end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'true', tostring(delay)}
"""

TOO_MANY = b"No bursty traffic allowed\n"  # Traefik's answer when the script refuses
FAILED = b"Could not insert/update bucket\n"


def client(cfg: Any) -> Any:
    import redis.asyncio

    from hopwire.http.tls.options import client_context

    host, _, port = cfg.endpoints[0].rpartition(":")
    context = client_context(cfg.tls) if cfg.tls is not None else None
    size = cfg.maxActiveConns or cfg.poolSize or 10 * (os.cpu_count() or 1)
    options: dict[str, Any] = {
        "host": host.strip("[]"),
        "port": int(port),
        "db": cfg.db,
        "username": cfg.username or None,
        "password": cfg.password or None,
        "socket_timeout": cfg.readTimeout or None,
        "socket_connect_timeout": cfg.dialTimeout or None,
        "max_connections": size,
    }
    if context is not None:
        options["ssl"] = True
        options["ssl_context"] = context
    return redis.asyncio.Redis(**options)


class RedisRateLimit(RateLimit):
    """The request stage: asks Redis, then lets the request go, waits, or refuses."""

    def __init__(self, name: str, cfg: Any, worker: WorkerState):
        super().__init__(name, cfg, None)  # type: ignore[arg-type]
        self.worker = worker
        self.redis = client(cfg.redis)
        self.script = self.redis.register_script(BUCKET)
        self.args = (
            repr(self.rate / 1e6),
            self.burst,
            math.ceil(self.ttl),
        )
        self.max_delay_us = int(self.max_delay * 1e6)

    def __call__(self, ex: ExchangeView) -> bool:
        source = self.source(ex)
        key = f"rl:{self.name}:{source}"
        task = self.worker.loop.create_task(self.ask(ex, key))
        ex.held = [*(ex.held or ()), task.cancel]
        return True

    async def ask(self, ex: ExchangeView, key: str) -> None:
        import redis

        rate, burst, ttl = self.args
        now = int(time.time() * 1e6)
        try:
            allowed, delay = await self.script(
                keys=[key], args=[rate, burst, ttl, now, self.max_delay_us]
            )
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self.worker.middleware_errors[(self.name, "redis")] += 1
            if not ex.done:
                ex.respond_error(errors.MIDDLEWARE_FAILED, f"{self.name}: redis: {exc}", FAILED)
            return
        if ex.done:
            return
        if allowed != b"true":
            ex.respond_local(429, TOO_MANY, extra=[b"X-Content-Type-Options: nosniff\r\n"])
            return
        wait = float(delay) / 1e6
        if wait > 0:
            self.worker.loop.call_later(wait, ex.resume, self.next)
        else:
            ex.resume(self.next)
