"""Path rewriting middlewares, as Traefik's: stripPrefix, addPrefix, replacePath,
replacePathRegex.

They rewrite the path that is forwarded (``Exchange.path_query``, the normalised encoded
form); what the client asked for (``Exchange.path``: the access log's RequestPath, the span's
url.path) stays as it came.  Like Traefik, stripPrefix and replacePathRegex refuse with 400 a
result that path cleaning would change (a rewrite must not smuggle in ``..`` or ``//``), and
record the original in ``X-Forwarded-Prefix`` / ``X-Replaced-Path``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from hopwire import errors
from hopwire.contracts import ExchangeView

Stage = Callable[[Any], bool]  # True: the stage answered the request itself
FORWARDED_PREFIX = b"X-Forwarded-Prefix"
REPLACED_PATH = b"X-Replaced-Path"


def split(ex: ExchangeView) -> tuple[bytes, bytes]:
    """(forwarded path, "?query" or b"") of an exchange."""
    raw, sep, query = ex.path_query.partition(b"?")
    return raw, sep + query


def decoded(raw: bytes) -> str:
    text = raw.decode("latin-1")
    return unquote(text) if "%" in text else text


def ensure_slash(path: str) -> str:
    return path if not path or path[0] == "/" else "/" + path


def joined(path: str) -> str:
    """Go's ``url.JoinPath()`` with no element: the path cleaned, its trailing slash kept."""
    parts: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
            continue
        parts.append(seg)
    out = "/" + "/".join(parts)
    if path.endswith("/") and not out.endswith("/"):
        out += "/"
    return out


def encoded_prefix_len(raw: str, prefix: str) -> int:
    """Characters of the encoded path that spell the decoded ``prefix`` (3 per %XX)."""
    done = i = 0
    while i < len(raw) and done < len(prefix):
        i += 3 if raw[i] == "%" and i + 2 < len(raw) else 1
        done += 1
    return i


def _reject(ex: ExchangeView, why: str) -> bool:
    ex.respond_error(errors.BAD_REQUEST, why)
    return True


def _strip(ex: ExchangeView, raw: bytes, rest: bytes, path: str, prefix: str) -> bool:
    """Remove ``prefix`` (a prefix of the decoded ``path``) from the forwarded path, as
    Traefik: X-Forwarded-Prefix, a leading slash, and 400 if cleaning would change it."""
    new_path = ensure_slash(path[len(prefix) :])
    text = raw.decode("latin-1")
    cut = encoded_prefix_len(text, prefix) if "%" in text else len(prefix)
    new_raw = ensure_slash(text[cut:])
    if ("//" in new_path or "/." in new_path) and joined(new_path) != new_path:
        return _reject(ex, f"{new_path!r} is not a clean path after stripping {prefix!r}")
    ex.kept.append((FORWARDED_PREFIX, prefix.encode("latin-1")))
    ex.path_query = (new_raw or "/").encode("latin-1") + rest
    return False


def strip_prefix(prefixes: tuple[str, ...]) -> Stage:
    trimmed = tuple(p.strip() for p in prefixes)
    plain = tuple((p.encode("latin-1"), p) for p in trimmed if "%" not in p)
    fast = len(plain) == len(trimmed)  # no prefix needs decoding to compare

    def stage(ex: ExchangeView) -> bool:
        path_query = ex.path_query
        if fast and b"%" not in path_query:  # the usual case: compare and cut the bytes
            raw, sep, query = path_query.partition(b"?")
            for prefix_b, prefix in plain:
                if raw.startswith(prefix_b):
                    new = raw[len(prefix_b) :]
                    if new[:1] != b"/":
                        new = b"/" + new  # an empty rest is the root, as Go's RequestURI
                    if b"//" in new or b"/." in new:
                        text = new.decode("latin-1")
                        if joined(text) != text:
                            return _reject(ex, f"{text!r} is not a clean path after {prefix!r}")
                    ex.kept.append((FORWARDED_PREFIX, prefix_b))
                    ex.path_query = new + sep + query
                    return False
            return False
        raw, rest = split(ex)
        path = decoded(raw)
        for prefix in trimmed:
            if path.startswith(prefix):
                return _strip(ex, raw, rest, path, prefix)
        return False

    return stage


def strip_prefix_regex(expressions: tuple[str, ...]) -> Stage:
    """The first expression whose leftmost match is a non-empty prefix of the path."""
    patterns = tuple(re.compile(e.strip()) for e in expressions)

    def stage(ex: ExchangeView) -> bool:
        raw, rest = split(ex)
        path = decoded(raw)
        for pattern in patterns:
            m = pattern.search(path)
            if m is not None and m.group(0) and path.startswith(m.group(0)):
                return _strip(ex, raw, rest, path, m.group(0))
        return False

    return stage


def add_prefix(prefix: str) -> Stage:
    def stage(ex: ExchangeView) -> bool:
        raw, rest = split(ex)
        ex.path_query = ensure_slash(prefix + raw.decode("latin-1")).encode("latin-1") + rest
        return False

    return stage


def replace_path(path: str) -> Stage:
    new = path.encode("latin-1")

    def stage(ex: ExchangeView) -> bool:
        raw, rest = split(ex)
        ex.kept.append((REPLACED_PATH, raw))
        ex.path_query = new + rest
        return False

    return stage


def go_template(template: str) -> Callable[[re.Match[str]], str]:
    """Go's regexp replacement template (``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``)
    as a function of a match: a name is the longest run of letters, digits and ``_``; a group
    that does not exist (or did not take part) is empty."""
    pieces: list[tuple[bool, str | int]] = []  # (is a group, literal text or group)
    text: list[str] = []
    i = 0
    while i < len(template):
        c = template[i]
        name = None
        if c == "$" and i + 1 < len(template):
            if template[i + 1] == "$":
                text.append("$")
                i += 2
                continue
            if template[i + 1] == "{":
                end = template.find("}", i + 2)
                if end > 0 and re.fullmatch(r"\w+", template[i + 2 : end]):
                    name, i = template[i + 2 : end], end + 1
            else:
                m = re.match(r"\w+", template[i + 1 :])
                if m is not None:
                    name = m.group(0)
                    i += 1 + len(name)
        if name is None:
            text.append(c)
            i += 1
            continue
        if text:
            pieces.append((False, "".join(text)))
            text = []
        pieces.append((True, int(name) if name.isdigit() else name))
    if text:
        pieces.append((False, "".join(text)))

    def expand(match: re.Match[str]) -> str:
        out = []
        for group, piece in pieces:
            if not group:
                out.append(str(piece))
                continue
            try:
                out.append(match.group(piece) or "")
            except (IndexError, KeyError):
                out.append("")
        return "".join(out)

    return expand


def replace_path_regex(regex: str, replacement: str) -> Stage:
    pattern = re.compile(regex)
    expand = go_template(replacement)

    def stage(ex: ExchangeView) -> bool:
        raw, rest = split(ex)
        current = raw.decode("latin-1")
        if pattern.search(current) is None:
            return False
        ex.kept.append((REPLACED_PATH, raw))
        new_raw = pattern.sub(expand, current)
        path = unquote(new_raw) if "%" in new_raw else new_raw
        if ("//" in path or "/." in path) and joined(path) != path:
            return _reject(ex, f"replacePathRegex: {path!r} is not a clean path")
        ex.path_query = (new_raw or "/").encode("latin-1") + rest
        return False

    return stage
