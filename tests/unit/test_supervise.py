"""The supervisors' arithmetic: each kind's backoff is its own, jittered, bounded; a stuck
worker is asked for its stack once, then killed after the grace."""

from __future__ import annotations

import signal

import pytest

from hopwire.supervise import Backoff, Stuck, Supervisor
from hopwire.worker import STACK_SIGNAL


def test_backoff_doubles_is_capped_and_forgets() -> None:
    backoff = Backoff(base=0.05, cap=5.0, window=60.0, jitter=lambda: 0.0)
    assert [backoff.failed(t) for t in range(10)] == [0.05 * 2**i for i in range(7)] + [5.0] * 3
    assert backoff.failed(1000.0) == 0.05  # the old failures are out of the window


def test_backoff_jitter_takes_up_to_half_off() -> None:
    assert Backoff(jitter=lambda: 1.0).failed(0.0) == pytest.approx(0.025)
    assert Backoff(jitter=lambda: 0.5).failed(0.0) == pytest.approx(0.0375)


def test_two_supervisors_do_not_share_failures() -> None:
    workers: Supervisor[int] = Supervisor(Backoff(jitter=lambda: 0.0))
    exporters: Supervisor[int] = Supervisor(Backoff(jitter=lambda: 0.0))
    for t in range(5):
        exporters.died(0, float(t))
    assert exporters.respawn_at[0] == pytest.approx(4.0 + 0.8)
    assert workers.died(3, 5.0) == 0.05
    assert workers.due(5.04) == [] and workers.due(5.05) == [3] and workers.due(9.0) == []


def test_a_stuck_worker_is_asked_for_its_stack_then_killed() -> None:
    stuck = Stuck(grace=1.0)
    assert stuck.step(7, 10.0) == STACK_SIGNAL
    assert stuck.step(7, 10.5) is None
    assert stuck.step(7, 11.0) == signal.SIGKILL
    stuck.forget(7)  # it ticked again, or it was reaped
    assert stuck.step(7, 20.0) == STACK_SIGNAL
