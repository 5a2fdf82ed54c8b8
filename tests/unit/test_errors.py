"""The one error mapping (hopwire.errors)."""

from __future__ import annotations

import logging
from typing import Any

from hopwire import errors


def test_every_kind_is_complete() -> None:
    names = [k.name for k in errors.KINDS]
    assert len(names) == len(set(names))  # one metric label per kind
    for kind in errors.KINDS:
        assert kind.source in (errors.DOWNSTREAM, errors.UPSTREAM, errors.INTERNAL)
        assert 400 <= kind.status <= 599
        assert kind.log_level in (logging.INFO, logging.WARNING, logging.ERROR)
    assert errors.INTERNAL_ERROR.log_level == logging.ERROR  # only our own bugs page anyone


def test_retry_rule() -> None:
    closed = errors.UPSTREAM_CLOSED
    assert errors.may_retry(closed, reused=True, attempts=1, idempotent=True, sent_down=False)
    assert not errors.may_retry(closed, reused=False, attempts=1, idempotent=True, sent_down=False)
    assert not errors.may_retry(closed, reused=True, attempts=2, idempotent=True, sent_down=False)
    assert not errors.may_retry(closed, reused=True, attempts=1, idempotent=False, sent_down=False)
    assert not errors.may_retry(closed, reused=True, attempts=1, idempotent=True, sent_down=True)
    for kind in errors.KINDS:
        if kind is not closed:
            assert not errors.may_retry(kind, True, 1, True, False), kind.name


def test_close_decisions() -> None:
    """The one close rule (Downstream.closes), keepAliveMaxRequests included."""
    from types import SimpleNamespace

    from hopwire.http.downstream import Downstream

    def connection(draining: bool = False, max_requests: int = 0, served: int = 0) -> Any:
        worker = SimpleNamespace(draining=draining)
        down = Downstream(SimpleNamespace(worker=worker, max_requests=max_requests))  # type: ignore[arg-type]
        down.served = served
        return down

    down = connection()
    assert not down.closes(None, keep_alive=True, body_pending=False)
    assert not down.closes(errors.NO_ROUTE, True, False)  # the connection stays usable
    assert down.closes(errors.BAD_REQUEST, True, False)  # framing: close (RFC 9112)
    assert down.closes(None, True, True)  # the body was not read
    assert connection(draining=True).closes(None, True, False)
    assert down.closes(None, False, False)  # the client asked
    assert not connection(max_requests=3, served=1).closes(errors.NO_ROUTE, True, False)
    assert connection(max_requests=3, served=2).closes(errors.NO_ROUTE, True, False)
    assert connection(max_requests=3, served=2).closes(None, True, False)
