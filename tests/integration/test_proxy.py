"""Proxying through a real multi-worker hopwire: routing, balancing, health, keep-alive,
bodies, upgrades and header handling."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from typing import Any

import h11

from tests.harness import catch_all, exchange, header, raw, request, service, wait_for, websocket


def echo(port: int, target: str = "/echo", host: str = "example.test", **kw: Any) -> dict:
    status, _, body = request(port, "GET", target, host=host, **kw)
    assert status == 200, body
    return json.loads(body)


def test_routing_by_each_matcher(make_backend: Any, make_hopwire: Any) -> None:
    names = [
        "host",
        "hostre",
        "path",
        "prefix",
        "pathre",
        "method",
        "header",
        "headerre",
        "query",
        "clientip",
        "combo",
        "fallback",
    ]
    backends = {n: make_backend(n) for n in names}
    rules = {
        "host": "Host(`a.test`)",
        "hostre": "HostRegexp(`^[a-z]+\\.wild\\.test$`)",
        "path": "Path(`/exact`)",
        "prefix": "PathPrefix(`/api/`)",
        "pathre": "PathRegexp(`^/items/[0-9]+$`)",
        "method": "Method(`DELETE`)",
        "header": "Header(`X-Tenant`, `blue`)",
        "headerre": "HeaderRegexp(`X-Version`, `^v[0-9]$`)",
        "query": "Query(`debug`, `1`)",
        "clientip": "ClientIP(`10.0.0.0/8`) || ClientIP(`127.0.0.2`)",
        "combo": "(Host(`b.test`) && !PathPrefix(`/skip`)) || Header(`X-Combo`, `1`)",
        "fallback": "PathPrefix(`/`)",
    }
    routers = {
        n: {"rule": r, "service": n, **({"priority": 1} if n == "fallback" else {})}
        for n, r in rules.items()
    }
    routers["clientip"]["priority"] = 500
    hw = make_hopwire(
        {"http": {"routers": routers, "services": {n: service(b.url) for n, b in backends.items()}}}
    )
    p = hw.port
    assert echo(p, "/x", host="a.test")["server"] == "host"
    assert echo(p, "/x", host="api.wild.test")["server"] == "hostre"
    assert echo(p, "/exact")["server"] == "path"
    assert echo(p, "/exact/more")["server"] == "fallback"
    assert echo(p, "/api/v1")["server"] == "prefix"
    assert echo(p, "/items/42")["server"] == "pathre"
    assert echo(p, "/items/x")["server"] == "fallback"
    status, _, body = request(p, "DELETE", "/anything")
    assert json.loads(body)["server"] == "method"
    assert echo(p, "/h", headers=[("X-Tenant", "blue")])["server"] == "header"
    assert echo(p, "/h", headers=[("X-Version", "v2")])["server"] == "headerre"
    assert echo(p, "/q?debug=1")["server"] == "query"
    assert echo(p, "/q?debug=2")["server"] == "fallback"
    assert echo(p, "/", host="b.test")["server"] == "combo"
    assert echo(p, "/skip", host="b.test")["server"] == "fallback"
    assert echo(p, "/", headers=[("X-Combo", "1")])["server"] == "combo"
    # Host matching ignores the port and case
    assert echo(p, "/x", host="A.TEST:8080")["server"] == "host"
    # absolute-form: the authority wins over Host (RFC 9112 §3.2.2)
    out = raw(p, b"GET http://a.test/abs HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n")
    assert b'"server": "host"' in out and b'"target": "/abs"' in out


def test_client_ip_matcher(make_backend: Any, make_hopwire: Any) -> None:
    inside, other = make_backend("inside"), make_backend("other")
    hw = make_hopwire(
        {
            "http": {
                "routers": {
                    "inside": {"rule": "ClientIP(`127.0.0.0/8`)", "service": "inside"},
                    "other": {"rule": "PathPrefix(`/`)", "service": "other", "priority": 1},
                },
                "services": {"inside": service(inside.url), "other": service(other.url)},
            }
        }
    )
    assert echo(hw.port)["server"] == "inside"


def test_no_route_is_404_and_never_an_open_proxy(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(
        {
            "http": {
                "routers": {"r": {"rule": "Host(`known.test`)", "service": "s"}},
                "services": {"s": service(b.url)},
            }
        }
    )
    assert request(hw.port, "GET", "/", host="unknown.test")[0] == 404
    out = raw(
        hw.port, b"GET http://evil.test/ HTTP/1.1\r\nHost: known.test\r\nConnection: close\r\n\r\n"
    )
    assert out.startswith(b"HTTP/1.1 404")
    assert b.requests == []


def test_priorities(make_backend: Any, make_hopwire: Any) -> None:
    long_rule, short_rule, explicit = make_backend("long"), make_backend("short"), make_backend("x")
    hw = make_hopwire(
        {
            "http": {
                "routers": {
                    # default priority is the rule length: the longer rule wins
                    "short": {"rule": "PathPrefix(`/a`)", "service": "short"},
                    "long": {"rule": "PathPrefix(`/a/b`)", "service": "long"},
                    "explicit": {
                        "rule": "PathPrefix(`/`)",
                        "service": "explicit",
                        "priority": 1000,
                    },
                },
                "services": {
                    "short": service(short_rule.url),
                    "long": service(long_rule.url),
                    "explicit": service(explicit.url),
                },
            }
        }
    )
    assert echo(hw.port, "/a/b/c")["server"] == "x"
    hw.config["http"]["routers"]["explicit"]["priority"] = 1
    hw.write(hw.config)
    old = set(hw.worker_pids())
    hw.signal(__import__("signal").SIGHUP)
    wait_for(lambda: not old & set(hw.worker_pids()))  # the old generation may still accept
    assert echo(hw.port, "/a/b/c")["server"] == "long"
    assert echo(hw.port, "/a/x")["server"] == "short"


def test_weighted_round_robin_proportions(make_backend: Any, make_hopwire: Any) -> None:
    heavy, light = make_backend("heavy"), make_backend("light")
    hw = make_hopwire(
        {
            "http": {
                "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
                "services": {
                    "s": {
                        "loadBalancer": {
                            "servers": [
                                {"url": heavy.url, "weight": 3},
                                {"url": light.url, "weight": 1},
                            ]
                        }
                    }
                },
            }
        }
    )
    counts = {"heavy": 0, "light": 0}
    for _ in range(400):
        counts[echo(hw.port)["server"]] += 1
    # each of the 2 workers is exact over every window of 4 picks: at most 3 off per worker
    assert abs(counts["heavy"] - 300) <= 6, counts
    assert counts["heavy"] + counts["light"] == 400


def test_p2c_uses_every_server(make_backend: Any, make_hopwire: Any) -> None:
    a, b = make_backend("a"), make_backend("b")
    hw = make_hopwire({"http": catch_all(a.url, b.url, strategy="p2c")})
    seen = {echo(hw.port)["server"] for _ in range(50)}
    assert seen == {"a", "b"}


def test_health_check_eviction_and_return(make_backend: Any, make_hopwire: Any) -> None:
    good, flaky = make_backend("good"), make_backend("flaky")
    hw = make_hopwire(
        {
            "http": {
                "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
                "services": {
                    "s": service(
                        good.url,
                        flaky.url,
                        healthCheck={"path": "/health", "interval": "200ms", "timeout": "1s"},
                    )
                },
            }
        }
    )
    assert {echo(hw.port)["server"] for _ in range(20)} == {"good", "flaky"}
    flaky.healthy = False
    time.sleep(1.0)  # several check intervals
    assert {echo(hw.port)["server"] for _ in range(40)} == {"good"}
    assert f"{flaky.url} is down" in hw.logs()
    flaky.healthy = True
    wait_for(lambda: "flaky" in {echo(hw.port)["server"] for _ in range(10)})
    good.healthy = False
    flaky.healthy = False
    time.sleep(1.0)
    assert request(hw.port, "GET", "/")[0] == 503  # every server down (RELIABILITY 20)


def test_keep_alive_reuse(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    for _ in range(100):  # a new client connection each time
        assert request(hw.port, "GET", "/")[0] == 200
    with socket.create_connection(("127.0.0.1", hw.port)) as sock:
        conn = h11.Connection(h11.CLIENT)
        for _ in range(100):  # one client connection
            assert exchange(sock, "GET", "/", conn=conn)[0] == 200
    # sequential requests: at most one backend connection per worker
    assert b.connections <= 2, b.connections
    assert len(b.requests) == 200


def worker_peak_rss_kib(hw: Any) -> int:
    peak = 0
    for pid in hw.worker_pids():
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    return peak


def test_large_bodies_stream_in_constant_memory(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(
        {"http": catch_all(b.url)},
        workers=1,
    )
    request(hw.port, "GET", "/")
    base = worker_peak_rss_kib(hw)
    size = 64 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    # upload with Content-Length, streamed from the client
    with socket.create_connection(("127.0.0.1", hw.port), timeout=30) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(block)):
            sock.sendall(block)
            digest.update(block)
        response = b""
        while b"sha256" not in response or not response.endswith(b"}"):
            response += sock.recv(65536)
    assert json.loads(response.split(b"\r\n\r\n", 1)[1]) == {
        "length": size,
        "sha256": digest.hexdigest(),
    }
    # chunked upload
    status, _, body = request(
        hw.port, "POST", "/upload", headers=[("transfer-encoding", "chunked")], body=block * 8
    )
    assert status == 200
    assert json.loads(body) == {
        "length": 8 * len(block),
        "sha256": hashlib.sha256(block * 8).hexdigest(),
    }
    # downloads: Content-Length and chunked, read slowly at first
    for target in (f"/bytes/{size}", f"/chunked/{size}"):
        with socket.create_connection(("127.0.0.1", hw.port)) as sock:
            sock.sendall(
                b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target.encode()
            )
            time.sleep(0.5)  # a slow reader: hopwire must pause the backend, not buffer
            conn = h11.Connection(h11.CLIENT)
            got = 0
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    conn.receive_data(sock.recv(1 << 20))
                elif isinstance(ev, h11.Data):
                    got += len(ev.data)
                elif isinstance(ev, h11.EndOfMessage):
                    break
            assert got == size
    growth_mib = (worker_peak_rss_kib(hw) - base) / 1024
    assert growth_mib < 24, f"worker peak RSS grew {growth_mib:.1f} MiB for 64 MiB bodies"


def test_websocket_tunnel(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    with socket.create_connection(("127.0.0.1", hw.port), timeout=5) as sock:
        sock.sendall(
            b"GET /raw/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: abc\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"upgrade: websocket" in head.lower()
        head, _, rest = head.partition(b"\r\n\r\n")
        for i in range(20):
            msg = b"frame-%d" % i * 100
            sock.sendall(msg)
            got = rest
            rest = b""
            while len(got) < len(msg):
                got += sock.recv(65536)
            assert got == msg
    method, target, headers, _ = b.requests[-1]
    names = {n.lower(): v for n, v in headers}
    assert names["upgrade"] == "websocket" and names["connection"].lower() == "upgrade"


def test_forwarded_headers(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    routes = {
        "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s"}},
        "services": {"s": service(b.url)},
    }
    spoof = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Real-Ip", "6.6.6.6"),
        ("X-Forwarded-Proto", "https"),
    ]
    untrusted = make_hopwire({"http": routes})
    hdrs = dict((n.lower(), v) for n, v in echo(untrusted.port, headers=spoof)["headers"])
    assert hdrs["x-forwarded-for"] == "127.0.0.1"
    assert hdrs["x-real-ip"] == "127.0.0.1"
    assert hdrs["x-forwarded-proto"] == "http"
    assert hdrs["x-forwarded-host"] == "example.test"
    trusted = make_hopwire(
        {
            "http": routes,
            "entryPoints": {
                "web": {"address": "", "forwardedHeaders": {"trustedIPs": ["127.0.0.1/32"]}}
            },
        },
        start=False,
    )
    trusted.config["entryPoints"]["web"]["address"] = f"127.0.0.1:{trusted.port}"
    trusted.write(trusted.config)
    trusted.start()
    hdrs = dict((n.lower(), v) for n, v in echo(trusted.port, headers=spoof)["headers"])
    assert hdrs["x-forwarded-for"] == "6.6.6.6, 127.0.0.1"
    assert hdrs["x-forwarded-proto"] == "https"


def test_hop_by_hop_removed_both_ways(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    sent = [
        ("Connection", "x-private, keep-alive"),
        ("X-Private", "secret"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Proxy-Connection", "keep-alive"),
        ("Trailer", "X-T"),
        ("Upgrade", "h2c"),
        ("X-Kept", "yes"),
    ]
    names = {n.lower() for n, _ in echo(hw.port, headers=sent)["headers"]}
    assert "x-kept" in names
    assert not names & {
        "x-private",
        "keep-alive",
        "te",
        "proxy-connection",
        "trailer",
        "upgrade",
        "connection",
    }
    status, headers, body = request(hw.port, "GET", "/hop")
    got = {n.lower() for n, _ in headers}
    assert status == 200 and body == b"hop"
    assert not got & {"x-secret", "keep-alive", "proxy-connection"}


def test_pass_host_header(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url, passHostHeader=False)})
    hdrs = dict((n.lower(), v) for n, v in echo(hw.port, host="front.test")["headers"])
    assert hdrs["host"] == f"127.0.0.1:{b.port}"
    assert hdrs["x-forwarded-host"] == "front.test"


def test_http10_client(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    # chunked from the backend becomes close-delimited for HTTP/1.0 (RELIABILITY 13)
    out = raw(hw.port, b"GET /chunked/40000 HTTP/1.0\r\nHost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower()
    assert body == b"y" * 40000
    # keep-alive requested with a Content-Length response: the connection stays open
    with socket.create_connection(("127.0.0.1", hw.port), timeout=3) as sock:
        for _ in range(2):
            sock.sendall(b"GET /bytes/5 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
            data = b""
            while not data.endswith(b"xxxxx"):
                data += sock.recv(4096)
            assert b"connection: keep-alive" in data.lower()


def test_pipelined_requests_answered_in_order(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    batch = b"".join(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in (1, 2, 3))
    batch += b"GET /bytes/4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(hw.port, batch)
    bodies = [part.split(b"\r\n\r\n", 1)[1][:4] for part in out.split(b"HTTP/1.1 200 OK")[1:]]
    assert [len(x.rstrip(b"H")) for x in bodies] == [1, 2, 3, 4]


def test_expect_100_continue(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    with socket.create_connection(("127.0.0.1", hw.port), timeout=5) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100"), interim  # the backend decided
        sock.sendall(b"hello")
        final = b""
        while b"sha256" not in final:
            final += sock.recv(4096)
        assert b"HTTP/1.1 200" in final and b'"length": 5' in final


def test_head_and_no_body_statuses(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    with socket.create_connection(("127.0.0.1", hw.port), timeout=5) as sock:
        conn = h11.Connection(h11.CLIENT)
        for _ in range(3):
            status, headers, body = exchange(sock, "HEAD", "/bytes/100", conn=conn)
            assert status == 200 and body == b"" and header(headers, "content-length") == "100"
        assert exchange(sock, "GET", "/status/204", conn=conn)[0] == 204
        assert exchange(sock, "GET", "/status/304", conn=conn)[0] == 304
        assert exchange(sock, "GET", "/bytes/3", conn=conn)[2] == b"xxx"
    assert b.connections <= 2


def test_concurrent_clients(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    failures: list[str] = []

    def client() -> None:
        try:
            with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as sock:
                conn = h11.Connection(h11.CLIENT)
                for i in range(50):
                    status, _, body = exchange(sock, "GET", f"/bytes/{i * 97}", conn=conn)
                    if status != 200 or len(body) != i * 97:
                        failures.append(f"{status} {len(body)}")
        except Exception as exc:
            failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert b.errors == []


def test_https_backend_with_root_ca_and_skip_verify(
    make_backend: Any, make_hopwire: Any, tmp_path: Any
) -> None:
    import ssl

    from tests.harness import make_ca

    ca, cert, key = make_ca(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    b = make_backend("tls", tls=ctx)
    assert b.url.startswith("https://")
    routers = {"r": {"rule": "PathPrefix(`/`)", "service": "s"}}
    # trusted through rootCAs
    hw = make_hopwire(
        {
            "http": {"routers": routers, "services": {"s": service(b.url)}},
            "serversTransport": {"rootCAs": [str(ca)]},
        }
    )
    assert echo(hw.port)["server"] == "tls"
    # not trusted: 502, unless insecureSkipVerify
    untrusted = make_hopwire({"http": {"routers": routers, "services": {"s": service(b.url)}}})
    assert request(untrusted.port, "GET", "/")[0] == 502
    skip = make_hopwire(
        {
            "http": {"routers": routers, "services": {"s": service(b.url)}},
            "serversTransport": {"insecureSkipVerify": True},
        }
    )
    assert echo(skip.port)["server"] == "tls"


def test_keep_alive_max_requests(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(
        {"http": catch_all(b.url)},
        start=False,
    )
    hw.config["entryPoints"]["web"]["transport"] = {"keepAliveMaxRequests": 3}
    hw.write(hw.config)
    hw.start()
    with socket.create_connection(("127.0.0.1", hw.port), timeout=5) as sock:
        conn = h11.Connection(h11.CLIENT)
        closes = []
        for _ in range(3):
            _, headers, _ = exchange(sock, "GET", "/", conn=conn)
            closes.append(header(headers, "connection"))
        assert closes == [None, None, "close"]
        assert sock.recv(1) == b""


def test_keep_alive_max_requests_counts_local_answers_and_errors(
    make_backend: Any, make_hopwire: Any
) -> None:
    """A 404 hopwire answers itself counts as a request on the connection, and the answer
    that reaches keepAliveMaxRequests closes it, as a proxied one does (Traefik does both)."""
    b = make_backend()
    hw = make_hopwire(
        {
            "http": {
                "routers": {"r": {"rule": "Host(`known.test`)", "service": "s"}},
                "services": {"s": service(b.url)},
            }
        },
        start=False,
    )
    hw.config["entryPoints"]["web"]["transport"] = {"keepAliveMaxRequests": 3}
    hw.write(hw.config)
    hw.start()
    for hosts in (
        ["nowhere.test", "known.test", "nowhere.test"],  # the last answer is an error
        ["nowhere.test", "nowhere.test", "nowhere.test"],  # errors only
    ):
        with socket.create_connection(("127.0.0.1", hw.port), timeout=5) as sock:
            conn = h11.Connection(h11.CLIENT)
            seen = []
            for host in hosts:
                status, headers, _ = exchange(sock, "GET", "/", host=host, conn=conn)
                seen.append((status, header(headers, "connection")))
            assert [c for _, c in seen] == [None, None, "close"], seen
            assert seen[-1][0] == 404
            assert sock.recv(1) == b""


def test_tunnel_idle_timeout(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(
        {"http": catch_all(b.url)},
        start=False,
    )
    hw.config["entryPoints"]["web"]["transport"] = {"respondingTimeouts": {"idleTimeout": "1s"}}
    hw.write(hw.config)
    hw.start()
    sock, head = websocket(hw.port, timeout=10)
    with sock:
        assert head.startswith(b"HTTP/1.1 101")
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
        assert sock.recv(1) == b""  # closed after a second of silence in both directions


def test_thousands_of_connections_stay_bounded(make_backend: Any, make_hopwire: Any) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    b = make_backend()
    hw = make_hopwire(
        {"http": catch_all(b.url)},
        workers=1,
    )
    request(hw.port, "GET", "/")
    base = worker_peak_rss_kib(hw)
    socks = []
    try:
        for i in range(2000):
            s = socket.create_connection(("127.0.0.1", hw.port), timeout=10)
            # half of them idle, half with a partial request head
            if i % 2:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
        assert request(hw.port, "GET", "/bytes/10")[2] == b"x" * 10  # still serving
        growth_mib = (worker_peak_rss_kib(hw) - base) / 1024
        assert growth_mib < 64, f"{growth_mib:.1f} MiB for 2,000 connections"
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_pooled_connection_reads_again_after_a_slow_client(
    make_backend: Any, make_hopwire: Any
) -> None:
    b = make_backend()
    hw = make_hopwire(
        {"http": catch_all(b.url)},
        workers=1,
    )
    size = 8 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        slow.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        time.sleep(1.0)  # the whole response reaches hopwire while this client reads nothing
        got = 0
        while got < size:
            got += len(slow.recv(1 << 20))
    # the backend connection went back to the pool: the next request must use it normally
    for _ in range(3):
        assert request(hw.port, "GET", "/bytes/5", timeout=5)[2] == b"xxxxx"
    assert b.connections == 1
