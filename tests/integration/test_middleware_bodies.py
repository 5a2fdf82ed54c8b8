"""The middlewares that hold a body or call another server (buffering, compress, retry,
forwardAuth, errors, rateLimit.redis), end to end; where Traefik can run the same file, the
case runs through both and the answers are compared."""

from __future__ import annotations

import copy
import gzip
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import h11
import pytest

from tests.harness import (
    Backend,
    Hopwire,
    Traefik,
    free_port,
    header,
    request,
    service,
    wait_for,
)
from tests.integration.test_tls import metric
from tests.integration.test_tracing import tracing


class Failing(Backend):
    """Answers every request with 503 (a server a status retry moves away from)."""

    def respond(
        self, conn: socket.socket, h: h11.Connection, req: h11.Request, body: bytes
    ) -> None:
        headers = [("x-server", self.name), ("content-length", "4")]
        conn.sendall(h.send(h11.Response(status_code=503, headers=headers)))
        conn.sendall(h.send(h11.Data(data=b"down")))
        conn.sendall(h.send(h11.EndOfMessage()))


def decoded(headers: list[tuple[str, str]], body: bytes) -> bytes:
    encoding = header(headers, "content-encoding")
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        import brotli

        return bytes(brotli.decompress(body))
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return body


def middlewares(auth: Backend, dead: int) -> dict[str, Any]:
    return {
        "buf": {"buffering": {"maxRequestBodyBytes": 10, "maxResponseBodyBytes": 100}},
        "gz": {"compress": {}},
        "gz-small": {"compress": {"minResponseBodyBytes": 10, "encodings": ["zstd", "gzip"]}},
        "gz-json-out": {"compress": {"excludedContentTypes": ["application/json"]}},
        "gz-only-text": {"compress": {"includedContentTypes": ["text/plain"]}},
        "gz-default": {"compress": {"defaultEncoding": "gzip"}},
        "err": {"errors": {"status": ["500-599"], "service": "pages", "query": "/page/{status}"}},
        "err-rw": {
            "errors": {
                "status": ["404", "418"],
                "service": "pages",
                "query": "/p?s={status}&o={originalStatus}&u={url}",
                "statusRewrites": {"404": 410},
            }
        },
        "fa": {
            "forwardAuth": {
                "address": auth.url + "/check?x=1",
                "authResponseHeaders": ["X-Auth-User"],
                "addAuthCookiesToResponse": ["sid"],
            }
        },
        "fa-regex": {
            "forwardAuth": {
                "address": auth.url + "/check",
                "authResponseHeadersRegex": "^X-",
                "authRequestHeaders": ["Authorization"],
            }
        },
        "fa-deny": {"forwardAuth": {"address": auth.url + "/status/401"}},
        "fa-body": {"forwardAuth": {"address": auth.url + "/check", "forwardBody": True}},
        "fa-down": {"forwardAuth": {"address": f"http://127.0.0.1:{dead}/"}},
        "retry": {"retry": {"attempts": 3}},
        "retry-status": {"retry": {"attempts": 2, "status": ["503"]}},
        "retry-post": {
            "retry": {"attempts": 2, "status": ["500-599"], "retryNonIdempotentMethod": True}
        },
    }


CONTENT = {"gz-json-out": "application/json", "gz-only-text": "text/html"}
BODY_CASES: list[tuple[Any, ...]] = [
    ("buf", "POST", "/u", b"x" * 20),
    ("buf", "POST", "/upload", b"x" * 5),
    ("buf", "GET", "/bytes/200", b""),
    ("buf", "GET", "/bytes/50", b""),
    ("gz", "GET", "/bytes/2000", b"", ("Accept-Encoding", "gzip, br")),
    ("gz", "GET", "/bytes/2000", b"", ("Accept-Encoding", "zstd;q=0.5, br")),
    ("gz", "GET", "/bytes/2000", b"", ("Accept-Encoding", "zstd")),
    ("gz", "GET", "/bytes/2000", b"", ("Accept-Encoding", "gzip;q=0, identity")),
    ("gz", "GET", "/bytes/2000", b"", ("Accept-Encoding", "*")),
    ("gz", "GET", "/bytes/100", b"", ("Accept-Encoding", "gzip")),
    ("gz", "GET", "/chunked/40000", b"", ("Accept-Encoding", "gzip")),
    ("gz", "GET", "/chunked/500", b"", ("Accept-Encoding", "gzip")),
    ("gz", "GET", "/bytes/2000", b""),
    ("gz", "HEAD", "/bytes/2000", b"", ("Accept-Encoding", "gzip")),
    ("gz-small", "GET", "/bytes/100", b"", ("Accept-Encoding", "gzip, zstd")),
    ("gz-json-out", "GET", "/bytes/3000", b"", ("Accept-Encoding", "gzip")),
    ("gz-only-text", "GET", "/bytes/3000", b"", ("Accept-Encoding", "gzip")),
    ("gz-default", "GET", "/bytes/3000", b""),
    ("err", "GET", "/status/503", b""),
    ("err", "GET", "/status/404?q=1", b""),
    ("err-rw", "GET", "/status/404", b""),
    ("err-rw", "GET", "/status/418", b""),
    ("fa", "GET", "/x?y=1", b"", ("Authorization", "Bearer t"), ("X-Auth-User", "forged")),
    ("fa-regex", "GET", "/x", b"", ("Authorization", "Bearer t"), ("X-Other", "client")),
    ("fa-deny", "POST", "/x", b"abc"),
    ("fa-body", "POST", "/x", b"the body"),
    ("fa-down", "GET", "/x", b""),
    ("retry", "GET", "/r", b""),
    ("retry", "GET", "/r2", b""),
    ("retry-status", "GET", "/s", b""),
    ("retry-status", "GET", "/s2", b""),
    ("retry-status", "POST", "/s3", b"not retried"),
    ("retry-post", "POST", "/upload", b"sent twice"),
]
BACKEND_FIELDS = ("x-auth-user", "x-other", "authorization", "content-length", "cookie")
AUTH_FIELDS = (
    "authorization",
    "x-auth-user",
    "x-other",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-method",
    "x-forwarded-proto",
    "x-forwarded-uri",
    "content-length",
)
RESPONSE_FIELDS = ("content-encoding", "vary", "set-cookie", "x-auth-user", "x-other", "x-server")


