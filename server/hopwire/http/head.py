"""Request and response heads as plain functions: validation, framing, hop-by-hop removal.

These hold every rule of RFC 9110/9112 that hopwire applies to a head (RELIABILITY 1-14) and
need no connection, loop or process: the unit tests call them with bytes.  ``Exchange`` keeps
the phases and calls these once per message.

``RequestHead`` is the parsed request as the rest of the request path reads it; ``Exchange``
extends it, so that the fields are the exchange's own slots and reading them costs nothing more.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping, Sequence

from hopwire import errors
from hopwire.errors import ProxyError
from hopwire.http._head import plain_path
from hopwire.http._head import scan_fields as compiled_scan_fields
from hopwire.http.path import PathError, normalise
from hopwire.http.wire import FORWARDED, HOP_BY_HOP

Fields = list[tuple[bytes, bytes]]

# fields the request scan treats itself; every other field is forwarded as it is
_SPECIAL = HOP_BY_HOP | FORWARDED | {b"host", b"content-length", b"expect"}
# where a tracer may run, the trace context is set apart too (RequestHead.tfields): ``traced``
# is a mask of the formats its propagators read
W3C = 1  # traceparent, tracestate
B3 = 2  # b3, X-B3-*
W3C_FIELDS = frozenset({b"traceparent", b"tracestate"})
B3_FIELDS = frozenset(
    {b"b3", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-sampled", b"x-b3-flags", b"x-b3-parentspanid"}
)
_SPECIAL_TRACED = {
    mask: _SPECIAL | (W3C_FIELDS if mask & W3C else set()) | (B3_FIELDS if mask & B3 else set())
    for mask in range(4)
}
# RFC 9110 §7.2 / RFC 3986 §3.2.2: uri-host [ ":" port ]
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]*)?")
# Connection tokens that are not field names to remove
_CONN_KNOWN = frozenset({b"close", b"keep-alive", b"upgrade", b""})
_NO_FIELDS: Mapping[bytes, bytes] = types.MappingProxyType({})
# the kept fields of a head not parsed (yet): empty, never added to (no list made for it)
_NOT_PARSED = typing.cast(Fields, ())
# authorities already validated and split (split_authority), shared by the requests of a
# worker: most connections send the same few Host values; emptied when it grows past this
_AUTHORITIES: dict[bytes, tuple[str, bytes]] = {}
_AUTHORITIES_KEPT = 1024


class RequestHead:
    """A validated request head.  Every field has a value from construction on, so that an
    observer can read a head that failed validation half-way (a 400 is observed too)."""

    __slots__ = (
        "authority",
        "chunked",
        "cl",
        "expect_continue",
        "fwd",
        "has_body",
        "host",
        "http10",
        "keep_alive",
        "kept",
        "method",
        "path",
        "path_query",
        "port",
        "query",
        "tfields",
        "upgrade",
    )

    def __init__(self) -> None:
        self.method = ""
        self.http10 = False
        self.authority = b""  # Host, or the absolute-form target's authority
        self.host = ""  # its host part, lower case
        self.port = b""  # the Host's port; empty: none given (the scheme's default)
        self.path_query = b""  # origin-form target as forwarded (normalised path + query)
        self.path = ""  # the routing path (see hopwire.http.path)
        self.query = ""
        # end-to-end fields, forwarded as they came, and the X-Forwarded-* of a trusted client;
        # read-only once read (a reader that filters assigns a new sequence), so the defaults
        # can be shared
        self.kept: Fields = _NOT_PARSED  # read_request sets the list the fields are kept in
        self.fwd: Mapping[bytes, bytes] = _NO_FIELDS
        self.chunked = False
        self.cl: bytes | None = None
        self.has_body = False
        self.expect_continue = False  # Expect: 100-continue from an HTTP/1.1 client
        self.keep_alive = True
        self.upgrade: bytes | None = None  # the Upgrade value of an upgrade request
        # the inbound trace context, found by the one head scan: its traceparent and
        # tracestate fields, in their order, kept apart from ``kept``: a tracer replaces them,
        # else they are forwarded as they came (after the other fields); None: there are none
        self.tfields: list[tuple[bytes, bytes]] | None = None


def _check_length(value: bytes, kind: errors.ErrorKind) -> None:
    """A Content-Length the parser accepted: more than 20 characters (leading zeros included)
    is refused, as strict peers such as h11 refuse it."""
    if len(value) > 20:
        raise ProxyError(kind, f"Content-Length of {len(value)} characters")


def connection_tokens(value: bytes) -> list[bytes]:
    """The lower-case tokens of a Connection field value."""
    return [t.strip() for t in value.lower().split(b",")]


def split_authority(authority: bytes) -> tuple[str, bytes]:
    """(host in lower case, port) of a Host value or absolute-form authority; b"" if no port."""
    text = authority.decode("latin-1").lower()
    if text.startswith("["):
        end = text.find("]") + 1
        host, rest = text[:end], text[end:]
    else:
        host, _, rest = text.partition(":")
        rest = ":" + rest if rest else ""
    port = rest[1:]
    return host, port.encode() if port.isdigit() else b""


def parse_target(target: bytes, method: str) -> tuple[bytes | None, bytes]:
    """(authority of an absolute-form target or None, origin-form path and query)."""
    if target[:1] == b"/":
        return None, target
    if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        # absolute-form: its authority wins over Host (RFC 9112 §3.2.2)
        rest = target.partition(b"://")[2]
        cut = len(rest)
        for sep in (b"/", b"?"):
            at = rest.find(sep)
            if 0 <= at < cut:
                cut = at
        authority, path_query = rest[:cut], rest[cut:]
        if path_query[:1] != b"/":
            path_query = b"/" + path_query
        if not authority or not _HOST.fullmatch(authority) or b"@" in authority:
            raise ProxyError(errors.BAD_REQUEST, "invalid authority in absolute-form target")
        return authority, path_query
    if target == b"*" and method == "OPTIONS":
        return None, target
    raise ProxyError(errors.BAD_REQUEST, "invalid request target")


def read_request(
    head: RequestHead,
    version: str,
    method: str,
    target: bytes,
    headers: Fields,
    trusted: bool,
    sanitize: bool,
    traced: int = 0,
) -> None:
    """Validate a request head and fill ``head``; raise ProxyError for a bad request.

    ``trusted``: the client may set X-Forwarded-* (forwardedHeaders); ``sanitize``: resolve dot
    segments and repeated slashes of the path (entryPoints.<ep>.http.sanitizePath);
    ``traced``: a tracer may run for this request (its entrypoint has one), so the inbound
    trace context goes to ``tfields`` instead of ``kept`` (elsewhere it is an ordinary field).
    """
    if version == "1.1":
        http10 = False
    elif version == "1.0":
        http10 = True
    elif version == "0.9":
        raise ProxyError(errors.BAD_REQUEST, "HTTP/0.9 request line")
    else:
        raise ProxyError(errors.VERSION_NOT_SUPPORTED, f"HTTP/{version}")
    head.http10 = http10
    head.method = method
    if method == "CONNECT":
        raise ProxyError(errors.METHOD_NOT_ALLOWED, "CONNECT to a reverse proxy")
    if target[:1] == b"/":
        authority, path_query = None, target  # origin-form, the common case
    else:
        authority, path_query = parse_target(target, method)
    path, _, query = path_query.partition(b"?")
    if query:
        if b"#" in query:
            raise ProxyError(errors.BAD_REQUEST, "fragment in the request target")
        head.query = query.decode("latin-1")
    if plain_path(path):  # the common case, and OPTIONS *: nothing to decode or clean
        head.path = path.decode("latin-1")
    else:
        if b"#" in path:
            raise ProxyError(errors.BAD_REQUEST, "fragment in the request target")
        try:
            forwarded, head.path = normalise(path, sanitize)
        except PathError as exc:
            raise ProxyError(errors.BAD_REQUEST, str(exc))
        if forwarded is not path:
            path_query = forwarded + b"?" + query if query else forwarded
    head.path_query = path_query

    (kept, host, hosts, tokens, te, cl, upgrade, fwd, tfields, expect, problem) = (
        compiled_scan_fields(headers, traced, trusted, http10)
    )
    if problem is not None:
        if problem[0] == LONG_LENGTH:
            _check_length(problem[1], errors.BAD_REQUEST)
        raise ProxyError(errors.EXPECTATION_FAILED, f"expectation {problem[1]!r}")
    head.expect_continue = expect
    if hosts > 1:
        raise ProxyError(errors.BAD_REQUEST, "more than one Host field")
    if host is None:
        if not http10 and authority is None:
            raise ProxyError(errors.BAD_REQUEST, "HTTP/1.1 request without Host")
    elif host not in _AUTHORITIES and not _HOST.fullmatch(host):
        raise ProxyError(errors.BAD_REQUEST, f"invalid Host {host[:64]!r}")
    if authority is not None:
        host = authority
    if te is not None:
        if http10:
            raise ProxyError(errors.BAD_REQUEST, "Transfer-Encoding in an HTTP/1.0 request")
        codings = [c.strip().lower() for c in te.split(b",")]
        if any(c != b"chunked" for c in codings):
            raise ProxyError(errors.NOT_IMPLEMENTED, f"transfer coding {te[:64]!r}")
        if len(codings) != 1:
            raise ProxyError(errors.BAD_REQUEST, "chunked applied more than once")
        head.chunked = True
    named = frozenset(tokens) - _CONN_KNOWN if tokens else None
    if named:
        kept = [(n, v) for n, v in kept if n.lower() not in named]
        if fwd is not None:
            fwd = {k: v for k, v in fwd.items() if k not in named}
        if tfields is not None:
            tfields = [f for f in tfields if f[0].lower() not in named] or None
    keep_alive = b"keep-alive" in tokens if http10 else b"close" not in tokens
    if upgrade is not None and b"upgrade" in tokens and not http10 and upgrade.lower() != b"h2c":
        # (Upgrade: h2c is answered over HTTP/1.1, as Traefik does: never sent on to a backend
        # that could switch the client's connection to its own HTTP/2)
        head.upgrade = upgrade
        keep_alive = False  # after an upgrade the connection is a tunnel or closes
    head.keep_alive = keep_alive
    head.cl = cl
    head.has_body = head.chunked or (cl is not None and cl != b"0")
    head.kept = kept
    if fwd:
        head.fwd = fwd
    head.tfields = tfields
    if host:
        head.authority = host
        split = _AUTHORITIES.get(host)
        if split is None:
            if len(_AUTHORITIES) >= _AUTHORITIES_KEPT:
                _AUTHORITIES.clear()
            split = _AUTHORITIES[host] = split_authority(host)
        head.host, head.port = split


LONG_LENGTH = 1  # scan_fields' problems: a Content-Length of more than 20 characters
BAD_EXPECT = 2  # ... an Expect other than 100-continue

ScannedFields = tuple[
    Fields,  # kept: the end-to-end fields, forwarded as they came
    bytes | None,  # the (last) Host value
    int,  # how many Host fields
    list[bytes],  # the Connection tokens, lower case
    bytes | None,  # the Transfer-Encoding values, joined with ","
    bytes | None,  # the (last) Content-Length value
    bytes | None,  # the (last) Upgrade value
    dict[bytes, bytes] | None,  # X-Forwarded-* and X-Real-Ip of a trusted client
    list[tuple[bytes, bytes]] | None,  # the trace context fields ``traced`` sets apart
    bool,  # Expect: 100-continue from an HTTP/1.1 client
    tuple[int, bytes] | None,  # the first problem (LONG_LENGTH, BAD_EXPECT) and its value
]


def scan_fields(headers: Fields, traced: int, trusted: bool, http10: bool) -> ScannedFields:
    """The reference of the compiled ``hopwire.http._head.scan_fields``, which
    ``read_request`` runs: the one pass over a request's fields that sets apart what the
    head rules read (``ScannedFields``) from what is forwarded as it came.  Hop-by-hop fields
    (RFC 9110 §7.6.1), and X-Forwarded-* from a client that is not trusted, are dropped.  The
    scan stops at the first problem, which ``read_request`` answers."""
    kept: Fields = []
    host: bytes | None = None
    hosts = 0
    tokens: list[bytes] = []
    te: bytes | None = None
    cl: bytes | None = None
    upgrade: bytes | None = None
    fwd: dict[bytes, bytes] | None = None
    tfields: list[tuple[bytes, bytes]] | None = None
    expect = False
    problem: tuple[int, bytes] | None = None
    special = _SPECIAL_TRACED[int(traced) & (W3C | B3)]
    for name, value in headers:
        lname = name.lower()
        if lname not in special:
            kept.append((name, value))
        elif lname == b"host":
            hosts += 1
            host = value
        elif lname == b"connection":
            tokens += connection_tokens(value)
        elif lname == b"content-length":
            if len(value) > 20:
                problem = (LONG_LENGTH, value)
                break
            cl = value
        elif lname == b"transfer-encoding":
            te = value if te is None else te + b"," + value
        elif lname == b"expect":
            if value.lower() != b"100-continue":
                problem = (BAD_EXPECT, value)
                break
            if not http10:  # RFC 9110 §10.1.1: ignore 100-continue from HTTP/1.0
                kept.append((name, value))
                expect = True
        elif lname == b"upgrade":
            upgrade = value
        elif lname in W3C_FIELDS or lname in B3_FIELDS:  # set apart only where traced
            if tfields is None:
                tfields = [(name, value)]
            else:
                tfields.append((name, value))
        elif lname in FORWARDED and trusted:
            if fwd is None:
                fwd = {}
            fwd[lname] = value
        # every other hop-by-hop field is dropped (RFC 9110 §7.6.1)
    return kept, host, hosts, tokens, te, cl, upgrade, fwd, tfields, expect, problem


def field_lines(fields: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The reference of the compiled ``hopwire.http._head.field_lines``: ``name: value``
    lines, each ending in CRLF."""
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in fields)


