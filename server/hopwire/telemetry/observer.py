"""The seam between the request path and telemetry.

A router's observer is chosen once per config generation.  When nothing observes a router its
observer is ``None`` and the request path skips the call entirely, so the null observer costs
one attribute test at finish and nothing else.
"""

from __future__ import annotations

from typing import Any


class Observer:
    """What telemetry sees of an exchange.  Every method must return quickly and never raise.

    ``finish(ex)`` is called exactly once per exchange, when it ends for any reason (response
    written, error answered, client gone, tunnel established); ``ex`` carries the route, the
    method, the path, the status and timing fields the observer needs.
    """

    def finish(self, ex: Any) -> None:
        raise NotImplementedError
