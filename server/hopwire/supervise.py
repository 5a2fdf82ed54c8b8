"""Supervision of the master's children: one small supervisor per kind, each with its backoff.

The arbiter forks two kinds of children: workers (one per slot) and span exporters (one per
index).  Each kind has its own ``Supervisor``: the children alive (pid -> what it is), the
ones to start again and when, and its own ``Backoff``.  A crashing exporter therefore never
slows a worker's respawn, and the other way round; both delays are jittered, so that children
that died together do not come back in the same instant.

A worker that stops ticking (``heartbeatTimeout``) is first asked for its Python stack: it
registered ``faulthandler`` for ``STACK_SIGNAL``, which writes every thread's traceback to its
log from inside the signal handler, whatever the Python code is stuck in.  It gets SIGKILL
``STACK_GRACE`` seconds later.  (The model is gunicorn's arbiter, which sends SIGABRT to a
timed-out worker before it kills it.)
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from typing import Generic, TypeVar

from hopwire.worker import STACK_SIGNAL  # a worker writes its Python stack to its log

STACK_GRACE = 1.0  # seconds between the stack request and SIGKILL
BACKOFF_BASE = 0.05  # the delay after a first failure
BACKOFF_MAX = 5.0
BACKOFF_WINDOW = 60.0  # failures older than this are forgotten

T = TypeVar("T")


class Backoff:
    """Restart delays of one kind of child: ``base`` doubled for every failure of the last
    ``window`` seconds, at most ``cap``, then jittered down by up to half."""

    def __init__(
        self,
        base: float = BACKOFF_BASE,
        cap: float = BACKOFF_MAX,
        window: float = BACKOFF_WINDOW,
        jitter: Callable[[], float] = random.random,
    ):
        self.base = base
        self.cap = cap
        self.window = window
        self.jitter = jitter
        self.failures: list[float] = []

    def failed(self, now: float) -> float:
        """A child failed at ``now``: the delay before it is started again."""
        self.failures = [t for t in self.failures if now - t < self.window] + [now]
        delay = min(self.cap, self.base * 2 ** (len(self.failures) - 1))
        return delay * (1.0 - 0.5 * self.jitter())


class Supervisor(Generic[T]):
    """The children of one kind: ``children`` (pid -> its record) and ``respawn_at`` (key ->
    when it is started again; a worker's slot, an exporter's index)."""

    def __init__(self, backoff: Backoff | None = None):
        self.backoff = backoff or Backoff()
        self.children: dict[int, T] = {}
        self.respawn_at: dict[int, float] = {}

    def died(self, key: int, now: float) -> float:
        """Child ``key`` died unexpectedly: schedule it after this kind's backoff."""
        delay = self.backoff.failed(now)
        self.respawn_at[key] = now + delay
        return delay

    def due(self, now: float) -> list[int]:
        """The keys whose restart time has come (taken off the schedule)."""
        keys = [key for key, when in self.respawn_at.items() if when <= now]
        for key in keys:
            del self.respawn_at[key]
        return keys


class Stuck:
    """Workers that stopped ticking: when each was asked for its stack (pid -> time)."""

    def __init__(self, grace: float = STACK_GRACE):
        self.grace = grace
        self.asked: dict[int, float] = {}

    def step(self, pid: int, now: float) -> int | None:
        """The signal to send a worker found stuck at ``now``: the stack request the first
        time, SIGKILL once ``grace`` has passed since, else None (still waiting)."""
        asked = self.asked.get(pid)
        if asked is None:
            self.asked[pid] = now
            return STACK_SIGNAL
        if now - asked >= self.grace:
            return signal.SIGKILL
        return None

    def forget(self, pid: int) -> None:
        self.asked.pop(pid, None)
