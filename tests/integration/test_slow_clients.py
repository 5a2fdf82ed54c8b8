"""Slow readers hold little, and give it back (RELIABILITY 41; issue 21).

A hundred clients that pipeline six 1 MiB requests and read nothing.  The kernel's send buffer
takes the first responses (up to tcp_wmem's 4 MiB on loopback); what the worker itself holds
is the rest: before the fix, a 256 KiB read from the backend and the 256 KiB write mark for
each, kept for good (glibc's trim threshold was raised for throughput).  Now a client found slow
after a large response gets its next backend connection narrowed before any byte of it is
read, the write mark towards clients is 64 KiB, and freed memory goes back to the system.

The bounds are on memory, with a wide margin either side (measured here: before the fix
55 MiB held and 55 MiB kept after the readers left; now 11 MiB held, 2 MiB kept); bench/slowclients.py measures the same with slowhttptest by the
hundred beside nginx.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from tests.harness import request, service, wait_for

READERS = 100
PIPELINED = 6  # more than the kernel takes (tcp_wmem: 4 MiB at most)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def unsent(port: int) -> int:
    """Bytes hopwire's sockets towards ``port``'s clients still hold (the kernel's part)."""
    import subprocess

    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
    ).stdout
    return sum(int(line.split()[1]) for line in out.splitlines() if line.split())


def slow_readers_hold(
    make_backend: Any, make_hopwire: Any, router: dict[str, Any]
) -> tuple[float, float]:
    """(MiB the worker holds while READERS clients pipeline PIPELINED 1 MiB requests and read
    nothing, MiB still held after they left)."""
    b = make_backend()
    hw = make_hopwire(
        {
            "http": {
                "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s", **router}},
                "services": {"s": service(b.url)},
                "middlewares": {"buffer": {"buffering": {}}},
            }
        },
        workers=1,
    )
    [worker] = hw.worker_pids()
    for _ in range(20):  # warm: the worker's steady size
        assert request(hw.port, "GET", "/bytes/1048576")[0] == 200
    time.sleep(1.5)
    start = rss_mib(worker)
    readers = []
    for _ in range(READERS):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a tiny window
        sock.connect(("127.0.0.1", hw.port))
        sock.sendall(b"GET /bytes/1048576 HTTP/1.1\r\nHost: a\r\n\r\n" * PIPELINED)
        readers.append(sock)
    # settled: the kernel holds what it can, the backends wait in their own send buffers
    last = -1
    for _ in range(40):
        time.sleep(0.25)
        now = unsent(hw.port)
        if now == last:
            break
        last = now
    time.sleep(1.0)
    held = rss_mib(worker) - start
    for sock in readers:
        sock.close()
    wait_for(lambda: len(b.requests) >= 20 + READERS, timeout=20)
    time.sleep(2.5)  # the worker looks at its free heap once a second
    after = rss_mib(worker) - start
    assert request(hw.port, "GET", "/")[0] == 200
    assert "ERROR" not in hw.logs()
    return held, after


def test_a_hundred_slow_readers_hold_little_and_give_it_back(
    make_backend: Any, make_hopwire: Any
) -> None:
    held, after = slow_readers_hold(make_backend, make_hopwire, {})
    assert held < 25, f"{READERS} slow readers hold {held:.1f} MiB in the worker"
    assert after < 6, f"{after:.1f} MiB still held after they left"


def test_buffered_responses_wait_for_slow_readers_on_disk(
    make_backend: Any, make_hopwire: Any
) -> None:
    """The buffering middleware holds each whole response (memResponseBodyBytes in memory);
    once its client shows it is slow, what is left goes to the spool's file and out piece by
    piece as the client drains (before: the whole body, twice, for every slow reader)."""
    held, after = slow_readers_hold(make_backend, make_hopwire, {"middlewares": ["buffer"]})
    assert held < 40, f"{READERS} slow readers of buffered responses hold {held:.1f} MiB"
    assert after < 8, f"{after:.1f} MiB still held after they left"
