"""Request and response head rules (hopwire.http.head), driven with bytes, no process."""

from __future__ import annotations

import pytest

from hopwire import errors
from hopwire.errors import ProxyError
from hopwire.http.head import (
    RequestHead,
    parse_target,
    read_request,
    response_fields,
    split_authority,
)

Fields = list[tuple[bytes, bytes]]


def head(
    headers: Fields, target: bytes = b"/p?q=1", version: str = "1.1", method: str = "GET"
) -> RequestHead:
    h = RequestHead()
    read_request(h, version, method, target, headers, trusted=False, sanitize=True)
    return h


def refused(headers: Fields, target: bytes = b"/", version: str = "1.1") -> errors.ErrorKind:
    with pytest.raises(ProxyError) as info:
        head(headers, target, version)
    return info.value.kind


def test_fields_sorted_into_their_roles() -> None:
    h = head(
        [
            (b"Host", b"A.Test:8080"),
            (b"Connection", b"keep-alive, X-Drop"),
            (b"X-Drop", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Content-Length", b"5"),
            (b"X-Forwarded-For", b"1.2.3.4"),
            (b"Accept", b"*/*"),
        ]
    )
    assert (h.host, h.port, h.authority) == ("a.test", b"8080", b"A.Test:8080")
    assert h.kept == [(b"Accept", b"*/*")]  # hop-by-hop, named and untrusted X-F-F removed
    assert h.fwd == {}
    assert (h.cl, h.has_body, h.chunked, h.keep_alive) == (b"5", True, False, True)
    assert (h.path, h.query, h.path_query) == ("/p", "q=1", b"/p?q=1")


def test_trusted_forwarded_fields_are_kept() -> None:
    h = RequestHead()
    read_request(h, "1.1", "GET", b"/", [(b"Host", b"a"), (b"X-Real-Ip", b"9.9.9.9")], True, True)
    assert h.fwd == {b"x-real-ip": b"9.9.9.9"}


def test_framing_and_version_rules() -> None:
    assert refused([(b"Host", b"a"), (b"Host", b"b")]) is errors.BAD_REQUEST
    assert refused([]) is errors.BAD_REQUEST  # HTTP/1.1 without Host
    assert refused([(b"Host", b"a b")]) is errors.BAD_REQUEST
    assert refused([(b"Host", b"a")], version="2.0") is errors.VERSION_NOT_SUPPORTED
    assert refused([(b"Host", b"a"), (b"Transfer-Encoding", b"gzip")]) is errors.NOT_IMPLEMENTED
    te = [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")]
    assert refused(te) is errors.BAD_REQUEST
    assert refused([(b"Transfer-Encoding", b"chunked")], version="1.0") is errors.BAD_REQUEST
    assert refused([(b"Host", b"a"), (b"Expect", b"later")]) is errors.EXPECTATION_FAILED
    assert refused([(b"Host", b"a")], target=b"/a#frag") is errors.BAD_REQUEST
    assert refused([(b"Host", b"a")], target=b"/a%zz") is errors.BAD_REQUEST
    assert head([], version="1.0").keep_alive is False  # HTTP/1.0 closes unless asked
    assert head([(b"Connection", b"Keep-Alive")], version="1.0").keep_alive is True


def test_expect_continue_and_upgrade() -> None:
    h = head([(b"Host", b"a"), (b"Expect", b"100-continue"), (b"Content-Length", b"3")])
    assert h.expect_continue and (b"Expect", b"100-continue") in h.kept
    h10 = head([(b"Expect", b"100-continue")], version="1.0")  # ignored (RFC 9110 §10.1.1)
    assert not h10.expect_continue and h10.kept == []
    up = head([(b"Host", b"a"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")])
    assert up.upgrade == b"websocket" and up.keep_alive is False


def test_targets_and_authorities() -> None:
    assert parse_target(b"http://b.test:81/x?y", "GET") == (b"b.test:81", b"/x?y")
    assert parse_target(b"http://b.test", "GET") == (b"b.test", b"/")
    assert parse_target(b"*", "OPTIONS") == (None, b"*")
    with pytest.raises(ProxyError):
        parse_target(b"http://u@b/", "GET")
    with pytest.raises(ProxyError):
        parse_target(b"x", "GET")
    assert split_authority(b"[::1]:8443") == ("[::1]", b"8443")
    assert split_authority(b"Example.COM") == ("example.com", b"")  # the scheme decides
    h = head([(b"Host", b"ignored")], target=b"http://abs.test:9/q")
    assert (h.host, h.port, h.path_query) == ("abs.test", b"9", b"/q")


def test_normalised_path_is_routed_and_forwarded() -> None:
    h = head([(b"Host", b"a")], target=b"/x/../%61dmin?k=v")
    assert (h.path, h.path_query) == ("/admin", b"/admin?k=v")


def test_response_fields() -> None:
    lines, cl, chunked, upgrade = response_fields(
        [
            (b"Content-Length", b"2"),
            (b"Connection", b"close, X-Secret"),
            (b"X-Secret", b"s"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Upgrade", b"websocket"),
            (b"X-Kept", b"k"),
        ],
        b"HTTP/1.1 200 OK\r\n",
    )
    assert b"".join(lines) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Kept: k\r\n"
    assert (cl, chunked, upgrade) == (b"2", True, b"websocket")
