"""Middlewares end to end, each case run through hopwire and the real Traefik 3.7 with the
same dynamic configuration: the same answer, the same request at the backend, the same
response fields."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Traefik, free_port, header, request, service, wait_for


def _secrets() -> dict[str, str]:
    import bcrypt

    return {
        "b": bcrypt.hashpw(b"bpw", bcrypt.gensalt(rounds=5)).decode().replace("$2b$", "$2y$"),
        "s": "{SHA}" + base64.b64encode(hashlib.sha1(b"spw").digest()).decode(),
        "a": subprocess.run(
            ["openssl", "passwd", "-apr1", "apw"], capture_output=True, text=True, check=True
        ).stdout.strip(),
    }


SECRETS = _secrets()
USERS = [f"{user}:{secret}" for user, secret in SECRETS.items()]


def basic(user: str, password: str) -> tuple[str, str]:
    return ("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


MIDDLEWARES: dict[str, Any] = {
    "allow-local": {"ipAllowList": {"sourceRange": ["127.0.0.1/32", "10.0.0.0/8"]}},
    "allow-far": {"ipAllowList": {"sourceRange": ["10.0.0.0/8"], "rejectStatusCode": 404}},
    "allow-depth": {"ipAllowList": {"sourceRange": ["10.1.0.0/16"], "ipStrategy": {"depth": 2}}},
    "allow-excluded": {
        "ipAllowList": {
            "sourceRange": ["10.1.0.0/16"],
            "ipStrategy": {"excludedIPs": ["192.168.0.0/16"]},
        }
    },
    "cors": {
        "headers": {
            "accessControlAllowOriginList": ["https://a.example"],
            "accessControlAllowMethods": ["GET", "POST"],
            "accessControlAllowHeaders": ["X-Custom"],
            "accessControlMaxAge": 100,
            "accessControlExposeHeaders": ["X-Exposed"],
            "addVaryHeader": True,
        }
    },
    "cors-cred": {
        "headers": {
            "accessControlAllowCredentials": True,
            "accessControlAllowOriginList": ["*"],
            "accessControlAllowHeaders": ["*"],
            "accessControlAllowMethods": ["*"],
            "accessControlExposeHeaders": ["*"],
        }
    },
    "cors-regex": {
        "headers": {"accessControlAllowOriginListRegex": ["^https://[a-z]+\\.example\\.org$"]}
    },
    "host": {
        "headers": {
            "customRequestHeaders": {"Host": "backend.internal", "X-Forwarded-Proto": "https"}
        }
    },
    "auth": {"basicAuth": {"users": USERS}},
    "auth-opts": {
        "basicAuth": {
            "users": USERS,
            "realm": "hopwire tests",
            "headerField": "X-WebAuth-User",
            "removeHeader": True,
        }
    },
    "strip": {"stripPrefix": {"prefixes": ["/api", "/other"]}},
    "strip-slash": {"stripPrefix": {"prefixes": ["/api/"]}},
    "strip-re": {"stripPrefixRegex": {"regex": ["/a/[0-9]+", "/b/[a-z]+/"]}},
    "add": {"addPrefix": {"prefix": "/v1"}},
    "re-redirect": {
        "redirectRegex": {
            "regex": "^http://([^/:]+)(:\\d+)?/old/(.*)",
            "replacement": "https://${1}/new/$3",
            "permanent": True,
        }
    },
    "re-redirect-same": {"redirectRegex": {"regex": "^(.*)$", "replacement": "$1"}},
    "replace": {"replacePath": {"path": "/fixed"}},
    "regex": {"replacePathRegex": {"regex": "^/rr/(.*)", "replacement": "/new/$1"}},
    "named": {
        "replacePathRegex": {"regex": "^/n/(?P<first>[^/]+)/(.*)$", "replacement": "/${first}-x/$2"}
    },
    "https": {"redirectScheme": {"scheme": "https", "permanent": True}},
    "https-port": {"redirectScheme": {"scheme": "https", "port": "8443"}},
    "req-headers": {"headers": {"customRequestHeaders": {"X-Added": "yes", "User-Agent": ""}}},
    "resp-headers": {
        "headers": {
            "customResponseHeaders": {"X-Resp": "r", "X-Backend": ""},
            "frameDeny": True,
            "contentTypeNosniff": True,
            "browserXssFilter": True,
            "referrerPolicy": "no-referrer",
            "contentSecurityPolicy": "default-src 'self'",
            "stsSeconds": 300,
            "stsIncludeSubdomains": True,
        }
    },
    "force-sts": {"headers": {"stsSeconds": 60, "stsPreload": True, "forceSTSHeader": True}},
    "both": {"chain": {"middlewares": ["strip", "add"]}},
    "no-xff": {
        "headers": {"customRequestHeaders": {"X-Forwarded-For": "", "X-Real-Ip": "", "X-A": "1"}}
    },
}
ROUTERS = {
    "allow-local": ["allow-local"],
    "allow-far": ["allow-far"],
    "allow-depth": ["allow-depth"],
    "allow-excluded": ["allow-excluded"],
    "auth": ["auth"],
    "auth-opts": ["auth-opts"],
    "cors": ["cors"],
    "cors-cred": ["cors-cred"],
    "cors-regex": ["cors-regex"],
    "host": ["host"],
    "strip": ["strip"],
    "strip-slash": ["strip-slash"],
    "strip-re": ["strip-re"],
    "add": ["add"],
    "re-redirect": ["re-redirect"],
    "re-redirect-same": ["re-redirect-same"],
    "replace": ["replace"],
    "regex": ["regex"],
    "named": ["named"],
    "https": ["https"],
    "https-port": ["https-port"],
    "req-headers": ["req-headers"],
    "resp-headers": ["resp-headers"],
    "force-sts": ["force-sts"],
    "chain": ["both"],
    "order": ["add", "strip"],
    "no-xff": ["no-xff"],
}
XFF = ("X-Forwarded-For", "10.1.2.3, 192.168.1.1")
ORIGIN = ("Origin", "https://a.example")
CASES: list[tuple[Any, ...]] = [
    ("allow-local", "GET", "/a"),
    ("allow-far", "GET", "/a"),
    ("allow-depth", "GET", "/a", XFF),
    ("allow-depth", "GET", "/a", ("X-Forwarded-For", "192.168.1.1")),
    ("allow-depth", "GET", "/a"),
    ("allow-excluded", "GET", "/a", XFF),
    ("allow-excluded", "GET", "/a", ("X-Forwarded-For", "10.9.0.1, 192.168.1.1")),
    ("cors", "OPTIONS", "/c", ORIGIN, ("Access-Control-Request-Method", "POST")),
    (
        "cors",
        "OPTIONS",
        "/c",
        ("Origin", "https://b.example"),
        ("Access-Control-Request-Method", "GET"),
    ),
    ("cors", "OPTIONS", "/c", ORIGIN),
    ("cors", "GET", "/c", ORIGIN),
    ("cors", "GET", "/c", ("Origin", "https://b.example")),
    ("cors", "GET", "/c"),
    (
        "cors-cred",
        "OPTIONS",
        "/c",
        ORIGIN,
        ("Access-Control-Request-Method", "PATCH"),
        ("Access-Control-Request-Headers", "X-A, X-B"),
    ),
    ("cors-cred", "GET", "/c", ORIGIN),
    ("cors-cred", "GET", "/c"),
    ("cors-regex", "GET", "/c", ("Origin", "https://www.example.org")),
    ("cors-regex", "GET", "/c", ("Origin", "https://www.example.org.evil")),
    ("host", "GET", "/h"),
    ("auth", "GET", "/a"),
    ("auth", "GET", "/a", basic("b", "bpw")),
    ("auth", "GET", "/a", basic("s", "spw")),
    ("auth", "GET", "/a", basic("a", "apw")),
    ("auth", "GET", "/a", basic("b", "wrong")),
    ("auth", "GET", "/a", basic("nobody", "bpw")),
    ("auth", "GET", "/a", ("Authorization", "Bearer x")),
    ("auth-opts", "GET", "/a", basic("a", "apw")),
    ("auth-opts", "GET", "/a", basic("a", "nope")),
    ("strip", "GET", "/api/users?q=1"),
    ("strip", "GET", "/api"),
    ("strip", "GET", "/apiary/x"),
    ("strip", "GET", "/other/y"),
    ("strip", "GET", "/nothing"),
    ("strip", "GET", "/api/a%20b"),
    ("strip-slash", "GET", "/api/users"),
    ("strip-re", "GET", "/a/123/x"),
    ("strip-re", "GET", "/a/xyz/x"),
    ("strip-re", "GET", "/b/cd/e"),
    ("strip-re", "GET", "/z/a/1/x"),
    ("add", "GET", "/x?y=z"),
    ("re-redirect", "GET", "/old/p?q=1"),
    ("re-redirect", "POST", "/old/p"),
    ("re-redirect", "GET", "/other"),
    ("re-redirect-same", "GET", "/same"),
    ("replace", "GET", "/rp/anything?q=1"),
    ("regex", "GET", "/rr/a/b"),
    ("regex", "GET", "/not/rr"),
    ("named", "GET", "/n/one/two/three"),
    ("https", "GET", "/r?x=1"),
    ("https", "POST", "/r"),
    ("https-port", "GET", "/p"),
    ("https-port", "PUT", "/p"),
    ("req-headers", "GET", "/h"),
    ("resp-headers", "GET", "/h"),
    ("force-sts", "GET", "/h"),
    ("chain", "GET", "/api/c"),
    ("order", "GET", "/api/o"),
    ("no-xff", "GET", "/n"),
]
FORWARDED = (
    "x-forwarded-prefix",
    "x-replaced-path",
    "x-added",
    "user-agent",
    "authorization",
    "x-webauth-user",
    "x-forwarded-for",
    "host",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-a",
)
RESPONSE = (
    "location",
    "www-authenticate",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-max-age",
    "access-control-expose-headers",
    "vary",
    "x-resp",
    "x-backend",
    "x-frame-options",
    "x-content-type-options",
    "x-xss-protection",
    "referrer-policy",
    "content-security-policy",
    "strict-transport-security",
)


def dynamic(backend: Any) -> dict[str, Any]:
    return {
        "http": {
            "middlewares": copy.deepcopy(MIDDLEWARES),
            "routers": {
                name: {"rule": f"Host(`{name}.test`)", "service": "s", "middlewares": mws}
                for name, mws in ROUTERS.items()
            },
            "services": {"s": service(backend.url)},
        }
    }


def seen(backend: Any, before: int) -> dict[str, Any] | None:
    new = backend.requests[before:]
    if not new:
        return None
    method, target, headers, _ = new[-1]
    got = {n.lower(): v for n, v in headers}
    return {"method": method, "target": target, **{n: got.get(n) for n in FORWARDED}}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.harness import Backend, Hopwire

    backend = Backend("mw")
    backend.response_headers = [("X-Backend", "b")]  # removed by resp-headers
    tmp = tmp_path_factory.mktemp("mw")
    trust = {"forwardedHeaders": {"insecure": True}}  # the ipStrategy cases send X-Forwarded-For
    traefik = Traefik(tmp, dynamic(backend), trust)
    hw = Hopwire(
        tmp,
        {
            **dynamic(backend),
            "entryPoints": {"web": {"address": f"127.0.0.1:{free_port()}", **trust}},
        },
    )
    hw.start()

    def routed() -> bool:
        try:
            return request(traefik.port, "GET", "/", host="add.test", timeout=1.0)[0] == 200
        except OSError:
            return False

    try:
        wait_for(routed, timeout=30)
        yield hw, traefik, backend
    finally:
        traefik.stop()
        hw.stop()
        backend.close()


def web_port(hw: Any) -> int:
    return int(hw.config["entryPoints"]["web"]["address"].rsplit(":", 1)[1])


@pytest.mark.parametrize("case", CASES, ids=lambda c: " ".join(map(str, c[:3])))
def test_middleware_answers_as_traefik_does(pair: Any, case: tuple[Any, ...]) -> None:
    router, method, target, *extra = case
    hw, traefik, backend = pair
    results = []
    for port in (web_port(hw), traefik.port):
        before = len(backend.requests)
        status, headers, body = request(
            port, method, target, host=f"{router}.test", headers=[("User-Agent", "t/1"), *extra]
        )
        results.append(
            {
                "status": status,
                "body": body.decode() if status >= 300 else None,  # the proxy's own answers
                "backend": seen(backend, before),
                **{n: header(headers, n) for n in RESPONSE},
            }
        )
    assert results[0] == results[1], json.dumps(results, indent=1)


def test_an_unknown_middleware_stops_start_up(make_backend: Any, make_hopwire: Any) -> None:
    config = dynamic(make_backend())
    config["http"]["routers"]["strip"]["middlewares"] = ["strp"]
    config["http"]["middlewares"]["loop-a"] = {"chain": {"middlewares": ["loop-b"]}}
    config["http"]["middlewares"]["loop-b"] = {"chain": {"middlewares": ["loop-a"]}}
    hw = make_hopwire(config, start=False)
    hw.start(wait=False)
    assert hw.proc.wait(20) == 2
    logs = hw.logs()
    assert "http.routers.strip.middlewares[0]: 'strp' is not in http.middlewares" in logs
    assert "did you mean 'strip'" in logs


def test_two_types_and_a_bad_regex_stop_start_up(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    config = dynamic(make_backend())
    config["http"]["middlewares"]["strip"]["addPrefix"] = {"prefix": "/x"}
    config["http"]["middlewares"]["regex"]["replacePathRegex"]["regex"] = "^/rr/(["
    hw = make_hopwire(config, start=False)
    hw.start(wait=False)
    assert hw.proc.wait(20) == 2
    logs = hw.logs()
    assert "http.middlewares.strip: expected exactly one type" in logs
    assert "http.middlewares.regex.replacePathRegex.regex" in logs


def rate_limited(backend: Any, **limit: Any) -> dict[str, Any]:
    return {
        "http": {
            "middlewares": {"limit": {"rateLimit": limit}},
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s", "middlewares": ["limit"]}},
            "services": {"s": service(backend.url)},
        }
    }


def test_rate_limit_is_for_the_instance_across_workers(
    make_backend: Any, make_hopwire: Any
) -> None:
    """burst, then average per second, whatever worker each connection lands on: two workers
    with their own buckets would let twice as many through."""
    import os
    import threading
    import time

    b = make_backend()
    seconds = float(os.environ.get("TEST_RATE_SECONDS", "3"))
    hw = make_hopwire(rate_limited(b, average=20, burst=10), workers=2)
    port = web_port(hw)
    codes: list[int] = []
    stop = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < stop:
            codes.append(request(port, "GET", "/r")[0])  # a new connection each time

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    allowed = codes.count(200)
    expected = 10 + 20 * seconds
    assert set(codes) <= {200, 429}, set(codes)
    assert codes.count(429) > allowed  # the clients asked for far more
    assert 0.75 * expected <= allowed <= 1.3 * expected, (allowed, expected, len(codes))


def test_rate_limit_waits_for_a_token_then_refuses_as_traefik(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    import time

    b = make_backend()
    hw = make_hopwire(rate_limited(b, average=10, burst=1))
    port = web_port(hw)
    # one request every 70 ms: each waits ~30 ms for its token (below maxDelay, 50 ms)
    codes = []
    for _ in range(8):
        codes.append(request(port, "GET", "/w")[0])
        time.sleep(0.07)
    assert codes == [200] * 8
    slow = make_hopwire(rate_limited(b, average=1, period="10s", burst=1))
    traefik = Traefik(tmp_path, rate_limited(b, average=1, period="10s", burst=1))
    try:
        wait_for(lambda: _up(traefik.port), timeout=30)
        for port in (web_port(slow), traefik.port):
            request(port, "GET", "/first")  # takes the one token (Traefik's may be spent)
            status, headers, body = request(port, "GET", "/second")
            assert (status, body) == (429, b"Too Many Requests"), (port, status, body)
            assert header(headers, "retry-after") in ("9", "10")
            assert (header(headers, "x-retry-in") or "").endswith("s")
    finally:
        traefik.stop()


def _up(port: int) -> bool:
    try:
        return request(port, "GET", "/", timeout=1.0)[0] != 404  # routed (or limited)
    except OSError:
        return False


def test_middleware_answers_go_through_the_one_ending(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    """401, 403, 3xx, a CORS preflight: one access-log line with the router and no origin
    status, one count, one SERVER span and no CLIENT span; nothing reaches the backend."""
    from tests.otlp_receiver import GrpcReceiver, attrs

    rx = GrpcReceiver()
    try:
        b = make_backend()
        answers = {
            "auth": {"basicAuth": {"users": USERS}},
            "deny": {"ipAllowList": {"sourceRange": ["10.0.0.0/8"]}},
            "https": {"redirectScheme": {"scheme": "https"}},
            "cors": MIDDLEWARES["cors"],
        }
        config = {
            "http": {
                "middlewares": answers,
                "routers": {
                    n: {"rule": f"Host(`{n}.test`)", "service": "s", "middlewares": [n]}
                    for n in answers
                },
                "services": {"s": service(b.url)},
            },
            "accessLog": {"filePath": str(tmp_path / "a.log")},
            "metrics": {"prometheus": {"addRoutersLabels": True}},
            "tracing": {
                "otlp": {"grpc": {"endpoint": rx.endpoint, "insecure": True}},
                "batch": {"scheduleDelay": "100ms"},
            },
        }
        hw = make_hopwire(config)
        port = web_port(hw)
        want = {"auth": 401, "deny": 403, "https": 302, "cors": 200}
        for name, status in want.items():
            method, extra = (
                ("OPTIONS", [ORIGIN, ("Access-Control-Request-Method", "GET")])
                if name == "cors"
                else ("GET", [])
            )
            assert request(port, method, "/m", host=f"{name}.test", headers=extra)[0] == status
        assert not b.requests
        docs = wait_for(
            lambda: (
                len((tmp_path / "a.log").read_text().splitlines()) == 4
                and [json.loads(x) for x in (tmp_path / "a.log").read_text().splitlines()]
            )
        )
        assert {d["RouterName"]: d["DownstreamStatus"] for d in docs} == want
        assert all(d.get("OriginStatus") is None and d.get("ServiceURL") is None for d in docs)
        spans = rx.wait(4)
        assert [s.kind for s in spans] == [2, 2, 2, 2]  # SERVER only
        assert sorted(attrs(s)["http.response.status_code"] for s in spans) == sorted(want.values())
        text = wait_for(
            lambda: (
                (t := request(hw.internal, "GET", "/metrics")[2].decode())
                and 'router="deny"' in t
                and t
            )
        )
        for name, status in want.items():
            line = next(
                x
                for x in text.splitlines()
                if x.startswith("hopwire_router_requests_total") and f'router="{name}"' in x
            )
            assert f'code="{status}"' in line and line.endswith(" 1.0"), line
    finally:
        rx.close()


def test_in_flight_requests_are_limited_for_the_instance(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    """amount 2: of four slow requests at once on four connections (spread over two workers)
    two pass and two get 429, as from the real Traefik; the slots come back afterwards."""
    import threading

    b = make_backend()
    dynamic = {
        "http": {
            "middlewares": {"few": {"inFlightReq": {"amount": 2}}},
            "routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s", "middlewares": ["few"]}},
            "services": {"s": service(b.url)},
        }
    }
    hw = make_hopwire(copy.deepcopy(dynamic), workers=2)
    traefik = Traefik(tmp_path, copy.deepcopy(dynamic))
    try:
        wait_for(lambda: _up(traefik.port), timeout=30)
        outcomes = []
        for port in (web_port(hw), traefik.port):
            got: list[tuple[int, bytes]] = []

            def slow(port: int = port, got: list[tuple[int, bytes]] = got) -> None:
                status, _, body = request(port, "GET", "/slow/1.5")
                got.append((status, body if status != 200 else b""))

            threads = [threading.Thread(target=slow) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            outcomes.append(sorted(got))
            assert request(port, "GET", "/after")[0] == 200  # given back
        assert outcomes[0] == outcomes[1], outcomes
        assert [s for s, _ in outcomes[0]] == [200, 200, 429, 429]
    finally:
        traefik.stop()
