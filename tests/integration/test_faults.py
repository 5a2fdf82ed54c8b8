"""Faults on both sides (RELIABILITY 15-17 and 20-26): the right answer, the right connection
behaviour, and a worker that keeps serving."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import h11
import pytest

from tests.harness import exchange, free_port, raw, request, service, wait_for

TIMEOUTS = {"respondingTimeouts": {"readTimeout": "1s", "idleTimeout": "1s"}}


def proxy(
    make_backend: Any,
    make_hopwire: Any,
    transport: dict | None = None,
    ep: dict | None = None,
    workers: int = 2,
    **lb: Any,
) -> tuple[Any, Any]:
    b = make_backend()
    config: dict[str, Any] = {
        "http": {
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
            "services": {"s": service(b.url, **lb)},
        }
    }
    if transport:
        config["serversTransport"] = transport
    hw = make_hopwire(config, start=False, workers=workers)
    if ep:
        hw.config["entryPoints"]["web"].update(ep)
        hw.write(hw.config)
    return hw.start(), b


def test_connection_refused_is_502(make_hopwire: Any) -> None:
    hw = make_hopwire(
        {
            "http": {
                "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
                "services": {"s": service(f"http://127.0.0.1:{free_port()}")},
            }
        }
    )
    status, headers, body = request(hw.port, "GET", "/")
    assert status == 502 and body == b"connect_failed\n"
    assert request(hw.port, "GET", "/")[0] == 502  # and again: the worker is fine


def test_response_header_timeout_is_504(make_backend: Any, make_hopwire: Any) -> None:
    hw, _ = proxy(
        make_backend,
        make_hopwire,
        transport={"forwardingTimeouts": {"responseHeaderTimeout": "500ms"}},
    )
    assert request(hw.port, "GET", "/raw/hang")[0] == 504
    assert request(hw.port, "GET", "/")[0] == 200


def test_malformed_response_is_502(make_backend: Any, make_hopwire: Any) -> None:
    hw, b = proxy(make_backend, make_hopwire)
    assert request(hw.port, "GET", "/raw/malformed")[0] == 502
    assert request(hw.port, "GET", "/")[0] == 200


def test_backend_closing_mid_body_truncates_visibly(make_backend: Any, make_hopwire: Any) -> None:
    hw, _ = proxy(make_backend, make_hopwire)
    # Content-Length response cut short: the client sees fewer bytes and a close
    out = raw(hw.port, b"GET /raw/truncate HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-length: 1000" in head.lower() and len(body) == 100
    # chunked response cut short: never the final 0-chunk
    out = raw(hw.port, b"GET /raw/truncate-chunked HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"transfer-encoding: chunked" in out.lower()
    assert not out.endswith(b"0\r\n\r\n")
    assert request(hw.port, "GET", "/")[0] == 200


def test_close_delimited_response_completes(make_backend: Any, make_hopwire: Any) -> None:
    hw, _ = proxy(make_backend, make_hopwire)
    status, headers, body = request(hw.port, "GET", "/raw/close-delimited")
    assert status == 200 and body == b"until close"


def test_extra_bytes_after_response_drop_the_connection(
    make_backend: Any, make_hopwire: Any
) -> None:
    hw, b = proxy(make_backend, make_hopwire, workers=1)
    status, _, body = request(hw.port, "GET", "/raw/extra")
    assert status == 200 and body == b"ok"
    # the backend keeps that connection open: hopwire must not reuse it
    for _ in range(5):
        assert request(hw.port, "GET", "/bytes/3")[2] == b"xxx"
    assert b.errors == []


def test_body_of_known_length_counted_over_reads(make_backend: Any, make_hopwire: Any) -> None:
    """After the read that held the head, a Content-Length body is counted, not parsed: it
    ends at its length (bytes after it are not forwarded and the connection is dropped), a
    body cut short is a visibly truncated response, and a whole one leaves the connection
    reusable."""
    hw, b = proxy(make_backend, make_hopwire, workers=1)
    out = raw(hw.port, b"GET /raw/pieces-extra HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b"a" * 100 + b"b" * 49900 + b"c" * 50000
    for _ in range(3):  # never "EXTRA-BYTES" from the polluted connection
        assert request(hw.port, "GET", "/bytes/3")[2] == b"xxx"
    out = raw(hw.port, b"GET /raw/pieces-truncate HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-length: 1000000" in head.lower() and body == b"t" * 100 + b"u" * 100000
    # large bodies arrive in many reads: each is whole, and the pooled connection serves on
    before = 0
    for _ in range(4):
        status, _, body = request(hw.port, "GET", "/bytes/3000000")
        assert status == 200 and body == b"x" * 3_000_000
        before = before or b.connections  # the first may dial: the raw ones were closed
    assert b.connections == before  # the pooled connection served the other three
    assert b.errors == []


def test_response_head_over_the_limit_is_502(make_backend: Any, make_hopwire: Any) -> None:
    """A response head still growing past 1 MiB over many reads: 502, and the worker serves on."""
    hw, _ = proxy(make_backend, make_hopwire, workers=1)
    assert request(hw.port, "GET", "/raw/huge-head")[0] == 502
    assert wait_for(lambda: "response head over 1048576 bytes" in hw.logs())
    assert request(hw.port, "GET", "/bytes/3")[2] == b"xxx"


def test_body_on_head_response_is_dropped(make_backend: Any, make_hopwire: Any) -> None:
    hw, b = proxy(make_backend, make_hopwire, workers=1)
    with socket.create_connection(("127.0.0.1", hw.port), timeout=5) as sock:
        conn = h11.Connection(h11.CLIENT)
        status, headers, body = exchange(sock, "HEAD", "/raw/head-body", conn=conn)
        assert status == 200 and body == b""
        for _ in range(3):
            status, _, body = exchange(sock, "GET", "/bytes/3", conn=conn)
            assert status == 200 and body == b"xxx"  # not "BODY" from the polluted connection


def test_stale_pooled_connection_retried_once_for_idempotent(
    make_backend: Any, make_hopwire: Any
) -> None:
    hw, b = proxy(make_backend, make_hopwire, ep=None)
    hw_one = hw
    assert request(hw_one.port, "GET", "/")[0] == 200
    b.drop_reused = True  # the backend now closes pooled connections without answering
    for _ in range(6):  # whichever worker: its pooled connection fails, the retry succeeds
        assert request(hw_one.port, "GET", "/")[0] == 200
    assert "retrying GET /" in hw.logs()
    # a non-idempotent request is never retried once sent (RELIABILITY 26)
    results = {request(hw_one.port, "POST", "/", body=b"data")[0] for _ in range(6)}
    assert 502 in results
    posts = [r for r in b.requests if r[0] == "POST"]
    assert len(posts) <= 6


def test_slow_request_head_gets_408(make_backend: Any, make_hopwire: Any) -> None:
    hw, _ = proxy(make_backend, make_hopwire, ep={"transport": TIMEOUTS})
    with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ... and never the rest
        assert request(hw.port, "GET", "/")[0] == 200  # others are unaffected
        data = slow.recv(4096)
        assert data.startswith(b"HTTP/1.1 408")
        assert slow.recv(4096) == b""


def test_stalled_body_gets_408(make_backend: Any, make_hopwire: Any) -> None:
    hw, b = proxy(make_backend, make_hopwire, ep={"transport": TIMEOUTS})
    with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as slow:
        slow.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        data = slow.recv(4096)
        assert data.startswith(b"HTTP/1.1 408")
    assert [r for r in b.requests if r[1] == "/upload"] == []


def test_idle_keep_alive_connection_closes(make_backend: Any, make_hopwire: Any) -> None:
    hw, _ = proxy(make_backend, make_hopwire, ep={"transport": TIMEOUTS})
    with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as sock:
        assert exchange(sock, "GET", "/")[0] == 200
        assert sock.recv(1) == b""  # closed by the idle timeout, not by us


def test_half_closed_client_gets_its_response(make_backend: Any, make_hopwire: Any) -> None:
    hw, _ = proxy(make_backend, make_hopwire)
    with socket.create_connection(("127.0.0.1", hw.port), timeout=5) as sock:
        sock.sendall(b"GET /slow/0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(4096):
            out += chunk
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"slow done")


def test_client_reset_cancels_upstream(make_backend: Any, make_hopwire: Any) -> None:
    hw, b = proxy(make_backend, make_hopwire)
    sock = socket.create_connection(("127.0.0.1", hw.port))
    sock.sendall(b"GET /slow/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: any(r[1] == "/slow/1" for r in b.requests))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST
    wait_for(lambda: "went away" in hw.logs())
    assert request(hw.port, "GET", "/")[0] == 200
    time.sleep(1.2)  # the slow backend finishes; its connection must not be pooled
    before = b.connections
    assert request(hw.port, "GET", "/")[0] == 200
    assert b.connections >= before


def test_no_server_503_and_no_route_404(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    b.healthy = False
    hw = make_hopwire(
        {
            "http": {
                "routers": {"r": {"rule": "Host(`a.test`)", "service": "s"}},
                "services": {
                    "s": service(b.url, healthCheck={"path": "/health", "interval": "100ms"})
                },
            }
        }
    )
    wait_for(lambda: request(hw.port, "GET", "/", host="a.test")[0] == 503)
    assert request(hw.port, "GET", "/", host="b.test")[0] == 404


@pytest.mark.parametrize("timeout", ["300ms", None])
def test_expect_continue_without_a_100_from_the_backend(
    make_backend: Any, make_hopwire: Any, timeout: str | None
) -> None:
    """As Go's transport does for Traefik: past expectContinueTimeout (default 1s) hopwire
    answers 100 Continue itself, so that the client sends its body."""
    transport = {"forwardingTimeouts": {"expectContinueTimeout": timeout}} if timeout else None
    hw, b = proxy(make_backend, make_hopwire, transport=transport)
    b.answers_continue = False
    with socket.create_connection(("127.0.0.1", hw.port), timeout=5) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        started = time.monotonic()
        interim = sock.recv(4096)
        waited = time.monotonic() - started
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert waited >= (0.2 if timeout else 0.9)  # not before the timeout
        sock.sendall(b"hello")
        final = b""
        while b"sha256" not in final:
            final += sock.recv(4096)
        assert final.startswith(b"HTTP/1.1 200") and b'"length": 5' in final


@pytest.mark.parametrize("what", ["status-99", "nul-reason", "gzip-coding"])
def test_malformed_response_heads_are_502(make_backend: Any, make_hopwire: Any, what: str) -> None:
    hw, b = proxy(make_backend, make_hopwire)
    status, _, body = request(hw.port, "GET", f"/raw/{what}")
    assert status == 502 and body == b"bad_response\n"
    assert request(hw.port, "GET", "/ok")[0] == 200  # the worker, and the pool, are fine


def test_early_answer_survives_the_unread_body(make_backend: Any, make_hopwire: Any) -> None:
    """An answer given before the request body was read (here a 404) is followed by a lingering
    close, as nginx does: hopwire reads and drops the rest of the body before closing, so the
    client's TCP stack does not get a reset that would destroy the answer in flight."""
    hw = make_hopwire({"http": {"routers": {}, "services": {}}})
    body = b"x" * (8 << 20)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as sock:
            sock.sendall(
                b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            time.sleep(0.2)  # the 404 is written and the connection closed meanwhile
            sock.sendall(body)  # without a lingering close: a reset, and the 404 lost
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 404") and b"connection: close" in data.lower()
    assert "no_route" in hw.logs()


def test_error_lines_are_sampled_and_every_error_counted(
    make_backend: Any, make_hopwire: Any
) -> None:
    """A flood of aborted connections and bad requests (an attack): at most 10 lines per kind
    per 10 s, one line saying how many were held back, and every one in the counter."""
    from tests.integration.test_tls import metric

    hw, _ = proxy(make_backend, make_hopwire, workers=1)
    for _ in range(40):
        raw(hw.port, b"\x00garbage\r\n\r\n", timeout=2)
    for _ in range(30):  # clients that reset before their answer
        sock = socket.create_connection(("127.0.0.1", hw.port))
        sock.sendall(b"GET /slow/0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.01)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    wait_for(lambda: metric(hw, "hopwire_errors_total", kind="client_closed") == 30, timeout=15)
    assert metric(hw, "hopwire_errors_total", kind="bad_request") == 40
    lines = hw.logs().splitlines()
    assert len([x for x in lines if '"msg":"bad_request ' in x]) == 10
    assert len([x for x in lines if '"msg":"client_closed ' in x]) == 10
    wait_for(lambda: "30 more bad_request lines held back" in hw.logs(), timeout=15)
    wait_for(lambda: "20 more client_closed lines held back" in hw.logs(), timeout=15)
    assert request(hw.port, "GET", "/")[0] == 200


def test_many_ranges_are_the_origins_to_judge(make_backend: Any, make_hopwire: Any) -> None:
    """A Range field with thousands of ranges is forwarded as it came, as Traefik forwards it:
    hopwire serves no ranges itself, the origin decides (RFC 9110 §14.2 lets it ignore or
    refuse them).  Only the header section limit bounds it (maxHeaderBytes: 431 beyond)."""
    hw, b = proxy(make_backend, make_hopwire)
    ranges = "bytes=" + ",".join(f"{i}-{i}" for i in range(10_000, 14_000, 2))  # 2,000 ranges
    assert 22_000 < len(ranges) < 32_000
    status, _, body = request(hw.port, "GET", "/ranges", headers=[("Range", ranges)])
    assert status == 200
    [got] = [r for r in b.requests if r[1] == "/ranges"]
    assert dict(got[2])["range"] == ranges
    huge = "bytes=" + ",".join(f"{i}-{i}" for i in range(10_000, 16_000, 2))
    assert request(hw.port, "GET", "/ranges", headers=[("Range", huge)])[0] == 431
