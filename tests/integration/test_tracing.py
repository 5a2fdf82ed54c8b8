"""Tracing end to end: hopwire workers -> exporter process -> a real OTLP receiver."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import h11
import pytest
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased

from tests.harness import exchange, free_port, make_ca, request, service, wait_for, websocket
from tests.otlp_receiver import GrpcReceiver, HttpReceiver, attrs

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def tracing(rx: Any, **extra: Any) -> dict[str, Any]:
    grpc_cfg = {"endpoint": rx.endpoint, "insecure": True, **extra.pop("grpc", {})}
    return {"otlp": {"grpc": grpc_cfg}, "batch": {"scheduleDelay": "100ms"}, **extra}


def routes(backend: Any, name: str = "api", **router: Any) -> dict[str, Any]:
    return {
        "routers": {name: {"rule": "PathPrefix(`/`)", "service": "s", **router}},
        "services": {"s": service(backend.url)},
    }


def backend_traceparents(backend: Any, path: str) -> list[list[str]]:
    return [
        [v for n, v in r[2] if n.lower() == "traceparent"]
        for r in backend.requests
        if r[1].startswith(path)
    ]


def test_span_model_and_propagation(make_backend: Any, make_hopwire: Any, receiver: Any) -> None:
    b = make_backend()
    hw = make_hopwire(
        {
            "http": routes(b),
            "tracing": tracing(
                receiver,
                grpc={"headers": {"x-api-key": "k1"}},
                serviceName="edge",
                resourceAttributes={"deployment.environment": "t"},
            ),
        }
    )
    status, _, _ = request(
        hw.port,
        "GET",
        "/hello?user=alice&x=1",
        host="a.test:8080",
        headers=[("traceparent", PARENT), ("tracestate", "vendor=abc"), ("user-agent", "tests/1")],
    )
    assert status == 200
    server, client = sorted(receiver.wait(2), key=lambda s: s.kind)
    assert (server.name, server.kind, client.name, client.kind) == ("GET api", 2, "GET", 3)
    assert server.trace_id.hex() == client.trace_id.hex() == PARENT[3:35]
    assert server.parent_span_id.hex() == PARENT[36:52]  # child of the inbound parent
    assert client.parent_span_id == server.span_id
    assert server.trace_state == client.trace_state == "vendor=abc"
    # the backend saw exactly one traceparent, carrying the CLIENT span
    [[sent]] = backend_traceparents(b, "/hello")
    assert sent == f"00-{PARENT[3:35]}-{client.span_id.hex()}-01"
    assert ("tracestate", "vendor=abc") in [(n.lower(), v) for n, v in b.requests[-1][2]]
    assert attrs(server) == {
        "http.request.method": "GET",
        "url.path": "/hello",
        "url.scheme": "http",
        "url.query": "user=REDACTED&x=REDACTED",
        "http.route": "api",
        "server.address": "a.test",
        "server.port": 8080,
        "client.address": "127.0.0.1",
        "network.peer.address": "127.0.0.1",
        "network.peer.port": attrs(server)["network.peer.port"],
        "network.protocol.version": "1.1",
        "user_agent.original": "tests/1",
        "http.response.status_code": 200,
    }
    assert attrs(client) == {
        "http.request.method": "GET",
        "url.full": f"{b.url}/hello?user=REDACTED&x=REDACTED",
        "server.address": "127.0.0.1",
        "server.port": b.port,
        "http.response.status_code": 200,
    }
    assert server.status.code == client.status.code == 0
    assert server.flags == 0x301 and client.flags == 0x101  # remote parent, sampled
    assert server.start_time_unix_nano <= client.start_time_unix_nano
    assert client.end_time_unix_nano <= server.end_time_unix_nano
    resource = receiver.resources()[0]
    assert resource["service.name"] == "edge" and resource["deployment.environment"] == "t"
    assert resource["service.version"] and resource["service.instance.id"]
    assert resource["host.name"] == socket.gethostname()
    assert resource["telemetry.sdk.name"] == "opentelemetry"
    assert resource["telemetry.sdk.language"] == "python" and resource["telemetry.sdk.version"]
    assert receiver.requests[0][1]["x-api-key"] == "k1"  # headers arrive as gRPC metadata


def test_error_statuses_and_new_root_flags(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    b = make_backend()
    down = f"http://127.0.0.1:{free_port()}"
    hw = make_hopwire(
        {
            "http": {
                "routers": {
                    "ok": {"rule": "PathPrefix(`/`)", "service": "s", "priority": 1},
                    "down": {"rule": "PathPrefix(`/down`)", "service": "d"},
                },
                "services": {"s": service(b.url), "d": service(down)},
            },
            "tracing": tracing(receiver),
        }
    )
    assert request(hw.port, "GET", "/status/404")[0] == 404
    assert request(hw.port, "GET", "/down")[0] == 502
    spans = receiver.wait(4)
    by = {(s.name, s.kind, attrs(s).get("http.response.status_code")): s for s in spans}
    server404, client404 = by[("GET ok", 2, 404)], by[("GET", 3, 404)]
    assert server404.status.code == 0  # SERVER spans are errors on 5xx only
    assert client404.status.code == 2 and attrs(client404)["error.type"] == "404"
    server502 = by[("GET down", 2, 502)]
    client_failed = next(s for s in spans if s.kind == 3 and s.trace_id == server502.trace_id)
    assert server502.status.code == 2 and attrs(server502)["error.type"] == "connect_failed"
    assert client_failed.status.code == 2 and attrs(client_failed)["error.type"] == "connect_failed"
    assert not server502.parent_span_id  # a new root ...
    assert server502.flags & 0xFF == 0x03  # ... sampled, with the level-2 random flag


def test_retry_shows_two_client_spans(make_backend: Any, make_hopwire: Any, receiver: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": routes(b), "tracing": tracing(receiver)}, workers=1)
    assert request(hw.port, "GET", "/warm")[0] == 200
    b.drop_reused = True
    assert request(hw.port, "GET", "/again")[0] == 200
    spans = receiver.wait(5)
    server = next(s for s in spans if s.kind == 2 and attrs(s)["url.path"] == "/again")
    clients = [s for s in spans if s.kind == 3 and s.parent_span_id == server.span_id]
    assert len(clients) == 2 and clients[0].span_id != clients[1].span_id
    failed, ok = sorted(clients, key=lambda s: s.start_time_unix_nano)
    assert attrs(failed)["error.type"] == "upstream_closed"
    [[sent]] = backend_traceparents(b, "/again")
    assert sent.split("-")[2] == ok.span_id.hex()


def test_sample_rate_quarter_matches_the_sdk(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    b = make_backend()
    hw = make_hopwire({"http": routes(b), "tracing": tracing(receiver, sampleRate=0.25)})
    n = 4000
    with socket.create_connection(("127.0.0.1", hw.port)) as sock:
        conn = h11.Connection(h11.CLIENT)
        for _ in range(n):
            assert exchange(sock, "GET", "/s", conn=conn)[0] == 200
    sdk = ParentBased(TraceIdRatioBased(0.25))
    decided: dict[str, bool] = {}
    for [value] in backend_traceparents(b, "/s"):
        _, trace_id, _, flags = value.split("-")
        decided[trace_id] = flags == "03"
        assert flags in ("02", "03")  # not sampled still propagates, with the random flag
        sdk_says = sdk.should_sample(None, int(trace_id, 16), "x").decision
        assert (sdk_says is Decision.RECORD_AND_SAMPLE) == decided[trace_id], trace_id
    assert len(decided) == n  # every request a new root
    sampled = {t for t, s in decided.items() if s}
    # binomial(4000, 0.25): mean 1000, sd 27.4; 6 sd either way
    assert 836 <= len(sampled) <= 1164, len(sampled)
    wait_for(lambda: len({s.trace_id.hex() for s in receiver.spans()}) >= len(sampled))
    assert {s.trace_id.hex() for s in receiver.spans()} == sampled


def test_inbound_decision_obeyed(make_backend: Any, make_hopwire: Any, receiver: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": routes(b), "tracing": tracing(receiver, sampleRate=0.0)})
    unsampled = PARENT[:-2] + "00"
    assert request(hw.port, "GET", "/no", headers=[("traceparent", unsampled)])[0] == 200
    assert request(hw.port, "GET", "/yes", headers=[("traceparent", PARENT)])[0] == 200
    assert request(hw.port, "GET", "/root")[0] == 200
    spans = receiver.wait(2)
    time.sleep(0.5)
    assert {attrs(s).get("url.path") for s in receiver.spans() if s.kind == 2} == {"/yes"}
    [[no]] = backend_traceparents(b, "/no")
    assert no.startswith(f"00-{PARENT[3:35]}-") and no.endswith("-00")
    assert no.split("-")[2] != PARENT[36:52]  # the parent is hopwire's (unsampled) CLIENT span
    [[root]] = backend_traceparents(b, "/root")
    assert root.endswith("-02")
    del spans


@pytest.mark.parametrize(
    "inbound",
    [
        [("traceparent", "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01")],
        [("traceparent", PARENT), ("traceparent", PARENT)],
        [("traceparent", "x" * 600), ("tracestate", "a=1")],
    ],
)
def test_invalid_or_duplicate_traceparent_starts_a_new_trace(
    make_backend: Any, make_hopwire: Any, receiver: Any, inbound: list
) -> None:
    b = make_backend()
    hw = make_hopwire({"http": routes(b), "tracing": tracing(receiver)})
    assert request(hw.port, "GET", "/bad", headers=inbound)[0] == 200
    [[sent]] = backend_traceparents(b, "/bad")
    assert sent.split("-")[1] != PARENT[3:35].lower() and sent.endswith("-03")
    assert "tracestate" not in [n.lower() for n, _ in b.requests[-1][2]]
    server = next(s for s in receiver.wait(2) if s.kind == 2)
    assert not server.parent_span_id


def test_switches_inherit_and_off_passes_through(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    b = make_backend()
    hw = make_hopwire(
        {
            "http": {
                "routers": {
                    "inherit": {"rule": "PathPrefix(`/inherit`)", "service": "s"},
                    "forced": {
                        "rule": "PathPrefix(`/forced`)",
                        "service": "s",
                        "observability": {"tracing": True},
                    },
                    "muted": {
                        "rule": "PathPrefix(`/muted`)",
                        "service": "s",
                        "entryPoints": ["web"],
                        "observability": {"tracing": False},
                    },
                },
                "services": {"s": service(b.url)},
            },
            "tracing": tracing(receiver),
        },
        start=False,
    )
    quiet = free_port()
    hw.config["entryPoints"]["quiet"] = {
        "address": f"127.0.0.1:{quiet}",
        "observability": {"tracing": False},
    }
    hw.write(hw.config)
    hw.start()
    odd = [
        ("traceparent", "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"),
        ("tracestate", "Weird =  kept ,, as is"),
    ]
    for port, path in (
        (hw.port, "/inherit"),
        (quiet, "/inherit"),
        (quiet, "/forced"),
        (hw.port, "/muted"),
    ):
        assert request(port, "GET", path, headers=odd)[0] == 200
    spans = receiver.wait(4)
    time.sleep(0.5)
    traced = sorted(attrs(s)["url.path"] for s in receiver.spans() if s.kind == 2)
    assert traced == ["/forced", "/inherit"]  # web inherits on; quiet off unless forced
    untraced = [r for r in b.requests if r[1] in ("/muted",)] + [
        r for r in b.requests if r[1] == "/inherit"
    ][1:]
    for r in untraced:  # byte for byte
        got = [(n.lower(), v) for n, v in r[2] if n.lower() in ("traceparent", "tracestate")]
        assert got == [(n, v) for n, v in odd]
    del spans


def test_tracing_off_everywhere_means_no_exporter(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": routes(b)}, workers=2)
    assert len(hw.worker_pids()) == 2
    sent = [("traceparent", PARENT), ("tracestate", "x=1")]
    assert request(hw.port, "GET", "/p", headers=sent)[0] == 200
    got = [(n.lower(), v) for n, v in b.requests[-1][2] if n.lower().startswith("trace")]
    assert got == sent
    assert "span exporter" not in hw.logs()


def test_tls_to_the_receiver(make_backend: Any, make_hopwire: Any, tmp_path: Path) -> None:
    ca, cert, key = make_ca(tmp_path)
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    rx = GrpcReceiver(creds)
    try:
        b = make_backend()
        hw = make_hopwire(
            {
                "http": routes(b),
                "tracing": {
                    "otlp": {"grpc": {"endpoint": rx.endpoint, "tls": {"ca": str(ca)}}},
                    "batch": {"scheduleDelay": "100ms"},
                },
            }
        )
        assert request(hw.port, "GET", "/tls")[0] == 200
        assert {s.name for s in rx.wait(2)} == {"GET api", "GET"}
    finally:
        rx.close()


def test_otlp_http_receiver(make_backend: Any, make_hopwire: Any) -> None:
    rx = HttpReceiver()
    try:
        b = make_backend()
        hw = make_hopwire(
            {
                "http": routes(b),
                "tracing": {
                    "otlp": {
                        "http": {
                            "endpoint": rx.endpoint,
                            "headers": {"x-team": "edge"},
                            "compression": "gzip",
                        }
                    },
                    "batch": {"scheduleDelay": "100ms"},
                },
            }
        )
        assert request(hw.port, "GET", "/h")[0] == 200
        assert {s.name for s in rx.wait(2)} == {"GET api", "GET"}
        assert rx.requests[0][1]["x-team"] == "edge"
        assert rx.requests[0][1]["content-type"] == "application/x-protobuf"
    finally:
        rx.close()


def http_tracing(endpoint: str, **http: Any) -> dict[str, Any]:
    return {"otlp": {"http": {"endpoint": endpoint, **http}}, "batch": {"scheduleDelay": "50ms"}}


@pytest.mark.parametrize("idle_close", [False, True], ids=["kept-alive", "closed-when-idle"])
def test_otlp_http_connection_is_kept_and_renewed(
    make_backend: Any, make_hopwire: Any, idle_close: bool
) -> None:
    """The exports share one kept-alive connection; a collector that closed it while it was
    idle costs nothing: the export goes again at once on a new one (no error, nothing lost)."""
    rx = HttpReceiver(keep_alive=True, idle_close=idle_close)
    try:
        b = make_backend()
        tracing = http_tracing(rx.endpoint)
        # shorter than the first backoff (~1 s): an export not sent again at once would fail
        tracing["batch"]["exportTimeout"] = "500ms"
        hw = make_hopwire({"http": routes(b), "tracing": tracing})
        for i in range(4):  # one export each: the last one has arrived before the next request
            assert request(hw.port, "GET", f"/k{i}")[0] == 200
            rx.wait(2 * (i + 1))
        assert len(rx.requests) == 4
        assert rx.connections == (4 if idle_close else 1)
        hw.stop()
        assert "export failed" not in hw.logs()
    finally:
        rx.close()


def test_otlp_https_receiver_with_a_client_certificate(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    """https:// with tls.ca (the only root trusted) and a client certificate the collector
    requires."""
    from tests.certs import Authority

    ca = Authority(tmp_path)
    client = ca.leaf(file="to-collector", cn="hopwire", client=True)
    rx = HttpReceiver(tls=ca.mtls_server(ca.leaf("127.0.0.1", file="collector")))
    try:
        b = make_backend()
        tls = {"ca": str(ca.path), "cert": str(client.cert), "key": str(client.key)}
        hw = make_hopwire({"http": routes(b), "tracing": http_tracing(rx.endpoint, tls=tls)})
        assert request(hw.port, "GET", "/s")[0] == 200
        assert {s.name for s in rx.wait(2)} == {"GET api", "GET"}
        subject = dict(item[0] for item in rx.peer_certificates[0]["subject"])
        assert subject["commonName"] == "hopwire"  # the client certificate hopwire showed
    finally:
        rx.close()


def test_otlp_http_refuses_an_unknown_certificate(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    """Without tls.ca the collector's certificate (from a private CA) is refused: the export
    fails and is logged; with insecureSkipVerify it is accepted."""
    import ssl

    from tests.certs import Authority

    collector = Authority(tmp_path).leaf("127.0.0.1", file="collector")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(collector.cert, collector.key)
    rx = HttpReceiver(tls=server)
    try:
        b = make_backend()
        tracing = http_tracing(rx.endpoint, timeout="1s")
        tracing["batch"]["exportTimeout"] = "1s"  # no retry after that: the failure is logged
        hw = make_hopwire({"http": routes(b), "tracing": tracing})
        assert request(hw.port, "GET", "/v")[0] == 200
        wait_for(lambda: "span export failed" in hw.logs())
        assert "SSLCertVerificationError" in hw.logs()
        hw.stop()
        assert rx.requests == []
        insecure = http_tracing(rx.endpoint, tls={"insecureSkipVerify": True})
        hw = make_hopwire({"http": routes(b), "tracing": insecure})
        assert request(hw.port, "GET", "/v")[0] == 200
        assert {s.name for s in rx.wait(2)} == {"GET api", "GET"}
    finally:
        rx.close()


class ForwardProxy:
    """An HTTP forward proxy for plain http:// targets: keeps each request line (and its
    Proxy-Authorization), sends the request on to its absolute URL and relays the answer."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                seen.append((self.requestline, self.headers.get("proxy-authorization")))
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers["content-length"]))
                with socket.create_connection((url.hostname, url.port), timeout=5) as up:
                    head = f"POST {url.path} HTTP/1.0\r\ncontent-length: {len(body)}\r\n"
                    up.sendall(head.encode() + b"\r\n" + body)
                    answer = b""
                    while chunk := up.recv(65536):
                        answer += chunk
                self.wfile.write(answer)
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://user:s%40cret@127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_otlp_http_goes_through_the_proxy_the_environment_names(
    make_backend: Any, make_hopwire: Any
) -> None:
    """HTTP_PROXY (with credentials) is used as the official exporter (requests) uses it: the
    absolute URL to the proxy (NO_PROXY cleared, so that 127.0.0.1 is not left out)."""
    import base64

    rx, proxy = HttpReceiver(), ForwardProxy()
    try:
        b = make_backend()
        env = {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "NO_PROXY": "", "no_proxy": ""}
        hw = make_hopwire({"http": routes(b), "tracing": http_tracing(rx.endpoint)}, env=env)
        assert request(hw.port, "GET", "/p")[0] == 200
        assert {s.name for s in rx.wait(2)} == {"GET api", "GET"}
        line, auth = proxy.seen[0]
        assert line == f"POST {rx.endpoint} HTTP/1.1"
        assert auth == "Basic " + base64.b64encode(b"user:s@cret").decode()
    finally:
        proxy.close()
        rx.close()


