"""HTTP/2 from clients, end to end: a real hopwire master with workers, real HTTP/1.1
backends (h11), and real HTTP/2 clients: curl (--http2-prior-knowledge, --http2 over TLS with
ALPN), h2load, nghttp, and python-hyper's h2 as the independent peer that can also send what
a well-behaved client never would.  Each stream is an exchange: what the backend receives is
checked, and the worker keeps serving after every hostile pattern."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest

from tests.certs import Authority
from tests.harness import catch_all, free_port, h11_round, request, wait_for

pytestmark = pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("h2load") and shutil.which("nghttp")),
    reason="tests/install-deps.sh installs curl and nghttp2-client",
)


class Client:
    """An HTTP/2 client connection through python-hyper's h2 (validation switchable off)."""

    def __init__(self, port: int, strict: bool = True, tls: ssl.SSLContext | None = None):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock: Any = tls.wrap_socket(raw, server_hostname="a.test") if tls else raw
        cfg = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=strict,
            normalize_outbound_headers=strict,
            validate_inbound_headers=True,
        )
        self.h2 = h2.connection.H2Connection(cfg)
        self.h2.initiate_connection()
        self.flush()
        self.events: list[Any] = []
        self.held: set[int] = set()  # streams whose window is never reopened (a slow reader)

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        path: str,
        method: str = "GET",
        body: bytes | None = None,
        extra: Any = (),
        length: bool = True,
    ) -> int:
        sid = self.h2.get_next_available_stream_id()
        headers = [
            (":method", method),
            (":path", path),
            (":scheme", "http"),
            (":authority", "a.test"),
            *extra,
        ]
        if body is not None and length:
            headers.append(("content-length", str(len(body))))
        self.h2.send_headers(sid, headers, end_stream=body is None)
        self.flush()
        if body is not None:
            self.send_body(sid, body)
        return sid

    def send_body(self, sid: int, body: bytes) -> None:
        """The body as the windows allow (WINDOW_UPDATE reopens them), then END_STREAM."""
        while body:
            room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if room <= 0:
                self.pump(lambda: self.h2.local_flow_control_window(sid) > 0)
                continue
            self.h2.send_data(sid, body[:room])
            body = body[room:]
            self.flush()
        self.h2.end_stream(sid)
        self.flush()

    def pump(self, until: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError(f"events so far: {self.events}")
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                self.events.append("closed")
                return
            for event in self.h2.receive_data(data):
                self.events.append(event)
                if isinstance(event, h2.events.DataReceived):
                    n = event.flow_controlled_length
                    if event.stream_id in self.held:  # the connection's window only
                        if n:
                            self.h2.increment_flow_control_window(n)
                    else:
                        self.h2.acknowledge_received_data(n, event.stream_id)
            self.flush()

    def response(self, sid: int) -> tuple[int, dict[bytes, bytes], bytes]:
        def ended() -> bool:
            return "closed" in self.events or any(
                isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and e.stream_id == sid
                for e in self.events
            )

        self.pump(ended)
        status, headers, body = 0, {}, b""
        for e in self.events:
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
                headers = dict(e.headers)
                status = int(headers[b":status"])
            elif isinstance(e, h2.events.DataReceived) and e.stream_id == sid:
                body += e.data
        return status, headers, body

    def reset_code(self, sid: int) -> int | None:
        for e in self.events:
            if isinstance(e, h2.events.StreamReset) and e.stream_id == sid:
                return int(e.error_code)
        return None

    def close(self) -> None:
        self.sock.close()


def refused(hw: Any, kind: str) -> float:
    text = request(hw.internal, "GET", "/metrics")[2].decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("hopwire_http2_refused_total") and f'kind="{kind}"' in line
    )


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True
    )