def dynamic(b: Backend, pages: Backend, auth: Backend, bad: Backend, dead: int) -> dict[str, Any]:
    mws = middlewares(auth, dead)
    routers = {n: {"rule": f"Host(`{n}.test`)", "service": "s", "middlewares": [n]} for n in mws}
    for name in CONTENT:
        routers[name]["service"] = "typed"
    routers["retry"]["service"] = "with-dead"
    routers["retry-status"]["service"] = "with-bad"
    routers["retry-post"]["service"] = "with-bad"
    return {
        "http": {
            "middlewares": mws,
            "routers": routers,
            "services": {
                "s": service(b.url),
                "typed": service(pages.url),
                "pages": service(pages.url),
                "with-dead": service(f"http://127.0.0.1:{dead}", b.url),
                "with-bad": service(bad.url, b.url),
            },
        }
    }


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Any:
    b, pages, auth, bad = Backend("b"), Backend("pages"), Backend("auth"), Failing("bad")
    auth.response_headers = [("X-Auth-User", "alice"), ("Set-Cookie", "sid=1; Path=/")]
    auth.response_headers.append(("X-Other", "o"))
    pages.response_headers = [("Content-Type", "text/html")]
    dead = free_port()
    tmp = tmp_path_factory.mktemp("bodies")
    config = dynamic(b, pages, auth, bad, dead)
    traefik = Traefik(tmp, copy.deepcopy(config))
    hw = Hopwire(tmp, copy.deepcopy(config))
    hw.start()

    def routed() -> bool:
        try:
            return request(traefik.port, "GET", "/", host="gz.test", timeout=1.0)[0] == 200
        except OSError:
            return False

    try:
        wait_for(routed, timeout=30)
        yield hw, traefik, b, auth, pages, bad
    finally:
        traefik.stop()
        hw.stop()
        for server in (b, pages, auth, bad):
            server.close()


