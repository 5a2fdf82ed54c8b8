"""No connection without a deadline (RELIABILITY 39).

Two halves.  The smuggling shapes that once left a connection silent forever (a body of known
length followed in the same write by bytes that are not a request: the body stayed in the
exchange's buffer when a pooled backend connection was attached during the parse, so the
backend waited for it while the exchange waited for the backend) are replayed on many fresh
connections; each must get its answers and a close, never silence.  Then every state a client
connection can be in is entered and left alone: some deadline must end each one.

The timeouts are short here so that a state without a deadline shows as a connection still open
long after every bound has passed; nothing is timed.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import pytest

from tests.harness import service, wait_for, websocket

# the answers each shape gets, in order, before the connection closes
SHAPES: list[tuple[str, bytes, list[int]]] = [
    (
        "obs-text before a second field, chunked-looking bytes after a Content-Length body",
        b"POST /?cb=1 HTTP/1.1\r\nX: X\xa0Y\r\nHost: a\r\nContent-Length: 4\r\n\r\n"
        b"1\r\nZ\r\n0\r\n\r\n",
        [200, 400],
    ),
    (
        "garbage after a Content-Length body",
        b"POST / HTTP/1.1\r\nHost: a\r\nX: e\r\nContent-Length: 4\r\n\r\nabcdxyz\r\n\r\n",
        [200, 400],
    ),
    (
        "both in one write",
        b"POST /?cb=1 HTTP/1.1\r\nX: X\xa0Y\r\nHost: a\r\nContent-Length: 4\r\n\r\n"
        b"1\r\nZ\r\n0\r\n\r\n"
        b"POST / HTTP/1.1\r\nHost: a\r\nX: e\r\nContent-Length: 4\r\n\r\nabcdxyz\r\n\r\n",
        [200, 400],
    ),
    (
        "a control byte before a second field",
        b"POST / HTTP/1.1\r\nX: a\x01Host: b\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd",
        [400],
    ),
    (
        "Content-Length and Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        [400],
    ),
    (
        "a request hidden in a Content-Length body's tail",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabcdeGET /hidden HTTP/1.1\r\n"
        b"Host: a\r\nConnection: close\r\n\r\n",
        [200, 200],
    ),
    (
        "a chunked body followed by garbage",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        b"\x00\x01garbage\r\n\r\n",
        [200, 400],
    ),
    (
        "a body shorter than its Content-Length, then the next request",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
        [200, 400],
    ),
]


def answers(port: int, data: bytes, wait: float) -> tuple[list[int], bool]:
    """Send ``data`` on a fresh connection; the status codes read and whether hopwire closed
    the connection (False: it was still open, silent, after ``wait`` seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        out = b""
        closed = False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)], closed


def catch_all(b: Any) -> dict[str, Any]:
    return {
        "http": {
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
            "services": {"s": service(b.url)},
        }
    }


def test_smuggling_shapes_get_their_answers_and_a_close(
    make_backend: Any, make_hopwire: Any
) -> None:
    """One worker, so that after the first request every exchange attaches its pooled backend
    connection inside the parse (the case that hung); every shape, 12 times, fresh connections.
    The read timeout is far beyond the wait: only a correct answer closes in time."""
    b = make_backend()
    hw = make_hopwire(catch_all(b), start=False, workers=1)
    hw.config["entryPoints"]["web"]["transport"] = {
        "respondingTimeouts": {"readTimeout": "60s", "idleTimeout": "60s"}
    }
    hw.write(hw.config)
    hw.start()
    for name, data, expected in SHAPES:
        for i in range(12):
            codes, closed = answers(hw.port, data, wait=8.0)
            assert (codes, closed) == (expected, True), f"{name}, try {i + 1}"
    posts = [r for r in b.requests if r[0] == "POST"]
    assert {r[3] for r in posts} <= {b"1\r\nZ", b"abcd", b"abcde", b"abc", b"abcGET / H"}
    assert not any(r[1] == "/hidden" for r in b.requests if r[3])  # never part of a body
    assert "ERROR" not in hw.logs()


