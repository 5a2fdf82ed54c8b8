"""The compiled head scans (hopwire/http/_head.c) give exactly their references' answers.

- forward_head: the response head as forwarded, equal to head.forward_head and, in the bytes
  that reach the client, to the field-by-field rules (response_fields).  Hypothesis draws
  response heads the parser accepts (the parser itself checks each one): any field names, the
  hop-by-hop and framing fields in any case, order and number, Connection values naming fields
  or not, any transfer coding, long Content-Length values.  A head the fast path declines
  (None) must be one the field-by-field rules also treat specially.
- locate_head: where a response head begins and ends in what was read, equal to
  head.locate_head, with the same errors.
- plain_path: a request path used as it is, equal to path.NOT_PLAIN finding nothing.
"""

from __future__ import annotations

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopwire import errors
from hopwire.errors import ProxyError
from hopwire.http import _head, head
from hopwire.http.path import NOT_PLAIN
from hopwire.http.wire import status_line

TOKEN = st.text("abcXYZ0-9!#$%&'*+.^_`|~-", min_size=1, max_size=12)
SPECIAL = st.sampled_from(
    [
        "Connection",
        "connection",
        "CONNECTION",
        "Keep-Alive",
        "Transfer-Encoding",
        "transfer-encoding",
        "Content-Length",
        "content-length",
        "TE",
        "Trailer",
        "Upgrade",
        "Proxy-Connection",
        "X-Kept",
    ]
)
VALUE = st.one_of(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
    st.sampled_from(
        [
            "close",
            "keep-alive",
            " Keep-Alive , close ",
            "upgrade",
            "x-kept",
            "close, x-kept",
            "",
            "chunked",
            " CHUNKED ",
            "gzip, chunked",
            "timeout=5",
            "12",
            "0000000000000000000012",
        ]
    ),
)
FIELD = st.tuples(st.one_of(TOKEN, SPECIAL), st.sampled_from(["", " ", "\t", "  "]), VALUE)


def parses(raw: bytes) -> bool:
    """The parser (llhttp, through httptools) accepts this head."""

    class Reader:
        complete = False

        def on_headers_complete(self) -> None:
            self.complete = True

    reader = Reader()
    try:
        httptools.HttpResponseParser(reader).feed_data(raw)
    except httptools.HttpParserError:
        return False
    return reader.complete


def framed(result: tuple[list[bytes], bytes | None, bool, bytes | None]) -> tuple:
    """What reaches the client (the joined head) and what framing reads from it; the
    separator after a name's colon is the backend's in one and ": " in the other."""
    parts, cl, chunked, upgrade = result
    lines = b"".join(parts).split(b"\r\n")
    normal = [lines[0]] + [
        n + b": " + v.lstrip(b" \t") for n, _, v in (line.partition(b":") for line in lines[1:])
    ]
    return normal, cl, chunked, upgrade


@settings(max_examples=3000, deadline=None)
@given(st.lists(FIELD, max_size=10), st.sampled_from([200, 204, 304, 404, 502, 599]))
def test_compiled_scan_is_the_reference(fields: list[tuple[str, str, str]], status: int) -> None:
    raw = (
        f"HTTP/1.1 {status} Reason\r\n"
        + "".join(f"{n}:{sep}{v}\r\n" for n, sep, v in fields)
        + "\r\n"
    ).encode("latin-1")
    if not parses(raw):
        return
    start = raw.find(b"\r\n") + 2
    first = status_line(status)
    reference = head.forward_head(raw, start, first)
    assert _head.forward_head(raw, start, first) == reference
    split = head.split_fields(raw, start)
    assert len(split) == len(fields)
    try:
        slow = head.response_fields(split, first)
    except ProxyError as exc:
        assert exc.kind is errors.BAD_RESPONSE
        assert reference is None  # what the rules refuse, the fast path leaves to them
        return
    if reference is not None:
        assert framed(reference) == framed(slow)


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", ([b"HTTP/1.1 200 OK\r\n"], None, False, None)),
        (
            b"HTTP/1.1 200 OK\r\nA: 1\r\nConnection: keep-alive\r\nB:2\r\n\r\n",
            ([b"HTTP/1.1 200 OK\r\n", b"A: 1\r\n", b"B:2\r\n"], None, False, None),
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5 \r\n\r\n",
            ([b"HTTP/1.1 200 OK\r\n", b"Content-Length: 5 \r\n"], b"5", True, None),
        ),
        (b"HTTP/1.1 200 OK\r\nConnection: close, x-named\r\nX-Named: 1\r\n\r\n", None),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", None),
        (b"HTTP/1.1 200 OK\r\nTrailer: x\r\n\r\n", None),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 000000000000000000001\r\n\r\n", None),
    ],
)
def test_forward_head_examples(raw: bytes, expected: object) -> None:
    start = raw.find(b"\r\n") + 2
    first = status_line(200)
    assert head.forward_head(raw, start, first) == expected
    assert _head.forward_head(raw, start, first) == expected