def fields_of(requests: list[Any], names: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for method, target, headers, body in requests:
        got = {n.lower(): v for n, v in headers}
        out.append(
            {
                "method": method,
                "target": target,
                "body": len(body),
                **{n: got.get(n) for n in names},
            }
        )
    return out


@pytest.mark.parametrize("case", BODY_CASES, ids=lambda c: " ".join(map(str, c[:3])))
def test_body_middleware_answers_as_traefik_does(both: Any, case: tuple[Any, ...]) -> None:
    router, method, target, body, *extra = case
    hw, traefik, b, auth, pages, bad = both
    results = []
    for port in (hw.port, traefik.port):
        seen = (len(b.requests), len(auth.requests), len(pages.requests))
        status, headers, got = request(
            port, method, target, host=f"{router}.test", headers=list(extra), body=body
        )
        plain = decoded(headers, got)
        server = header(headers, "x-server")
        page = (
            [json.loads(plain)["target"]] if router.startswith("err") and server == "pages" else []
        )
        if server is None:  # the proxy's own answer
            shown: Any = plain
        elif target.startswith(("/bytes/", "/chunked/")):
            shown = len(plain)
        else:  # the backend's echo of what it received: compared field by field below
            shown = None
        results.append(
            {
                "status": status,
                "body": shown,
                "page": page,
                "backend": fields_of(b.requests[seen[0] :], BACKEND_FIELDS),
                "auth": fields_of(auth.requests[seen[1] :], AUTH_FIELDS),
                "pages": [r[1] for r in pages.requests[seen[2] :]],
                **{n: header(headers, n) for n in RESPONSE_FIELDS},
            }
        )
    assert results[0] == results[1], json.dumps(results, indent=1, default=repr)


def test_compress_streams_a_slow_response(both: Any) -> None:
    """Four 64 KiB pieces 0.4 s apart arrive compressed as they come, not at the end."""
    hw = both[0]
    with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as sock:
        sock.sendall(
            b"GET /stream/4/0.4 HTTP/1.1\r\nHost: gz.test\r\nAccept-Encoding: gzip\r\n\r\n"
        )
        h = h11.Connection(h11.CLIENT)
        h.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        h.send(h11.EndOfMessage())
        import zlib

        inflate = zlib.decompressobj(31)
        arrivals: list[tuple[float, int]] = []
        response = None
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                h.receive_data(sock.recv(65536))
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                arrivals.append((time.monotonic(), len(inflate.decompress(event.data))))
            elif isinstance(event, h11.EndOfMessage):
                break
    assert response is not None and dict(response.headers)[b"content-encoding"] == b"gzip"
    assert sum(n for _, n in arrivals) + len(inflate.flush()) == 4 * 65536
    got = [t for t, n in arrivals if n]
    assert len(got) >= 3 and got[-1] - got[0] > 0.8  # spread over the backend's pieces


def test_a_buffered_chunked_request_reaches_the_backend_with_a_length(both: Any) -> None:
    hw, _, b = both[0], both[1], both[2]
    before = len(b.requests)
    with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: buf.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        )
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 200"), data
    _, _, headers, body = b.requests[before]
    fields = {n.lower(): v for n, v in headers}
    assert body == b"abcdefg" and fields["content-length"] == "7"
    assert "transfer-encoding" not in fields
    with socket.create_connection(("127.0.0.1", hw.port), timeout=10) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: buf.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"
        )
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 413"), data
    assert len(b.requests) == before + 1  # the refused one never reached it


def test_retries_are_counted_and_each_attempt_is_a_client_span(
    make_backend: Any,
    make_hopwire: Any,
    receiver: Any,
) -> None:
    b = make_backend()
    dead = free_port()
    config = {
        "http": {
            "middlewares": {"retry": {"retry": {"attempts": 4}}},
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s", "middlewares": ["retry"]}},
            "services": {"s": service(f"http://127.0.0.1:{dead}", b.url)},
        },
        "tracing": tracing(receiver),
    }
    hw = make_hopwire(config, workers=1)
    codes = [request(hw.port, "GET", f"/t{i}")[0] for i in range(4)]
    assert codes == [200] * 4
    # round robin over (dead, live): each request tries dead first, then live
    wait_for(lambda: metric(hw, "hopwire_service_retries_total", service="s") >= 4, timeout=10)
    assert metric(hw, "hopwire_service_retries_total", service="s") == 4
    assert sorted(r[1] for r in b.requests) == ["/t0", "/t1", "/t2", "/t3"]
    spans = receiver.wait(4 + 8)
    clients = [s for s in spans if s.kind == 3]  # SPAN_KIND_CLIENT
    assert len(clients) == 8
    failed = [s for s in clients if s.status.code == 2]
    assert len(failed) == 4
    # both attempts of one request are children of its SERVER span
    parents = {s.parent_span_id for s in failed}
    for parent in parents:
        assert len([s for s in clients if s.parent_span_id == parent]) == 2


def test_all_attempts_failing_answer_the_last_error(make_backend: Any, make_hopwire: Any) -> None:
    config = {
        "http": {
            "middlewares": {"retry": {"retry": {"attempts": 3, "initialInterval": "50ms"}}},
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s", "middlewares": ["retry"]}},
            "services": {"s": service(f"http://127.0.0.1:{free_port()}")},
        }
    }
    hw = make_hopwire(config, workers=1)
    assert request(hw.port, "GET", "/x")[0] == 502
    wait_for(lambda: metric(hw, "hopwire_service_retries_total", service="s") == 2, timeout=10)
    assert metric(hw, "hopwire_errors_total", kind="connect_failed") == 1