# Each state, entered and then left alone by the client.  The bounds: readTimeout 1s,
# idleTimeout 1s (also the stall bound), no responseHeaderTimeout, no writeTimeout.
TIMEOUTS = {"respondingTimeouts": {"readTimeout": "1s", "idleTimeout": "1s"}}


def open_and_wait(
    port: int, data: bytes, read: bool = True, wait: float = 8.0
) -> tuple[bytes, bool]:
    """Send ``data``; read (or not, then read after ``wait``/2) until hopwire closes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        if data:
            sock.sendall(data)
        if not read:
            time.sleep(wait / 2)
        out = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return out, False
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk
        return out, False
    finally:
        sock.close()


STATES: list[tuple[str, bytes, bool, str]] = [
    # (state, what the client sends, whether it reads at once, what ends it)
    ("connected, nothing sent", b"", True, "close"),
    ("request head begun", b"GET / HTTP/1.1\r\nHost: a\r\n", True, "408"),
    (
        "request body begun",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nab",
        True,
        "408",
    ),
    ("idle after an answer", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", True, "200"),
    ("waiting for the backend's head", b"GET /slow/20 HTTP/1.1\r\nHost: a\r\n\r\n", True, "504"),
    (
        "pipelined behind a request waiting for its backend",
        b"GET /slow/20 HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        True,
        "504",
    ),
    ("backend stopped mid-body", b"GET /stream/3/20 HTTP/1.1\r\nHost: a\r\n\r\n", True, "cut"),
    ("client reads nothing", b"GET /bytes/8000000 HTTP/1.1\r\nHost: a\r\n\r\n", False, "cut"),
    (
        "closing with bytes the client does not read",
        b"GET /bytes/8000000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        False,
        "cut",
    ),
    (
        "bytes after a body, backend slow",
        b"POST /slow/20 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nabGARBAGE\r\n\r\n",
        True,
        "504",
    ),
]


@pytest.mark.parametrize("state,data,read,ends", STATES, ids=[s[0] for s in STATES])
def test_every_connection_state_has_a_deadline(
    make_backend: Any, make_hopwire: Any, state: str, data: bytes, read: bool, ends: str
) -> None:
    b = make_backend()
    hw = make_hopwire(catch_all(b), start=False, workers=1)
    hw.config["entryPoints"]["web"]["transport"] = TIMEOUTS
    hw.write(hw.config)
    hw.start()
    out, closed = open_and_wait(hw.port, data, read)
    assert closed, f"{state}: still open after every bound passed"
    if ends == "close":
        assert out == b""
    elif ends == "cut":
        assert out.startswith(b"HTTP/1.1 200") and len(out) < 8_000_000
        assert b"\r\n0\r\n\r\n" not in out[-7:]  # never looks complete
    else:
        assert out.startswith(b"HTTP/1.1 " + ends.encode()), out[:200]
    assert "ERROR" not in hw.logs()
    with socket.create_connection(("127.0.0.1", hw.port), timeout=5) as sock:  # serves on
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")


def test_an_idle_tunnel_closes(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(catch_all(b), start=False, workers=1)
    hw.config["entryPoints"]["web"]["transport"] = TIMEOUTS
    hw.write(hw.config)
    hw.start()
    sock, head = websocket(hw.port)
    with sock:
        assert head.startswith(b"HTTP/1.1 101")
        sock.settimeout(8)
        assert sock.recv(10) == b""  # the idle tunnel ended by idleTimeout


def test_stall_bound_counts_the_exchange_that_ended(make_backend: Any, make_hopwire: Any) -> None:
    """A stalled backend ends as response_timeout, a client that reads nothing as
    write_timeout: both counted in the log."""
    b = make_backend()
    hw = make_hopwire(catch_all(b), start=False, workers=1)
    hw.config["entryPoints"]["web"]["transport"] = TIMEOUTS
    hw.write(hw.config)
    hw.start()
    open_and_wait(hw.port, b"GET /slow/20 HTTP/1.1\r\nHost: a\r\n\r\n")
    open_and_wait(hw.port, b"GET /bytes/8000000 HTTP/1.1\r\nHost: a\r\n\r\n", read=False)
    wait_for(lambda: "write_timeout" in hw.logs() and "response_timeout" in hw.logs())
