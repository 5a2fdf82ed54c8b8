"""The one error mapping (hopwire.errors)."""

from __future__ import annotations

import logging

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
    assert not errors.closes(None, keep_alive=True, body_pending=False, draining=False)
    assert not errors.closes(errors.NO_ROUTE, True, False, False)  # the connection stays usable
    assert errors.closes(errors.BAD_REQUEST, True, False, False)  # framing: close (RFC 9112)
    assert errors.closes(None, True, True, False)  # the body was not read
    assert errors.closes(None, True, False, True)  # draining
    assert errors.closes(None, False, False, False)  # the client asked