def test_forward_auth_and_error_page_servers_down_are_500_and_counted(
    make_backend: Any, make_hopwire: Any
) -> None:
    b = make_backend()
    dead = free_port()
    config = {
        "http": {
            "middlewares": {
                "fa": {"forwardAuth": {"address": f"http://127.0.0.1:{dead}/auth"}},
                "err": {"errors": {"status": ["404"], "service": "gone", "query": "/{status}"}},
            },
            "routers": {
                "a": {"rule": "Host(`a.test`)", "service": "s", "middlewares": ["fa"]},
                "e": {"rule": "Host(`e.test`)", "service": "s", "middlewares": ["err"]},
            },
            "services": {"s": service(b.url), "gone": service(f"http://127.0.0.1:{dead}")},
        }
    }
    hw = make_hopwire(config)
    assert request(hw.port, "GET", "/x", host="a.test")[0] == 500
    assert request(hw.port, "GET", "/status/404", host="e.test")[0] == 500
    assert request(hw.port, "GET", "/status/200", host="e.test")[0] == 200  # not in status
    assert len(b.requests) == 2  # the refused one never reached the backend

    def counted() -> bool:
        return (
            metric(hw, "hopwire_middleware_errors_total", middleware="fa") == 1
            and metric(hw, "hopwire_middleware_errors_total", middleware="err") == 1
        )

    wait_for(counted, timeout=10)


# -- rateLimit.redis ---------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is a test dependency (tests/install-deps.sh installs it)"
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    wait_for(up, timeout=10)
    yield proc, port
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


def redis_limited(backend: Any, port: int, **limit: Any) -> dict[str, Any]:
    return {
        "http": {
            "middlewares": {
                "limit": {"rateLimit": {**limit, "redis": {"endpoints": [f"127.0.0.1:{port}"]}}}
            },
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s", "middlewares": ["limit"]}},
            "services": {"s": service(backend.url)},
        }
    }


def test_redis_rate_limit_is_shared_by_two_instances(
    make_backend: Any, make_hopwire: Any, redis_server: Any
) -> None:
    """burst 10 + 20/s over 3 s, whichever of two instances (2 workers each) a request hits:
    about 70 in all; with a limit per instance it would be 140."""
    import threading

    proc, port = redis_server
    b = make_backend()
    one = make_hopwire(redis_limited(b, port, average=20, burst=10))
    two = make_hopwire(redis_limited(b, port, average=20, burst=10))
    codes: list[int] = []
    stop = time.monotonic() + 3.0

    def client(hw: Any) -> None:
        while time.monotonic() < stop:
            codes.append(request(hw.port, "GET", "/r")[0])

    threads = [threading.Thread(target=client, args=(hw,)) for hw in (one, two, one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    allowed = codes.count(200)
    assert set(codes) <= {200, 429}, set(codes)
    assert 0.75 * 70 <= allowed <= 1.3 * 70, (allowed, len(codes))
    refused = request(one.port, "GET", "/r")
    if refused[0] == 429:
        assert refused[2] == b"No bursty traffic allowed\n"
    # Redis gone: every request is refused with 500 (fail closed), counted
    proc.terminate()
    proc.wait(10)
    status, _, body = request(one.port, "GET", "/down")
    assert status == 500 and body == b"Could not insert/update bucket\n"
    assert not [r for r in b.requests if r[1] == "/down"]
    wait_for(
        lambda: metric(one, "hopwire_middleware_errors_total", reason="redis") >= 1, timeout=10
    )


def refused(make_hopwire: Any, backend: Any, mws: dict[str, Any]) -> str:
    config = {
        "http": {
            "middlewares": mws,
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s", "middlewares": list(mws)}},
            "services": {"s": service(backend.url)},
        }
    }
    hw = make_hopwire(config, start=False)
    hw.start(wait=False)
    assert hw.proc.wait(20) == 2
    return str(hw.logs())


def test_bad_body_middleware_options_stop_start_up(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    logs = refused(
        make_hopwire,
        b,
        {
            "e": {"errors": {"status": ["500-99"], "service": "s"}},
            "r": {"retry": {"attempts": 0}},
            "f": {"forwardAuth": {"address": "auth.local/check"}},
        },
    )
    for expected in (
        "http.middlewares.e.errors.status[0]",
        "http.middlewares.r.retry.attempts: 0 is not valid",
        "http.middlewares.f.forwardAuth.address",
    ):
        assert expected in logs, (expected, logs[-3000:])
    logs = refused(
        make_hopwire,
        b,
        {
            "c": {
                "compress": {
                    "excludedContentTypes": ["text/html"],
                    "includedContentTypes": ["text/plain"],
                    "defaultEncoding": "zstd",
                    "encodings": ["gzip"],
                }
            },
            "e": {"errors": {"status": ["500-599"], "service": "pagez"}},
            "l": {
                "rateLimit": {"average": 1, "redis": {"endpoints": ["127.0.0.1:1", "127.0.0.1:2"]}}
            },
        },
    )
    for expected in (
        "http.middlewares.c.compress: excludedContentTypes and includedContentTypes are "
        "mutually exclusive",
        "http.middlewares.c.compress.defaultEncoding: 'zstd' is not in encodings",
        "http.middlewares.e.errors.service: 'pagez' is not a service",
        "http.middlewares.l.rateLimit.redis.endpoints: one endpoint is supported",
    ):
        assert expected in logs, (expected, logs[-3000:])