def response_fields(
    headers: Fields, first: bytes, skip: frozenset[bytes] = HOP_BY_HOP
) -> tuple[list[bytes], bytes | None, bool, bytes | None]:
    """A response head's wire pieces, ``first`` (its status line) then the end-to-end fields,
    with what framing needs: (pieces, Content-Length value, chunked, Upgrade value).

    Hop-by-hop fields and every field a Connection header names are removed (RFC 9110 §7.6.1),
    and so are the other lower-case names in ``skip`` (a superset of HOP_BY_HOP: the fields
    a route's middlewares replace).  A transfer coding other than chunked, or chunked twice,
    raises ProxyError (BAD_RESPONSE).
    """
    lines: list[bytes] = [first]
    cl: bytes | None = None
    chunked = False
    upgrade: bytes | None = None
    named: list[bytes] | None = None
    for name, value in headers:
        lname = name.lower()
        if lname in skip:
            if lname == b"connection":
                tokens = value.lower().split(b",")
                named = tokens if named is None else named + tokens
            elif lname == b"transfer-encoding":
                # only chunked, once (as Go's client for Traefik: other codings are a 502)
                if chunked or value.strip().lower() != b"chunked":
                    raise ProxyError(errors.BAD_RESPONSE, f"transfer coding {value[:64]!r}")
                chunked = True
            elif lname == b"upgrade":
                upgrade = value
            continue
        if lname == b"content-length":
            _check_length(value, errors.BAD_RESPONSE)
            cl = value
        lines += (name, b": ", value, b"\r\n")
    if named is not None:
        extra = frozenset(t.strip() for t in named) - _CONN_KNOWN
        if extra:
            lines = [first]
            for name, value in headers:
                lname = name.lower()
                if lname not in skip and lname not in extra:
                    lines += (name, b": ", value, b"\r\n")
    return lines, cl, chunked, upgrade


# RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ); llhttp lets control
# characters through
_BAD_REASON = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]").search


def locate_head(buf: bytes, at: int) -> tuple[bytes, int, int, bytes, int]:
    """The reference of the compiled ``hopwire.http._head.locate_head``: the response head
    the parser has just validated, beginning at ``at`` of ``buf`` (after the empty lines the
    parser skips) and ending at its first empty line (llhttp requires CRLF line ends): (head,
    where it ends in ``buf``, where its first field line begins in it, reason phrase, its
    Content-Length or -1 when it has none of at most 18 digits).  A control character in the
    reason phrase raises ValueError."""
    if at < 0:
        raise ValueError("no head at this offset")
    size = len(buf)
    while at < size and buf[at] in b"\r\n":
        at += 1
    end = buf.find(b"\r\n\r\n", at)
    if end < 0:
        raise ValueError("no complete head at this offset")
    end += 4
    head = buf[at:end] if at or end != size else buf
    line_end = head.find(b"\r\n")
    space = head.find(b" ", 0, line_end)
    space = head.find(b" ", space + 1, line_end) if space >= 0 else -1
    reason = head[space + 1 : line_end] if space >= 0 else b""
    if _BAD_REASON(reason) is not None:
        raise ValueError(f"control character in the reason phrase {reason[:64]!r}")
    length = -1
    for line in head[line_end + 2 : -4].split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            value = line[15:].strip(b" \t")
            if value and len(value) <= 18 and all(48 <= c <= 57 for c in value):
                length = int(value)
            break
    return head, end, line_end + 2, reason, length


