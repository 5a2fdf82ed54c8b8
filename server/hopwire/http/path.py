"""The request path as Traefik v3 routes and forwards it (RELIABILITY 34).

A path is routed and forwarded in its normalised form, so that a backend can never see a
different resource than the one the router matched:

1. Bytes that are not valid in an encoded path (``{``, ``"``, a space, non-ASCII...) mean the
   path is re-encoded from its decoded form, as Go's ``URL.EscapedPath`` does: every byte other
   than unreserved and ``$&+,/:;=@`` is percent-encoded (so ``/a{b`` goes out as ``/a%7Bb``).
2. Percent-encoded unreserved characters are decoded and the other encodings upper-cased
   (RFC 3986 §2.3, §6.2.2.1): ``/%61dmin`` is ``/admin``, ``%2f`` is ``%2F``.
3. With ``sanitizePath`` (on by default): dot segments are resolved and repeated slashes merged
   (RFC 3986 §6.2.2.3; encoded dots were decoded in step 2), keeping a trailing slash.

The routing path is the forwarded one with every encoding decoded except the reserved
characters (RFC 3986 §2.2) and ``%``: ``/a%20b`` matches ``PathPrefix(`/a b`)`` while
``/admin%2Fx`` keeps its ``%2F``.  An invalid encoding (``%zz``, a ``%`` near the end) is a 400,
as is a fragment in the target.

Most paths need none of this: one regular-expression scan (``NOT_PLAIN``) finds that a path
has only plain bytes and no ``//`` or ``/.``, and it is used as it is.
"""

from __future__ import annotations

import re

_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_UNRESERVED = frozenset(_ALNUM + b"-._~")
# bytes Go accepts in an already-encoded path (url.validEncoded for encodePath), % aside
_VALID = _ALNUM + b"-._~!$&'()*+,;=:@[]/"
_VALID_ENCODED = _VALID + b"%"
# bytes left as they are when Go encodes a decoded path (url.shouldEscape, encodePath)
_KEEP_WHEN_ENCODING = frozenset(_ALNUM + b"-._~$&+,/:;=@")
# RFC 3986 §2.2 reserved characters, and %: their encodings keep their meaning in the route
_RESERVED = frozenset(b":/?#[]@!$&'()*+,;=%")
_PCT = re.compile(rb"%(.?.?)")
# a path that needs any of the steps: a byte outside _VALID (% included), "//" or "/."
NOT_PLAIN = re.compile(rb"[^A-Za-z0-9\-._~!$&'()*+,;=:@\[\]/]|//|/\.")
_HEX = frozenset(b"0123456789abcdefABCDEF")

# Traefik's entryPoints.<ep>.http.encodedCharacters options -> the encodings they allow
ENCODED_CHARACTERS = {
    "allowEncodedSlash": (b"%2F",),
    "allowEncodedBackSlash": (b"%5C",),
    "allowEncodedNullCharacter": (b"%00",),
    "allowEncodedSemicolon": (b"%3B",),
    "allowEncodedPercent": (b"%25",),
    "allowEncodedQuestionMark": (b"%3F",),
    "allowEncodedHash": (b"%23",),
}


class PathError(ValueError):
    """The path cannot be decoded (answered 400)."""


def _byte(m: re.Match[bytes]) -> int:
    """The byte a ``%XX`` match encodes; PathError when it is not two hex digits."""
    code = m.group(1)
    if len(code) != 2 or code[0] not in _HEX or code[1] not in _HEX:
        raise PathError(f"invalid percent-encoding {m.group(0)!r} in the path")
    return int(code, 16)


def _decode_all(path: bytes) -> bytes:
    return _PCT.sub(lambda m: bytes((_byte(m),)), path)


def _encode(path: bytes) -> bytes:
    keep = _KEEP_WHEN_ENCODING
    return b"".join(bytes((c,)) if c in keep else b"%%%02X" % c for c in path)


def _normalise_encodings(path: bytes) -> bytes:
    """Decode unreserved encodings, upper-case the others (RFC 3986 §6.2.2.1, §6.2.2.2)."""

    def one(m: re.Match[bytes]) -> bytes:
        c = _byte(m)
        return bytes((c,)) if c in _UNRESERVED else b"%%%02X" % c

    return _PCT.sub(one, path)


def remove_dot_segments(path: bytes) -> bytes:
    """Resolve ``.`` and ``..``, merge repeated slashes; a trailing slash is kept (Go's
    ``URL.JoinPath``: ``path.Clean`` plus the trailing slash)."""
    out: list[bytes] = []
    for segment in path.split(b"/"):
        if segment == b"..":
            if out:
                out.pop()
        elif segment and segment != b".":
            out.append(segment)
    cleaned = b"/" + b"/".join(out)
    if path.endswith(b"/") and not cleaned.endswith(b"/"):
        cleaned += b"/"
    return cleaned


def _routing(path: bytes) -> str:
    if b"%" not in path:
        return path.decode("latin-1")

    def one(m: re.Match[bytes]) -> bytes:
        c = int(m.group(1), 16)
        return m.group(0) if c in _RESERVED else bytes((c,))

    return _PCT.sub(one, path).decode("latin-1")


def normalise(path: bytes, sanitize: bool) -> tuple[bytes, str]:
    """(path to forward, path to route on) of an origin-form path (no query); PathError if it
    cannot be decoded."""
    if NOT_PLAIN.search(path) is None:
        return path, path.decode("latin-1")  # plain: nothing to decode or clean
    if path.translate(None, _VALID_ENCODED):
        path = _encode(_decode_all(path))  # bytes Go would not take as they are: re-encode
    elif b"%" in path:
        path = _normalise_encodings(path)
    if sanitize and (b"//" in path or b"/." in path):
        path = remove_dot_segments(path)
    return path, _routing(path)


def denied_encodings(allowed: dict[str, bool]) -> tuple[bytes, ...]:
    """The (upper-case) encodings an entrypoint rejects, from its encodedCharacters options."""
    return tuple(
        code for name, codes in ENCODED_CHARACTERS.items() if not allowed[name] for code in codes
    )


def has_denied(path: bytes, denied: tuple[bytes, ...]) -> bytes | None:
    """The first denied encoding in a normalised path (encodings are upper-case there)."""
    if b"%" in path:
        for code in denied:
            if code in path:
                return code
    return None