def test_collector_down(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(
        {
            "http": routes(b),
            "tracing": {
                "otlp": {
                    "grpc": {
                        "endpoint": f"127.0.0.1:{free_port()}",
                        "insecure": True,
                        "timeout": "500ms",
                    }
                },
                "batch": {"scheduleDelay": "100ms", "exportTimeout": "1s"},
            },
        }
    )
    for _ in range(200):
        assert request(hw.port, "GET", "/")[0] == 200  # requests unaffected
    wait_for(lambda: "span export failed" in hw.logs())
    started = time.monotonic()
    assert hw.stop() == 0
    assert time.monotonic() - started < 15  # the flush is bounded (functional bound, not perf)
    last = [json.loads(x) for x in hw.logs().splitlines() if "span exporter 0 stopped" in x][-1]
    dropped = int(last["msg"].split(" dropped")[0].rsplit(" ", 1)[1])
    assert dropped > 0


def test_exporter_killed_is_restarted(make_backend: Any, make_hopwire: Any, receiver: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": routes(b), "tracing": tracing(receiver)})
    [pid] = wait_for(hw.exporter_pids)
    assert request(hw.port, "GET", "/one")[0] == 200
    receiver.wait(2)
    import os

    os.kill(pid, signal.SIGKILL)
    # a new exporter's "ready" line is written after the master logged the death (a generous
    # bound, and the logs in the message if it is ever missed)
    try:
        wait_for(lambda: [p for p in hw.exporter_pids() if p != pid], timeout=30)
    except AssertionError:
        raise AssertionError(f"no new exporter after killing {pid}:\n{hw.logs()[-4000:]}")
    assert "span exporter 0" in hw.logs() and "restarting" in hw.logs()
    for _ in range(20):  # workers keep serving throughout
        assert request(hw.port, "GET", "/two")[0] == 200

    def resumed() -> bool:  # records sent while the new exporter started may be dropped
        assert request(hw.port, "GET", "/two")[0] == 200
        return any(attrs(s).get("url.path") == "/two" for s in receiver.spans())

    wait_for(resumed, timeout=20, interval=0.2)


def test_chained_instances_make_one_trace(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    b = make_backend()
    inner = make_hopwire(
        {"http": routes(b, "inner"), "tracing": tracing(receiver, serviceName="inner")}
    )
    edge = make_hopwire(
        {
            "http": {
                "routers": {"edge": {"rule": "PathPrefix(`/`)", "service": "in"}},
                "services": {"in": service(f"http://127.0.0.1:{inner.port}")},
            },
            "tracing": tracing(receiver, serviceName="edge"),
        }
    )
    assert request(edge.port, "GET", "/chain")[0] == 200
    spans = receiver.wait(4)
    assert len({s.trace_id for s in spans}) == 1
    edge_server = next(s for s in spans if s.name == "GET edge")
    edge_client = next(s for s in spans if s.kind == 3 and s.parent_span_id == edge_server.span_id)
    inner_server = next(s for s in spans if s.name == "GET inner")
    inner_client = next(
        s for s in spans if s.kind == 3 and s.parent_span_id == inner_server.span_id
    )
    assert inner_server.parent_span_id == edge_client.span_id
    [[sent]] = backend_traceparents(b, "/chain")
    assert sent.split("-")[2] == inner_client.span_id.hex()
    services = {r["service.name"] for r in receiver.resources()}
    assert services == {"edge", "inner"}


def test_upgrade_span_and_traced_handshake(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    b = make_backend()
    hw = make_hopwire({"http": routes(b), "tracing": tracing(receiver)})
    sock, head = websocket(hw.port, timeout=5)
    with sock:
        assert head.startswith(b"HTTP/1.1 101")
        server = next(s for s in receiver.wait(2) if s.kind == 2)  # ended at the upgrade
    assert attrs(server)["http.connection.upgrade"] is True
    assert attrs(server)["http.response.status_code"] == 101
    [[sent]] = backend_traceparents(b, "/raw/ws")
    assert sent.split("-")[1] == server.trace_id.hex()


def test_log_lines_carry_trace_ids(make_hopwire: Any, receiver: Any) -> None:
    hw = make_hopwire(
        {
            "http": {
                "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "d"}},
                "services": {"d": service(f"http://127.0.0.1:{free_port()}")},
            },
            "tracing": tracing(receiver),
        }
    )
    assert request(hw.port, "GET", "/x", headers=[("traceparent", PARENT)])[0] == 502
    server = next(s for s in receiver.wait(2) if s.kind == 2)
    line = next(json.loads(x) for x in hw.logs().splitlines() if "connect_failed" in x)
    assert line["trace_id"] == PARENT[3:35]
    assert line["span_id"] == server.span_id.hex()


def test_unrouted_requests_and_internals(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    b = make_backend()
    config = {
        "http": {
            "routers": {"api": {"rule": "Host(`a.test`)", "service": "s"}},
            "services": {"s": service(b.url)},
        }
    }
    hw = make_hopwire({**config, "tracing": tracing(receiver)})
    assert request(hw.port, "GET", "/nowhere", host="b.test")[0] == 404
    assert request(hw.internal, "GET", "/ping")[0] == 200
    [span] = receiver.wait(1)
    time.sleep(0.5)
    assert len(receiver.spans()) == 1  # /ping is not traced by default
    assert span.name == "GET" and "http.route" not in attrs(span)  # no route: the method only
    assert attrs(span)["http.response.status_code"] == 404 and span.status.code == 0
    with_internals = make_hopwire({**config, "tracing": tracing(receiver, addInternals=True)})
    assert request(with_internals.internal, "GET", "/ping")[0] == 200
    wait_for(lambda: any(attrs(s).get("url.path") == "/ping" for s in receiver.spans()))


def test_tracing_section_switched_off_everywhere_starts_no_exporter(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    b = make_backend()
    off = {"tracing": False}
    hw = make_hopwire(
        {"http": routes(b, observability=off), "tracing": tracing(receiver)}, start=False
    )
    for ep in hw.config["entryPoints"].values():
        ep["observability"] = off
    hw.write(hw.config)
    hw.start()
    assert len(hw.worker_pids()) == 2  # the workers only: no exporter process
    sent = [("traceparent", PARENT)]
    assert request(hw.port, "GET", "/p", headers=sent)[0] == 200
    assert [(n.lower(), v) for n, v in b.requests[-1][2] if n.lower() == "traceparent"] == sent
    assert "no span exporter is started" in hw.logs()
    assert hw.exporter_pids() == []
    assert receiver.spans() == []


def test_w3c_whitespace_duplicates_and_limit(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    b = make_backend()
    hw = make_hopwire({"http": routes(b), "tracing": tracing(receiver)})
    trace_id = PARENT.split("-")[1]
    with socket.create_connection(("127.0.0.1", hw.port)) as sock:  # OWS around the value
        sock.sendall(
            b"GET /ows HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
            b"traceparent: \t" + PARENT.encode() + b" \t\r\ntracestate: a=1,b=2,a=3\r\n\r\n"
        )
        while sock.recv(65536):
            pass
    [[sent_parent]] = backend_traceparents(b, "/ows")
    assert sent_parent.split("-")[1] == trace_id  # the same trace, not a new one
    states = [v for n, v in b.requests[-1][2] if n.lower() == "tracestate"]
    assert states == ["a=1,b=2"]  # the duplicate removed, the rest propagated
    many = ",".join(f"k{i}=v" for i in range(33))
    request(hw.port, "GET", "/many", headers=[("traceparent", PARENT), ("tracestate", many)])
    assert [v for n, v in b.requests[-1][2] if n.lower() == "tracestate"] == []


def test_captured_headers_safe_query_params_and_traceresponse(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    """tracing.capturedRequestHeaders / capturedResponseHeaders record string arrays,
    safeQueryParams keep their values in url.query and url.full, traceResponse names the
    SERVER span to the client (W3C Trace Context Level 2), on relayed and error responses."""
    b = make_backend(name="be-1")
    down = f"http://127.0.0.1:{free_port()}"
    hw = make_hopwire(
        {
            "http": {
                "routers": {
                    "api": {"rule": "PathPrefix(`/`)", "service": "s", "priority": 1},
                    "down": {"rule": "PathPrefix(`/down`)", "service": "d"},
                },
                "services": {"s": service(b.url), "d": service(down)},
            },
            "tracing": tracing(
                receiver,
                capturedRequestHeaders=["X-Request-Id", "Accept"],
                capturedResponseHeaders=["X-Server"],
                safeQueryParams=["page"],
                traceResponse=True,
            ),
        }
    )
    status, headers, _ = request(
        hw.port,
        "GET",
        "/opts?page=2&token=secret",
        headers=[("X-Request-Id", "r1"), ("x-request-id", "r2"), ("user-agent", "t")],
    )
    assert status == 200
    server, client = sorted(receiver.wait(2), key=lambda s: s.kind)
    [traceresponse] = [v for n, v in headers if n == "traceresponse"]
    assert traceresponse == f"00-{server.trace_id.hex()}-{server.span_id.hex()}-03"
    server_attrs = attrs(server)
    assert [v.string_value for v in server_attrs["http.request.header.x-request-id"].values] == [
        "r1",
        "r2",
    ]
    assert [v.string_value for v in server_attrs["http.response.header.x-server"].values] == [
        "be-1"
    ]
    assert "http.request.header.accept" not in server_attrs  # not sent: not recorded
    assert server_attrs["url.query"] == "page=2&token=REDACTED"
    assert attrs(client)["url.full"] == f"{b.url}/opts?page=2&token=REDACTED"
    # hopwire's own error answer names its span too
    status, headers, _ = request(hw.port, "GET", "/down")
    assert status == 502
    spans = receiver.wait(4)
    failed = next(s for s in spans if s.name == "GET down")
    assert dict(headers)["traceresponse"] == (
        f"00-{failed.trace_id.hex()}-{failed.span_id.hex()}-03"
    )
    # an unsampled parent: the answer says so (flags 00), and nothing is exported
    unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    status, headers, _ = request(hw.port, "GET", "/quiet", headers=[("traceparent", unsampled)])
    assert status == 200
    value = dict(headers)["traceresponse"]
    assert value.startswith("00-0af7651916cd43dd8448eb211c80319c-") and value.endswith("-00")
    assert value[36:52] != "b7ad6b7169203331"  # the proxy's own span, not the parent's
    time.sleep(0.5)
    assert len(receiver.spans()) == 4


def test_no_traceresponse_unless_asked(make_backend: Any, make_hopwire: Any, receiver: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": routes(b), "tracing": tracing(receiver)})
    status, headers, _ = request(hw.port, "GET", "/x?a=1")
    assert status == 200 and "traceresponse" not in dict(headers)
    server, _ = sorted(receiver.wait(2), key=lambda s: s.kind)
    assert not [k for k in attrs(server) if k.startswith("http.request.header.")]


@pytest.mark.parametrize("encoder", ["c", "python"])
def test_each_encoder_exports_and_says_which_runs(
    make_backend: Any, make_hopwire: Any, receiver: Any, encoder: str
) -> None:
    b = make_backend()
    hw = make_hopwire({"http": routes(b), "tracing": tracing(receiver, encoder=encoder)})
    assert request(hw.port, "GET", "/e?q=1")[0] == 200
    server, client = sorted(receiver.wait(2), key=lambda s: s.kind)
    assert attrs(server)["url.query"] == "q=REDACTED" and client.parent_span_id == server.span_id
    wait_for(lambda: f"({encoder} encoder)" in hw.log_path.read_text())


def test_version_names_the_encoders() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "hopwire", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert "OTLP span encoders: c (compiled), python" in out


def test_export_batches_respect_the_size_and_bad_datagrams_are_survived(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    """At most maxExportBatchSize spans per export; a datagram that is not a span count and
    that many encoded spans is logged and dropped, and the exporter keeps exporting."""
    from hopwire.telemetry.records import HEADER, SPANS

    b = make_backend()
    hw = make_hopwire(
        {
            "http": routes(b),
            "tracing": tracing(receiver, batch={"maxExportBatchSize": 3, "scheduleDelay": "100ms"}),
        }
    )
    for i in range(5):
        assert request(hw.port, "GET", f"/b{i}")[0] == 200
    receiver.wait(10)
    sizes = [
        sum(len(ss.spans) for rs in r.resource_spans for ss in rs.scope_spans)
        for r, _ in receiver.requests
    ]
    assert sum(sizes) == 10 and max(sizes) <= 3
    [ready] = [
        json.loads(line)["msg"]
        for line in hw.log_path.read_text().splitlines()
        if "span exporter 0 ready on" in line
    ]
    path = ready.split(" ready on ", 1)[1].split()[0]
    bad = [
        b"\x00",  # shorter than the count
        HEADER.pack(SPANS, 1),  # a count and nothing
        b"\x00garbage",  # not entries
        HEADER.pack(SPANS, 2) + b"\x12\x03abc",  # fewer entries than the count
        HEADER.pack(SPANS, 1) + b"\x12\x09abc",  # an entry longer than the datagram
        HEADER.pack(SPANS, 0) + b"\x12\x03abc",  # no spans said
    ]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for datagram in bad:
            sock.sendto(datagram, path)
    wait_for(lambda: hw.log_path.read_text().count("malformed datagram") == len(bad))
    assert request(hw.port, "GET", "/after")[0] == 200
    spans = receiver.wait(12)
    assert {s.name for s in spans} == {"GET api", "GET"} and len(spans) == 12


def test_without_the_compiled_encoder_start_up_names_the_key(tmp_path: Path) -> None:
    """An install where _otlp.c was not compiled: tracing.encoder c (the default) stops
    start-up with exit 2 naming the key; tracing.encoder python runs."""
    import shutil
    import subprocess
    import sys

    import hopwire

    tree = tmp_path / "server"
    shutil.copytree(
        Path(hopwire.__file__).parent, tree / "hopwire", ignore=shutil.ignore_patterns("_otlp*.so")
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "hopwire", "--check", "--tracing=true"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 2, out
    assert "tracing.encoder" in out.stderr and "not installed" in out.stderr
    out = subprocess.run(
        [*cmd, "--tracing.encoder=python"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out
    version = subprocess.run(
        [sys.executable, "-m", "hopwire", "--version"], capture_output=True, text=True, env=env
    )
    assert "python (c not built)" in version.stdout