def test_compiled_scan_refuses_what_is_not_a_head() -> None:
    with pytest.raises(TypeError):
        _head.forward_head("HTTP/1.1 200 OK\r\n\r\n", 17, b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        _head.forward_head(b"HTTP/1.1 200 OK\r\n\r\n", 40, b"x")


def outcome(locate: object, buf: bytes, at: int) -> object:
    try:
        return locate(buf, at)  # type: ignore[operator]
    except ValueError as exc:
        return ("ValueError", str(exc))


@settings(max_examples=3000, deadline=None)
@given(
    st.binary(max_size=12),
    st.sampled_from(["", "\r\n", "\r\n\r\n", "\n"]),
    st.sampled_from(["HTTP/1.1 200 OK", "HTTP/1.1 200", "HTTP/1.1 200 ", "HTTP/1.0 599 a b\tc"])
    | st.binary(max_size=30).map(lambda b: "HTTP/1.1 404 " + b.decode("latin-1")),
    st.lists(FIELD, max_size=4),
    st.sampled_from([b"", b"body", b"\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"]),
    st.booleans(),
)
def test_compiled_locate_is_the_reference(
    before: bytes,
    empty: str,
    line: str,
    fields: list[tuple[str, str, str]],
    after: bytes,
    complete: bool,
) -> None:
    """Where a head begins and ends in what was read, its field lines and reason phrase."""
    text = empty + line + "\r\n" + "".join(f"{n}:{sep}{v}\r\n" for n, sep, v in fields)
    raw = text.encode("latin-1") + (b"\r\n" + after if complete else b"")
    buf = before + raw
    for at in (len(before), 0, len(buf)):
        assert outcome(_head.locate_head, buf, at) == outcome(head.locate_head, buf, at)
    if complete and all(c == "\t" or " " <= c < "\x7f" or c > "\x7f" for c in line):
        found, end, fields_at, reason, length = head.locate_head(buf, len(before))
        lengths = [v for n, _, v in fields if n.lower() == "content-length"]
        if lengths and lengths[0].strip(" \t").isdigit() and len(lengths[0].strip(" \t")) <= 18:
            assert length == int(lengths[0])
        else:
            assert length == -1
        assert found.startswith(line.encode("latin-1")) and found.endswith(b"\r\n\r\n")
        assert end == len(before) + len(empty) + len(found)
        assert head.split_fields(found, fields_at) == [
            (n.encode(), v.encode().lstrip(b" \t")) for n, _, v in fields
        ]


def test_locate_refuses_a_control_character_in_the_reason() -> None:
    buf = b"HTTP/1.1 200 O\x01K\r\n\r\n"
    for locate in (head.locate_head, _head.locate_head):
        with pytest.raises(ValueError, match="control character"):
            locate(buf, 0)
        with pytest.raises(ValueError, match="no head"):
            locate(buf, -1)


@settings(max_examples=3000, deadline=None)
@given(
    st.binary(max_size=40)
    | st.lists(st.sampled_from([b"/", b".", b"a", b"%", b"~", b"{", b"//", b"/.", b"\x80"])).map(
        b"".join
    )
)
def test_compiled_plain_path_is_the_pattern(path: bytes) -> None:
    """The compiled check of a request path is hopwire.http.path.NOT_PLAIN's answer."""
    assert _head.plain_path(path) is (NOT_PLAIN.search(path) is None)


REQUEST_NAME = st.sampled_from(
    [
        "Host",
        "HOST",
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",
        "Expect",
        "traceparent",
        "TraceState",
        "b3",
        "B3",
        "X-B3-TraceId",
        "x-b3-spanid",
        "X-B3-Sampled",
        "X-B3-Flags",
        "X-B3-ParentSpanId",
        "X-B3-Other",
        "X-Forwarded-For",
        "x-forwarded-proto",
        "X-Forwarded-Host",
        "X-Forwarded-Port",
        "X-Real-Ip",
        "Accept",
        "X-Hosts",
    ]
) | st.binary(min_size=1, max_size=18).map(lambda b: b.decode("latin-1"))
REQUEST_VALUE = st.sampled_from(
    [
        b"",
        b"close",
        b" Keep-Alive ,\tX-Drop ,, upgrade",
        b"chunked",
        b"100-continue",
        b"100-CONTINUE",
        b"200-ok",
        b"12",
        b"0" * 21,
        b"1.2.3.4",
    ]
) | st.binary(max_size=24)


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(
        st.tuples(REQUEST_NAME.map(lambda n: n.encode("latin-1")), REQUEST_VALUE), max_size=12
    ),
    st.sampled_from([False, True, 0, 1, 2, 3]),
    st.booleans(),
    st.booleans(),
)
def test_compiled_field_scan_is_the_reference(
    fields: list[tuple[bytes, bytes]], traced: int, trusted: bool, http10: bool
) -> None:
    """One pass over a request's fields: the same kept fields, framing values, Connection
    tokens, forwarded and trace fields (``traced``: W3C 1, B3 2, a bool as W3C), and the same
    first problem."""
    assert _head.scan_fields(fields, traced, trusted, http10) == head.scan_fields(
        fields, traced, trusted, http10
    )


def test_compiled_field_scan_refuses_what_is_not_fields() -> None:
    with pytest.raises(TypeError):
        _head.scan_fields([(b"a", "b")], False, False, False)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        _head.scan_fields(((b"a", b"b"),), False, False, False)  # type: ignore[arg-type]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=40)), max_size=10))
def test_compiled_field_lines_are_the_reference(fields: list[tuple[bytes, bytes]]) -> None:
    assert _head.field_lines(fields) == head.field_lines(fields)
    assert _head.field_lines(tuple(fields)) == head.field_lines(fields)


def test_compiled_field_lines_refuse_what_is_not_fields() -> None:
    with pytest.raises(TypeError):
        _head.field_lines([(b"a", "b")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        _head.field_lines(3)  # type: ignore[arg-type]
