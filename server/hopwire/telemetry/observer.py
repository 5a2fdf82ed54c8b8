"""The seam between the request path and telemetry.

A router's observers (tracing, metrics, access log: those switched on for it) are chosen once
per config generation, as a tuple the exchange calls in turn.  When nothing observes a router
the tuple is empty and the request path skips the calls entirely: one truth test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hopwire.contracts import Observer

if TYPE_CHECKING:
    from hopwire.telemetry.tracing import Tracer


def observers_of(tracer: Tracer | None, *others: Observer | None) -> tuple[Observer, ...]:
    """The observers of a router, in the order the exchange calls them: the tracer first (so
    that the others see the trace), then metrics and the access log; those that are off
    (None) are left out.  The tracer is told the others: an unsampled exchange has nothing
    for it to record at the end, so it leaves the exchange to them; with tracing.keep, the
    metrics observer (when the router has one) hands it back if it failed or was slow."""
    rest = tuple(o for o in others if o is not None)
    meter = next((o for o in rest if hasattr(o, "keeping")), None)
    if meter is not None:  # a router's meter outlives a configuration: keeping is set anew
        meter.keeping(None, False, 0.0)
    if tracer is None:
        return rest
    tracer.others = rest
    if tracer.keeper is not None:  # tracing.keep: an unsampled exchange may be kept at its end
        if meter is not None:  # by the metrics observer, which reads what it needs anyway
            meter.keeping(tracer.keep, tracer.keep_errors, tracer.keep_slower)
            tracer.kept = rest
        else:  # by a Keeper, first
            tracer.kept = (tracer.keeper, *rest)
    return (tracer, *rest)
