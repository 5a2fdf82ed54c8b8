"""Every way an exchange ends is observed exactly once (RELIABILITY 35): counted at its
entrypoint, access-logged, and its SERVER span ended, whether the response was complete,
refused while parsing, cut short by the backend or the client, or never written at all."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.harness import raw, request, service, wait_for
from tests.otlp_receiver import attrs


def log_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def scrape_codes(port: int) -> Counter[str]:
    from prometheus_client.parser import text_string_to_metric_families

    body = request(port, "GET", "/metrics")[2].decode()
    out: Counter[str] = Counter()
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name == "hopwire_entrypoint_requests_total" and s.labels["entrypoint"] == "web":
                out[s.labels["code"]] += int(s.value)
    return out


def test_every_ending_observed_once(
    make_backend: Any, make_hopwire: Any, receiver: Any, tmp_path: Path
) -> None:
    b = make_backend()
    access = tmp_path / "access.log"
    hw = make_hopwire(
        {
            "http": {
                "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
                "services": {"s": service(b.url)},
            },
            "accessLog": {"filePath": str(access), "bufferingSize": 1},
            "tracing": {
                "otlp": {"grpc": {"endpoint": receiver.endpoint, "insecure": True}},
                "batch": {"scheduleDelay": "100ms"},
            },
        },
        start=False,
        workers=2,
    )
    hw.config["entryPoints"]["web"]["transport"] = {
        "respondingTimeouts": {"readTimeout": "1s", "writeTimeout": "1s"}
    }
    hw.write(hw.config)
    hw.start()
    port = hw.port
    expected: list[tuple[str, int, str]] = []  # (path, status, error type)

    assert request(port, "GET", "/ok")[0] == 200
    expected.append(("/ok", 200, ""))
    assert raw(port, b"GET /dup HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")[9:12] == b"400"
    expected.append(("/dup", 400, "bad_request"))
    assert raw(port, b"GET /v2 HTTP/2.0\r\nHost: a\r\n\r\n")[9:12] == b"505"
    expected.append(("/v2", 505, "version_not_supported"))
    long_target = b"/long" + b"x" * 9000
    assert raw(port, b"GET " + long_target + b" HTTP/1.1\r\nHost: a\r\n\r\n")[9:12] == b"414"
    expected.append((long_target[:1024].decode(), 414, "uri_too_long"))
    big = b"".join(b"x-f%d: %s\r\n" % (i, b"v" * 100) for i in range(400))
    assert raw(port, b"GET /fat HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n")[9:12] == b"431"
    expected.append(("/fat", 431, "headers_too_large"))
    assert raw(port, b"GET /slow HTTP/1.1\r\nHost: a\r\n", timeout=5)[9:12] == b"408"
    expected.append(("/slow", 408, "request_timeout"))
    # the backend closes after 100 of 1,000 body bytes: the head (200) had gone out
    reply = raw(port, b"GET /raw/truncate HTTP/1.1\r\nHost: a\r\n\r\n")
    assert reply[9:12] == b"200" and len(reply.partition(b"\r\n\r\n")[2]) == 100
    expected.append(("/raw/truncate", 200, "upstream_truncated"))
    # a client that goes away while its body is being sent
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        time.sleep(0.3)
    expected.append(("/upload", 499, "client_closed"))
    # a client that does not read a large response: cut at writeTimeout
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /bytes/50000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.settimeout(10)
        wait_for(lambda: any(x["RequestPath"] == "/bytes/50000000" for x in log_lines(access)))
    expected.append(("/bytes/50000000", 200, "write_timeout"))

    def logged() -> Counter[tuple[str, int]]:
        return Counter((x["RequestPath"], x["DownstreamStatus"]) for x in log_lines(access))

    want = Counter((path, status) for path, status, _ in expected)
    wait_for(lambda: logged() == want, timeout=10)

    def server_spans() -> list[Any]:
        return [s for s in receiver.spans() if s.kind == 2]

    wait_for(lambda: len(server_spans()) >= len(expected), timeout=15)
    time.sleep(0.5)  # nothing more arrives: each ending has one span
    spans = server_spans()
    got = Counter(
        (
            attrs(s)["url.path"],
            attrs(s).get("http.response.status_code", 0),
            attrs(s).get("error.type", ""),
        )
        for s in spans
    )
    want_spans = Counter(
        (path, status, error or (str(status) if status >= 500 else ""))
        for path, status, error in expected
    )
    assert got == want_spans
    codes: Counter[str] = Counter(str(status) for _, status, _ in expected)
    wait_for(lambda: scrape_codes(hw.internal) == codes, timeout=5)
    assert logged() == want  # and nothing was logged twice meanwhile
