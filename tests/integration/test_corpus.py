"""Malformed requests from tests/corpus/requests: status code, connection close, nothing
forwarded, and the worker keeps serving (RELIABILITY 1-19)."""

from __future__ import annotations

import codecs
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.certs import Authority
from tests.harness import Backend, Hopwire, exchange, free_port, request, service

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "requests"
CASES = sorted(p.stem for p in CORPUS.glob("*.http"))


def load_case(name: str) -> tuple[bytes, str]:
    text = (CORPUS / f"{name}.http").read_text().rstrip("\n")
    text = re.sub(r"\{repeat:(.+?):(\d+)\}", lambda m: m.group(1) * int(m.group(2)), text)
    text = re.sub(
        r"\{fields:(\d+)\}",
        lambda m: "".join(f"X-F{i}: v\\r\\n" for i in range(int(m.group(1)))),
        text,
    )
    data = codecs.escape_decode(text.encode("latin-1"))[0]
    assert isinstance(data, bytes)
    return data, (CORPUS / f"{name}.expect").read_text().strip()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hopwire, Backend]]:
    """`web` plain and `websecure` TLS (certificates made here): every case runs on both."""
    backend = Backend("corpus")
    tmp = tmp_path_factory.mktemp("corpus")
    leaf = Authority(tmp).leaf("a.test")
    hw = Hopwire(
        tmp,
        {
            "entryPoints": {
                "websecure": {"address": f"127.0.0.1:{free_port()}", "http": {"tls": {}}}
            },
            "tls": {"certificates": [leaf.files()]},
            "http": {
                "routers": {"all": {"rule": "PathPrefix(`/`)", "service": "svc"}},
                "services": {"svc": service(backend.url)},
            },
        },
    ).start()
    yield hw, backend
    hw.stop()
    backend.close()


def port_of(hw: Hopwire, scheme: str) -> int:
    if scheme == "http":
        return hw.port
    return int(hw.config["entryPoints"]["websecure"]["address"].rsplit(":", 1)[1])


def opened(port: int, tls: bool) -> socket.socket:
    """A connection to ``port``, over TLS if ``tls`` (the certificate is not checked)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx.wrap_socket(sock, server_hostname="a.test")
    return sock


def send(port: int, data: bytes, tls: bool = False) -> tuple[bytes, bool]:
    """Send bytes; return what came back and whether the server closed the connection."""
    with opened(port, tls) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return b"", True
        out = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, ssl.SSLEOFError):
                return out, True
            except TimeoutError:
                return out, False
            if not chunk:
                return out, True
            out += chunk
            if (
                b"\r\n\r\n" in out
                and b"content-length: 0" not in out.lower()
                and out.split(b"\r\n\r\n", 1)[1]
            ):
                # a complete small response: see whether the server then closes
                sock.settimeout(2)
        return out, False


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("name", CASES)
def test_corpus(proxy: Any, name: str, scheme: str) -> None:
    hw, backend = proxy
    port = port_of(hw, scheme)
    data, expect = load_case(name)
    before = len(backend.requests)
    errors_before = hw.logs().count('"level":"ERROR"')
    out, closed = send(port, data, scheme == "https")
    status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.1 ") else None
    want = expect.split()
    if want[0] == "h2c":
        # the HTTP/2 preface: h2c by prior knowledge on a plain entrypoint (the answer opens
        # with hopwire's SETTINGS frame); over TLS without ALPN h2 it is not HTTP/1.1: 400
        if scheme == "http":
            assert out[3:4] == b"\x04" and out[4:5] == b"\x00", out[:40]
        else:
            assert status in (400, None) and closed, (out, closed)
    elif want[0] == "400-or-close":
        assert status in (400, None) and closed, (out, closed)
    else:
        assert status == int(want[0]), out[:200]
        if "close" in want:
            assert closed, "the connection must be closed after this error"
            assert b"connection: close" in out.lower()
    new = [r for r in backend.requests[before:]]
    if "forwarded" in want:
        assert len(new) == 1
    elif any(r[1].startswith("/corpus-chunk") for r in new):
        pytest.fail(f"a request with a broken body reached the backend complete: {new}")
    else:
        assert not [r for r in new if r[1] == "/corpus-never"], "nothing may be forwarded"
    # the worker keeps serving, and a bad request is no page for an operator
    assert request(hw.port, "GET", "/after")[0] == 200
    if scheme == "https":
        with opened(port, True) as sock:
            assert exchange(sock, "GET", "/after")[0] == 200
    assert hw.logs().count('"level":"ERROR"') == errors_before, hw.logs()[-2000:]


def test_unknown_method_forwarded_verbatim(proxy: Any) -> None:
    hw, backend = proxy
    send(hw.port, b"PURGEX /verbatim HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert ("PURGEX", "/verbatim") in [(r[0], r[1]) for r in backend.requests]


def test_trailers_dropped_and_extensions_stripped(proxy: Any) -> None:
    hw, backend = proxy
    data, _ = load_case("039-chunked-with-trailer")
    send(hw.port, data)
    _method, _target, headers, body = [r for r in backend.requests if r[1] == "/corpus-trailer"][-1]
    assert body == b"hello"
    assert "x-trailer" not in [n.lower() for n, _ in headers]
