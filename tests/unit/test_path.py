"""Path normalisation as Traefik v3 does it (hopwire.http.path), without a process."""

from __future__ import annotations

import pytest

from hopwire.http.path import (
    PathError,
    denied_encodings,
    has_denied,
    normalise,
    remove_dot_segments,
)

# (raw path, router that serves it, target the backend receives), measured on Traefik 3.7.15;
# None: refused with 400
CASES: list[tuple[str, str | None, str | None]] = [
    ("/admin/x", "admin", "/admin/x"),
    ("/%61dmin/x", "admin", "/admin/x"),
    ("/x/../admin/x", "admin", "/admin/x"),
    ("/./admin/x", "admin", "/admin/x"),
    ("//admin/x", "admin", "/admin/x"),
    ("/%2E%2E/admin", "admin", "/admin"),
    ("/admin/%2e%2e/x", "other", "/x"),
    ("/admin/..", "other", "/"),
    ("/..", "other", "/"),
    ("/a/b/../../..", "other", "/"),
    ("/admin%2Fx", "admin", "/admin%2Fx"),
    ("/admin%2fx", "admin", "/admin%2Fx"),
    ("/admin%3bx", "admin", "/admin%3Bx"),
    ("/admin;x", "admin", "/admin;x"),
    ("/admin/x/", "admin", "/admin/x/"),
    ("/admin/x/.", "admin", "/admin/x"),
    ("/admin/%2e/x/", "admin", "/admin/x/"),
    ("/admin/x%25", "admin", "/admin/x%25"),
    ("/admin/x?q=/../y", "admin", "/admin/x?q=/../y"),
    ("/a%20b", "other", "/a%20b"),
    ("/a%7e%41", "other", "/a~A"),
    ("/A%2fB%3a", "other", "/A%2FB%3A"),
    ("/a%2e", "other", "/a."),
    ("/a/%2E%2E%2Fb", "other", "/a/..%2Fb"),
    ("/a%21b", "other", "/a%21b"),
    ("/a[b]", "other", "/a[b]"),
    ("/a{b", "other", "/a%7Bb"),
    ("/a%2Fb{", "other", "/a/b%7B"),
    ("/a!b{", "other", "/a%21b%7B"),
    ("/a\\b", "other", "/a%5Cb"),
    ("/caf\xc3\xa9", "other", "/caf%C3%A9"),
    ("/a%zz", None, None),
    ("/a%2", None, None),
    ("/admin#frag", None, None),
]

# Where hopwire answers differently on purpose: raw non-ASCII bytes in a request target are not
# a URI (RFC 3986 §2, RFC 9112 §3.2) and llhttp refuses them; Go (Traefik) percent-encodes them.
DIFFERENT = {"/caf\xc3\xa9": (400, None, None)}


def route(routing_path: str) -> str:
    """The routers of the cases: PathPrefix(`/admin`), else the catch-all."""
    return "admin" if routing_path.startswith("/admin") else "other"


@pytest.mark.parametrize(("path", "router", "target"), CASES)
def test_cases(path: str, router: str | None, target: str | None) -> None:
    raw = path.encode("latin-1")
    raw_path, sep, query = raw.partition(b"?")
    if router is None:
        with pytest.raises(PathError):
            if b"#" in raw:
                raise PathError("fragment")  # refused by the head rules before normalising
            normalise(raw_path, True)
        return
    forwarded, routing = normalise(raw_path, True)
    assert (forwarded + sep + query).decode("latin-1") == target
    assert route(routing) == router


def test_plain_path_is_returned_as_is() -> None:
    path = b"/api/v1/users/42"
    forwarded, routing = normalise(path, True)
    assert forwarded is path and routing == "/api/v1/users/42"


def test_routing_path_decodes_all_but_reserved() -> None:
    assert normalise(b"/a%20b%2Fc%3F", True) == (b"/a%20b%2Fc%3F", "/a b%2Fc%3F")


def test_sanitize_off_keeps_dot_segments() -> None:
    assert normalise(b"/x/../%61dmin//y", False) == (b"/x/../admin//y", "/x/../admin//y")


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        (b"/", b"/"),
        (b"//", b"/"),
        (b"/a/./b/../c/", b"/a/c/"),
        (b"/../../a", b"/a"),
        (b"/a/b/..", b"/a"),
        (b"/a/b/../", b"/a/"),
    ],
)
def test_remove_dot_segments(path: bytes, clean: bytes) -> None:
    assert remove_dot_segments(path) == clean


def test_denied_encodings() -> None:
    options = {
        "allowEncodedSlash": False,
        "allowEncodedBackSlash": True,
        "allowEncodedNullCharacter": True,
        "allowEncodedSemicolon": False,
        "allowEncodedPercent": True,
        "allowEncodedQuestionMark": True,
        "allowEncodedHash": True,
    }
    denied = denied_encodings(options)
    assert denied == (b"%2F", b"%3B")
    assert has_denied(b"/a%2Fb", denied) == b"%2F"
    assert has_denied(b"/a%3Bb", denied) == b"%3B"
    assert has_denied(b"/a%5Cb", denied) is None
    assert has_denied(b"/plain", denied) is None
