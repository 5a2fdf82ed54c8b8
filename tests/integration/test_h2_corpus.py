"""The malformed-request corpus (tests/corpus/requests) replayed over HTTP/2 where it applies:
each HTTP/1.1 case's request line and fields sent as one HTTP/2 request (python-hyper's h2
with its own checks off, so that what it would refuse to send is sent), the body as DATA.
Cases about HTTP/1.1's own framing (bare CR or LF, obs-fold, chunk syntax, versions in the
request line, a TLS or HTTP/2 preface) have no HTTP/2 form and are left out.  Over HTTP/2 a
refused request is an error status or its stream reset (RFC 9113 §8.1.1: malformed); either
way nothing reaches the backend, and the worker keeps serving."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.harness import Backend, Hopwire, catch_all, request
from tests.integration.test_corpus import load_case
from tests.integration.test_h2 import Client

# case -> what HTTP/2 makes of it: "refused" (an error status, or the stream reset) or
# "forwarded" (200 from the backend)
APPLIES = {
    "001-no-host": "refused",  # neither :authority nor host
    "003-invalid-host": "refused",
    "004-invalid-host-userinfo": "refused",
    "009-request-line-too-long": "refused",
    "010-header-section-too-large": "refused",
    "011-too-many-fields": "refused",
    "013-invalid-field-name": "refused",
    "017-nul-in-value": "refused",
    "019-unknown-method-token": "forwarded",
    "020-malformed-method": "refused",
    "021-cl-and-te": "refused",
    "023-conflicting-cl": "refused",
    "024-cl-plus": "refused",
    "025-cl-negative": "refused",
    "026-cl-hex": "refused",
    "027-cl-overflow": "refused",
    "028-te-unknown-coding": "refused",
    "029-te-chunked-not-final": "refused",
    "034-unknown-expectation": "refused",
    "038-connect": "refused",
    "040-bad-target": "refused",
    "045-content-length-21-chars": "refused",
}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hopwire, Backend]]:
    backend = Backend("corpus-h2")
    hw = Hopwire(tmp_path_factory.mktemp("corpus-h2"), {"http": catch_all(backend.url)}).start()
    yield hw, backend
    hw.stop()
    backend.close()


def translate(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """An HTTP/1.1 case as HTTP/2 header fields (pseudo-header fields first, Host as
    :authority) and a body."""
    head, _, body = data.partition(b"\r\n\r\n")
    line, *lines = head.split(b"\r\n")
    method, target, _ = re.split(rb" ", line, maxsplit=2)
    fields = [tuple(x.strip() for x in field.split(b":", 1)) for field in lines if field]
    hosts = [v for n, v in fields if n.lower() == b"host"]
    pseudo = [(b":method", method), (b":path", target), (b":scheme", b"http")]
    if hosts:
        pseudo.append((b":authority", hosts[0]))
    rest = [(n.lower(), v) for n, v in fields if n.lower() != b"host"]
    return pseudo + rest, body  # type: ignore[return-value]


@pytest.mark.parametrize("name", sorted(APPLIES))
def test_corpus_case_over_http2(name: str, proxy: tuple[Hopwire, Backend]) -> None:
    hw, backend = proxy
    data, _ = load_case(name)
    headers, body = translate(data)
    before = len(backend.requests)
    c = Client(hw.port, strict=False)
    try:
        sid = c.h2.get_next_available_stream_id()
        c.h2.send_headers(sid, headers, end_stream=not body)
        c.flush()
        if body:
            c.h2.send_data(sid, body, end_stream=True)
            c.flush()
        status, _, _ = c.response(sid)
        reset = c.reset_code(sid) is not None or "closed" in c.events
    finally:
        c.close()
    if APPLIES[name] == "forwarded":
        assert status == 200, (name, c.events)
        assert len(backend.requests) == before + 1
    else:
        assert reset or 400 <= status < 600, (name, status, c.events)
        assert len(backend.requests) == before, (name, backend.requests[before:])
    assert request(hw.port, "GET", "/echo")[0] == 200  # the worker keeps serving
    assert hw.proc is not None and hw.proc.poll() is None