def test_h2c_prior_knowledge_is_served_as_http11_to_the_backend(
    make_backend: Any, make_hopwire: Any
) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    out = curl("--http2-prior-knowledge", "-D", "-", f"http://127.0.0.1:{hw.port}/echo?x=1")
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition("\n\n")
    assert head.startswith("HTTP/2 200")
    seen = json.loads(body)
    assert seen["method"] == "GET" and seen["target"] == "/echo?x=1"
    names = [n for n, _ in seen["headers"]]
    # :authority became Host, first; the X-Forwarded set as for HTTP/1.1
    assert seen["headers"][0] == ["host", f"127.0.0.1:{hw.port}"]
    assert ["x-forwarded-proto", "http"] in seen["headers"]
    assert not any(n.startswith(":") for n in names)
    assert "connection" not in head.lower() and "keep-alive" not in head.lower()
    # the same connection kind keeps HTTP/1.1 clients as they were
    assert request(hw.port, "GET", "/echo")[0] == 200


def test_h2_bodies_with_and_without_length_and_many_streams(
    make_backend: Any, make_hopwire: Any
) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    c = Client(hw.port)
    payload = bytes(range(256)) * 400  # 100 KiB: more than one window
    sids = [
        c.request("/echo", "POST", payload),
        c.request("/echo", "POST", b"abc", length=False),  # chunked to the backend
        *[c.request(f"/echo?n={i}") for i in range(20)],
    ]
    results = [c.response(s) for s in sids]
    c.close()
    assert all(r[0] == 200 for r in results), [r[0] for r in results]
    assert json.loads(results[0][2])["body_length"] == len(payload)
    second = json.loads(results[1][2])
    assert second["body_length"] == 3
    assert ["transfer-encoding", "chunked"] in second["headers"]
    bodies = {r[3] for r in b.requests if r[0] == "POST"}
    assert payload in bodies and b"abc" in bodies
    assert sorted(json.loads(r[2])["target"] for r in results[2:]) == sorted(
        f"/echo?n={i}" for i in range(20)
    )