def split_fields(head: bytes, start: int) -> Fields:
    """The (name, value) fields of a head the parser validated: ``head`` is the whole message
    head (start line, field lines, empty line, each ending in CRLF) and ``start`` is where its
    first field line begins.  A value loses its leading whitespace, as the parser gives it."""
    block = head[start:-4]
    if not block:
        return []
    fields: Fields = []
    for line in block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        fields.append((name, value.lstrip(b" \t")))
    return fields


# hop-by-hop fields forward_head leaves to response_fields (rare in responses)
_RARE_HOP = tuple(
    b"\n" + name + b":"
    for name in sorted(HOP_BY_HOP - {b"connection", b"transfer-encoding", b"keep-alive"})
)
_CUT_HOP = (b"\nconnection:", b"\ntransfer-encoding:", b"\nkeep-alive:")


def forward_head(
    head: bytes, start: int, first: bytes
) -> tuple[list[bytes], bytes | None, bool, bytes | None] | None:
    """The reference of the compiled ``hopwire.http._head.forward_head``, which the request
    path runs: ``response_fields`` for a response head as received (see ``split_fields`` for ``head``
    and ``start``), without splitting it into fields: the field block is forwarded as it came,
    less the hop-by-hop lines a response commonly has (a Connection naming only close or
    keep-alive, Transfer-Encoding: chunked, Keep-Alive).  None when the head needs the field by
    field rules of ``response_fields`` (another hop-by-hop field, a Connection naming fields,
    a field twice, a transfer coding other than chunked)."""
    low = head.lower()
    for name in _RARE_HOP:
        if name in low:
            return None
    cl: bytes | None = None
    at = low.find(b"\ncontent-length:")
    if at >= 0:  # one at most: the parser refuses a second
        cl = head[at + 16 : low.find(b"\r", at + 16)].strip(b" \t")
        if len(cl) > 20:
            return None  # refused by response_fields
    chunked = False
    cuts: list[tuple[int, int]] | None = None
    for name in _CUT_HOP:
        at = low.find(name)
        if at < 0:
            continue
        if low.find(name, at + 1) >= 0:
            return None
        end = low.find(b"\r", at)
        value = low[at + len(name) : end]
        if name == b"\nconnection:":
            for token in value.split(b","):
                if token.strip(b" \t") not in _CONN_KNOWN:
                    return None
        elif name == b"\ntransfer-encoding:":
            if value.strip(b" \t") != b"chunked":
                return None
            chunked = True
        cut = (at + 1, end + 2)
        if cuts is None:
            cuts = [cut]
        else:
            cuts.append(cut)
    last = len(head) - 2
    if cuts is None:
        return ([first, head[start:last]] if start < last else [first]), cl, False, None
    cuts.sort()
    parts = [first]
    pos = start
    for begin, end in cuts:
        if begin > pos:
            parts.append(head[pos:begin])
        pos = end
    if pos < last:
        parts.append(head[pos:last])
    return parts, cl, chunked, None