def test_h2load_and_nghttp_through_hopwire(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    out = subprocess.run(
        ["h2load", "-c", "4", "-m", "16", "-n", "2000", f"http://127.0.0.1:{hw.port}/12B"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "2000 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout
    assert "status codes: 2000 2xx" in out.stdout
    out = subprocess.run(
        ["nghttp", "-nv", f"http://127.0.0.1:{hw.port}/echo"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert ":status: 200" in out.stdout and "END_STREAM" in out.stdout


def test_tls_alpn_h2_and_http11_clients(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    ca = Authority(tmp_path)
    leaf = ca.leaf("a.test")
    b = make_backend()
    port = free_port()
    hw = make_hopwire(
        {
            "entryPoints": {"websecure": {"address": f"127.0.0.1:{port}", "http": {"tls": {}}}},
            "tls": {"certificates": [leaf.files()]},
            "http": catch_all(b.url),
        }
    )
    base = ["--cacert", str(ca.path), "--resolve", f"a.test:{port}:127.0.0.1"]
    out = curl(*base, "--http2", "-D", "-", f"https://a.test:{port}/echo")
    assert out.stdout.startswith("HTTP/2 200"), out.stderr + out.stdout
    assert ["x-forwarded-proto", "https"] in json.loads(out.stdout.partition("\n\n")[2])["headers"]
    out = curl(*base, "--http1.1", "-D", "-", f"https://a.test:{port}/echo")
    assert out.stdout.startswith("HTTP/1.1 200"), out.stderr + out.stdout
    ctx = ssl.create_default_context(cafile=str(ca.path))
    ctx.set_alpn_protocols(["h2"])
    c = Client(port, tls=ctx)
    assert c.sock.selected_alpn_protocol() == "h2"
    assert c.response(c.request("/12B"))[0] == 200
    c.close()
    assert hw.proc.poll() is None


@pytest.mark.parametrize(
    "bad",
    [
        [("connection", "close")],
        [("transfer-encoding", "chunked")],
        [("Upper", "x")],
        [("x-bad", "a\r\nx-smuggled: 1")],
        [("x-nul", "a\x00b")],
        [("te", "gzip")],
    ],
    ids=["connection", "transfer-encoding", "uppercase", "crlf", "nul", "te"],
)
def test_rfc9113_field_rules_reset_the_stream_and_nothing_reaches_the_backend(
    make_backend: Any, make_hopwire: Any, bad: list[tuple[str, str]]
) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    c = Client(hw.port, strict=False)
    sid = c.request("/echo", extra=bad)
    status, _, _ = c.response(sid)
    assert status == 0 and c.reset_code(sid) == 1  # PROTOCOL_ERROR, no answer
    # the connection and the worker go on
    ok = c.request("/echo")
    assert c.response(ok)[0] == 200
    c.close()
    assert [r[1] for r in b.requests] == ["/echo"]
    # counted once the worker folds (once a second)
    wait_for(lambda: refused(hw, "invalid_field") >= 1)


def test_content_length_disagreeing_with_data_is_never_a_complete_request(
    make_backend: Any, make_hopwire: Any
) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    c = Client(hw.port, strict=False)
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(
        sid,
        [
            (":method", "POST"),
            (":path", "/echo"),
            (":scheme", "http"),
            (":authority", "a"),
            ("content-length", "10"),
        ],
    )
    c.h2.send_data(sid, b"12345", end_stream=True)
    c.flush()
    c.response(sid)
    assert c.reset_code(sid) == 1
    assert c.response(c.request("/echo"))[0] == 200
    c.close()
    assert all(r[3] != b"12345" for r in b.requests if r[0] == "POST")


def test_a_slow_reader_on_one_stream_does_not_stall_the_others(
    make_backend: Any, make_hopwire: Any
) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    c = Client(hw.port)
    # stream 1 asks for 4 MiB and never opens its window past the first 64 KiB
    c.held.add(1)
    big = c.request("/bytes/4194304")
    small = [c.request(f"/echo?n={i}") for i in range(5)]
    for sid in small:
        assert c.response(sid)[0] == 200
    got = sum(
        len(e.data)
        for e in c.events
        if isinstance(e, h2.events.DataReceived) and e.stream_id == big
    )
    assert got <= 65535  # only what the stream's window allowed
    c.close()
    assert hw.proc.poll() is None
    assert request(hw.port, "GET", "/echo")[0] == 200


def test_graceful_stop_sends_goaway_and_lets_open_streams_finish(
    make_backend: Any, make_hopwire: Any
) -> None:
    b = make_backend()
    hw = make_hopwire(
        {
            "http": catch_all(b.url),
            "entryPoints": {
                "web": {
                    "address": f"127.0.0.1:{free_port()}",
                    "transport": {"lifeCycle": {"graceTimeOut": "5s"}},
                }
            },
        }
    )
    port = int(hw.config["entryPoints"]["web"]["address"].rsplit(":", 1)[1])
    # nghttp, not h2: python-hyper's h2 closes on the shutdown notice's GOAWAY (last stream
    # 2^31-1) instead of letting the open stream finish
    client = subprocess.Popen(
        ["nghttp", "-v", f"http://127.0.0.1:{port}/slow/1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(0.5)
    hw.signal(15)
    out, _ = client.communicate(timeout=20)
    assert "recv GOAWAY frame" in out
    assert ":status: 200" in out and "slow done" in out
    assert out.index("recv GOAWAY frame") < out.index("slow done")  # the notice came first
    wait_for(lambda: hw.proc.poll() is not None, timeout=15)
    assert hw.proc.returncode == 0


def test_local_answers_and_a_client_gone_mid_body(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(
        {
            "http": {
                "routers": {"r": {"rule": "PathPrefix(`/api`)", "service": "s"}},
                "services": {"s": {"loadBalancer": {"servers": [{"url": b.url}]}}},
            }
        }
    )
    c = Client(hw.port)
    status, headers, body = c.response(c.request("/nowhere"))
    assert status == 404 and body  # answered by hopwire itself, over HTTP/2
    assert b"connection" not in headers
    # a request whose client resets it halfway through its body: nothing left behind
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(
        sid,
        [
            (":method", "POST"),
            (":path", "/api/upload"),
            (":scheme", "http"),
            (":authority", "a"),
            ("content-length", "100000"),
        ],
    )
    c.h2.send_data(sid, b"x" * 1000)
    c.h2.reset_stream(sid, 8)
    c.flush()
    assert c.response(c.request("/api/echo"))[0] == 200
    c.close()
    assert request(hw.port, "GET", "/api/echo")[0] == 200


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    )


def test_continuation_flood_and_rapid_reset_are_bounded(
    make_backend: Any, make_hopwire: Any
) -> None:
    """CVE-2024-27316 (endless CONTINUATION) and CVE-2023-44487 (HEADERS then RST_STREAM,
    over and over): each ends or is refused within bounds, and the worker keeps serving."""
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    # CONTINUATION frames without END_HEADERS, each a new 1 KiB literal field
    with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, b""))
        block = b"\x82\x86\x84\x41\x01a"  # GET, http, /, :authority a (HPACK)
        sock.sendall(_frame(1, 0, 1, block))
        field = b"\x00\x03x-a" + b"\x7f\x81\x07" + b"v" * 1024  # literal, 1024-byte value
        sent = 0
        closed = False
        try:
            for _ in range(4000):  # 4 MiB of field section, far past maxHeaderBytes
                sock.sendall(_frame(9, 0, 1, field))
                sent += 1
        except OSError:
            closed = True
        sock.settimeout(5)
        seen = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    closed = True
                    break
                seen += data
                if b"\x00\x00\x08\x07" in seen or len(seen) > 1 << 20:  # a GOAWAY frame head
                    closed = True
                    break
        except OSError:
            closed = True
        assert closed, f"still open after {sent} CONTINUATION frames"
    # HEADERS + RST_STREAM, over and over on one connection: ended with ENHANCE_YOUR_CALM
    c = Client(hw.port)
    try:
        for _ in range(1000):
            sid = c.h2.get_next_available_stream_id()
            c.h2.send_headers(
                sid,
                [
                    (":method", "GET"),
                    (":path", "/slow/0.2"),
                    (":scheme", "http"),
                    (":authority", "a"),
                ],
                end_stream=True,
            )
            c.h2.reset_stream(sid, 8)
            c.flush()
        c.pump(lambda: any(isinstance(e, h2.events.ConnectionTerminated) for e in c.events))
    except (OSError, h2.exceptions.ProtocolError):
        pass  # closed under the client's feet: the GOAWAY went first
    c.close()
    assert hw.proc.poll() is None
    assert request(hw.port, "GET", "/echo")[0] == 200
    wait_for(lambda: refused(hw, "rapid_reset") == 1 and refused(hw, "client_reset") > 100)
    assert len(b.requests) < 1000


def test_a_traced_stream_is_an_ordinary_server_span_with_version_2(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    from tests.integration.test_tracing import tracing
    from tests.otlp_receiver import attrs

    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url), "tracing": tracing(receiver)}, workers=1)
    c = Client(hw.port)
    assert c.response(c.request("/traced"))[0] == 200
    c.close()
    spans = receiver.wait(2)
    server = next(s for s in spans if s.kind == 2)
    client = next(s for s in spans if s.kind == 3)
    assert attrs(server)["network.protocol.version"] == "2"
    assert attrs(server)["url.path"] == "/traced"
    assert client.parent_span_id == server.span_id
    [req] = [r for r in b.requests if r[1] == "/traced"]
    sent = dict(req[2])["traceparent"]
    assert sent.split("-")[2] == client.span_id.hex()  # the hop carries the CLIENT span


def test_what_the_backend_receives_matches_traefik(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    """The same h2c requests through hopwire and the real Traefik 3.7 (h2c by prior knowledge
    on a plain entrypoint): the backend gets the same method, target, Host, forwarded fields
    and body from both."""
    from tests.harness import Traefik

    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    traefik = Traefik(tmp_path, {"http": catch_all(b.url)})
    try:
        traefik.wait_routed("/echo")
        got = {}
        for name, port in (("hopwire", hw.port), ("traefik", traefik.port)):
            c = Client(port)
            sids = [
                c.request("/echo/a?q=1", extra=[("cookie", "a=1"), ("cookie", "b=2")]),
                c.request("/echo/b", "POST", b"0123456789"),
                c.request("/echo/c", "POST", b"xyz", length=False),
            ]
            assert [c.response(s)[0] for s in sids] == [200, 200, 200]
            c.close()
            got[name] = {r[1]: r for r in b.requests if r[1].startswith("/echo/")}
            b.requests.clear()

        def fields(req: Any) -> dict[str, str]:
            # what each proxy sets its own way and both may: the peer's port, the tracing
            # headers, Traefik's Accept-Encoding for a client without one
            skip = {"x-forwarded-server", "x-forwarded-port", "accept-encoding", "user-agent"}
            return {n: v for n, v in req[2] if n not in skip}

        for target in ("/echo/a?q=1", "/echo/b", "/echo/c"):
            ours, theirs = got["hopwire"][target], got["traefik"][target]
            assert ours[0] == theirs[0] and ours[3] == theirs[3], target  # method, body
            mine, other = fields(ours), fields(theirs)
            for name in (
                "host",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-real-ip",
                "x-forwarded-for",
                "cookie",
                "content-length",
            ):
                assert mine.get(name, "").replace(str(hw.port), "P") == other.get(name, "").replace(
                    str(traefik.port), "P"
                ), (target, name, mine, other)
    finally:
        traefik.stop()


def test_an_upgrade_to_h2c_is_answered_over_http11(make_backend: Any, make_hopwire: Any) -> None:
    """curl --http2 on http:// asks Upgrade: h2c: answered over HTTP/1.1 (as Traefik does),
    and the Upgrade is not sent on (a backend could switch the connection to itself)."""
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    out = curl("--http2", "-D", "-", f"http://127.0.0.1:{hw.port}/echo")
    head, _, body = out.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 200"), out.stdout + out.stderr
    names = [n for n, _ in json.loads(body)["headers"]]
    assert "upgrade" not in names and "http2-settings" not in names
    assert "connection: close" not in head.lower()


def test_httpx_http2_client_over_tls_and_h2c(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    """httpx as applications use it for HTTP/2: ALPN h2 over TLS, and h2c by prior knowledge
    (http1=False); many requests on one connection, bodies both ways."""
    import httpx

    ca = Authority(tmp_path)
    leaf = ca.leaf("a.test")
    b = make_backend()
    port = free_port()
    hw = make_hopwire(
        {
            "entryPoints": {"websecure": {"address": f"127.0.0.1:{port}", "http": {"tls": {}}}},
            "tls": {"certificates": [leaf.files()]},
            "http": catch_all(b.url),
        }
    )
    ctx = ssl.create_default_context(cafile=str(ca.path))
    for client, base, extensions in (
        # the certificate's name, dialled at 127.0.0.1
        (
            httpx.Client(http2=True, verify=ctx),
            f"https://127.0.0.1:{port}",
            {"sni_hostname": "a.test"},
        ),
        (httpx.Client(http1=False, http2=True), f"http://127.0.0.1:{hw.port}", {}),
    ):
        with client:
            for i in range(20):
                r = client.post(
                    f"{base}/echo?i={i}",
                    content=b"x" * (i * 1000),
                    headers={"host": "a.test"},
                    extensions=extensions,
                )
                assert r.http_version == "HTTP/2", r.http_version
                assert r.status_code == 200
                assert r.json()["body_length"] == i * 1000
    assert len([r for r in b.requests if r[0] == "POST"]) == 40
    assert hw.proc.poll() is None


def _flood(port: int, frames: bytes, seconds: float = 3.0) -> tuple[int, bool]:
    """Send ``frames`` over and over without reading for up to ``seconds``: (bytes sent,
    whether hopwire ended the connection)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, b""))
    sock.setblocking(False)
    sent = 0
    ended = False
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            sent += sock.send(frames)
        except BlockingIOError:
            time.sleep(0.01)  # TCP pushes back: hopwire reads no faster than it answers
        except OSError:
            ended = True
            break
    sock.setblocking(True)
    sock.settimeout(5)
    try:
        while sock.recv(1 << 20):
            pass
        ended = True
    except OSError:
        ended = ended or True
    sock.close()
    return sent, ended


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_settings_and_ping_floods_and_an_hpack_bomb_are_bounded(
    make_backend: Any, make_hopwire: Any
) -> None:
    """SETTINGS and PING floods (each asks for an ACK: a client that never reads them makes
    the answers pile up) end the connection; an HPACK bomb (one 4000-byte entry in the
    dynamic table, then 16,000 one-byte references to it: 64 MB of fields from 20 KB) is
    refused at the field-section limit; the worker's memory stays flat and it keeps
    serving."""
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)}, workers=1)
    worker = hw.worker_pids()[0]
    before = rss_kib(worker)
    ping = _frame(6, 0, 0, b"12345678") * 200
    settings = _frame(4, 0, 0, (3).to_bytes(2, "big") + (100).to_bytes(4, "big")) * 200
    for name, frames in (("ping", ping), ("settings", settings)):
        sent, ended = _flood(hw.port, frames)
        assert ended, f"{name} flood: still open after {sent} bytes"
    wait_for(lambda: refused(hw, "connection_error") >= 2)
    # the HPACK bomb: GET / of a.test, then x: v*4000 into the dynamic table (index 62)...
    block = b"\x82\x86\x84\x41\x01a" + b"\x40\x01x\x7f\xa1\x1e" + b"v" * 4000
    block += b"\xbe" * 16000  # ... and 16,000 references to it
    pieces = [block[i : i + 16384] for i in range(0, len(block), 16384)]
    frames = _frame(1, 0x1 | (0x4 if len(pieces) == 1 else 0), 1, pieces[0])  # END_STREAM
    for i, piece in enumerate(pieces[1:], 1):
        frames += _frame(9, 0x4 if i == len(pieces) - 1 else 0, 1, piece)
    with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, b"") + frames)
        seen = b""
        sock.settimeout(5)
        try:
            while (
                b"\x03\x00\x00\x00\x00\x01" not in seen and b"\x07\x00\x00\x00\x00\x00" not in seen
            ):
                data = sock.recv(65536)
                if not data:
                    break
                seen += data
        except OSError:
            pass
        # RST_STREAM on stream 1 (or the connection's GOAWAY): never a request
        assert b"\x03\x00\x00\x00\x00\x01" in seen or b"\x07\x00\x00\x00\x00\x00" in seen
    assert not [r for r in b.requests if r[1] == "/"]
    wait_for(lambda: refused(hw, "oversized_head") >= 1, timeout=5)
    assert rss_kib(worker) - before < 32 * 1024, (before, rss_kib(worker))
    assert request(hw.port, "GET", "/echo")[0] == 200
    assert hw.proc.poll() is None


def test_request_trailers_and_a_client_goaway(make_backend: Any, make_hopwire: Any) -> None:
    """A request with trailer fields after its body: they follow the body to the backend (as
    a chunked body's trailer section to an HTTP/1.1 one); a client that says GOAWAY as it
    leaves is no error."""
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    c = Client(hw.port)
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(
        sid, [(":method", "POST"), (":path", "/echo"), (":scheme", "http"), (":authority", "a")]
    )
    c.h2.send_data(sid, b"hello")
    c.h2.send_headers(sid, [("x-checksum", "5")], end_stream=True)  # trailers
    c.flush()
    status, _, body = c.response(sid)
    assert status == 200 and json.loads(body)["body_length"] == 5
    assert b.trailers[-1] == [("x-checksum", "5")]  # after the chunked body to HTTP/1.1
    c.h2.close_connection()
    c.flush()
    c.close()
    assert request(hw.port, "GET", "/echo")[0] == 200
    assert refused(hw, "connection_error") == 0


def test_access_log_says_http2(make_backend: Any, make_hopwire: Any, tmp_path: Path) -> None:
    """RequestProtocol is HTTP/2.0 for a stream, HTTP/1.1 beside it, as Traefik writes them."""
    b = make_backend()
    log = tmp_path / "access.json"
    hw = make_hopwire(
        {"accessLog": {"filePath": str(log), "format": "json"}, "http": catch_all(b.url)}
    )
    c = Client(hw.port)
    assert c.response(c.request("/echo/h2"))[0] == 200
    c.close()
    assert request(hw.port, "GET", "/echo/h1")[0] == 200

    def protocols() -> dict[str, str]:
        if not log.exists():
            return {}
        lines = [json.loads(line) for line in log.read_text().splitlines() if line]
        return {d["RequestPath"]: d["RequestProtocol"] for d in lines}

    wait_for(lambda: len(protocols()) == 2)
    assert protocols() == {"/echo/h2": "HTTP/2.0", "/echo/h1": "HTTP/1.1"}


def test_http11_request_trailers_are_relayed(make_backend: Any, make_hopwire: Any) -> None:
    """A chunked request's trailer fields reach the backend after its body, less those the
    framing or the connection owns (RFC 9110 §6.5.1)."""
    import h11

    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    h11_round(
        hw.port,
        h11.Request(
            method="POST",
            target="/echo",
            headers=[("host", "a.test"), ("transfer-encoding", "chunked")],
        ),
        h11.Data(data=b"hello"),
        h11.EndOfMessage(headers=[("x-checksum", "5"), ("host", "evil.test")]),
    )
    assert b.requests[-1][3] == b"hello"
    assert b.trailers[-1] == [("x-checksum", "5")]


def test_otlp_server_histogram_says_http2(make_backend: Any, make_hopwire: Any) -> None:
    """http.server.request.duration's network.protocol.version: "2" for a stream, "1.1"
    beside it (the span and the access log say the same)."""
    from tests.otlp_receiver import HttpReceiver, attr_value

    rx = HttpReceiver()
    try:
        b = make_backend()
        hw = make_hopwire(
            {
                "http": catch_all(b.url),
                "metrics": {
                    "otlp": {
                        "http": {"endpoint": f"{rx.base}/v1/metrics"},
                        "pushInterval": "500ms",
                    }
                },
            }
        )
        c = Client(hw.port)
        assert c.response(c.request("/echo"))[0] == 200
        c.close()
        assert request(hw.port, "GET", "/echo")[0] == 200

        def versions() -> dict[str, int]:
            out: dict[str, int] = {}
            for _, m in rx.metrics():
                if m.name != "http.server.request.duration":
                    continue
                for p in m.histogram.data_points:
                    a = {kv.key: attr_value(kv.value) for kv in p.attributes}
                    out[a["network.protocol.version"]] = p.count  # cumulative: the last
            return out

        wait_for(lambda: versions() == {"2": 1, "1.1": 1}, timeout=15)
        hw.stop()
    finally:
        rx.close()


def test_an_http11_backends_trailers_reach_both_kinds_of_client(
    make_backend: Any, make_hopwire: Any
) -> None:
    """A chunked response's trailer section from an HTTP/1.1 backend: to an HTTP/1.1 client
    as the trailer section of its chunked answer, to an HTTP/2 client as HEADERS after the
    DATA."""
    import h11

    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    c = Client(hw.port)
    sid = c.request("/trailers")
    status, _, body = c.response(sid)
    assert (status, body) == (200, b"body")
    got = [e for e in c.events if isinstance(e, h2.events.TrailersReceived) and e.stream_id == sid]
    assert got and dict(got[0].headers) == {b"x-sum": b"42", b"x-more": b"a b"}
    c.close()
    events = h11_round(
        hw.port,
        h11.Request(method="GET", target="/trailers", headers=[("host", "a")]),
        h11.EndOfMessage(),
    )
    assert dict(events[-1].headers) == {b"x-sum": b"42", b"x-more": b"a b"}


@pytest.mark.parametrize("piece", [1, 5, 13])
def test_an_http11_backends_trailers_written_in_pieces(
    make_backend: Any, make_hopwire: Any, piece: int
) -> None:
    """A trailer section that arrives over several reads (the backend writes the last
    chunk and each trailer line apart, down to a byte at a time), after a body of several
    reads, is relayed whole; then the connection serves the next request."""
    import h11

    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    for size in (4, 300_000):
        events = h11_round(
            hw.port,
            h11.Request(method="GET", target=f"/trailers/{size}/{piece}", headers=[("host", "a")]),
            h11.EndOfMessage(),
        )
        body = b"".join(e.data for e in events if isinstance(e, h11.Data))
        assert len(body) == size
        assert dict(events[-1].headers) == {b"x-sum": b"42", b"x-more": b"a b"}
    c = Client(hw.port)
    sid = c.request(f"/trailers/70000/{piece}")
    status, _, body = c.response(sid)
    assert (status, len(body)) == (200, 70000)
    got = [e for e in c.events if isinstance(e, h2.events.TrailersReceived) and e.stream_id == sid]
    assert got and dict(got[0].headers) == {b"x-sum": b"42", b"x-more": b"a b"}
    c.close()
