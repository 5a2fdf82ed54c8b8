"""The Kubernetes providers against a faithful fake API server (tests/kubeapi.py): objects
listed and watched, translated, checked one by one and served live."""

from __future__ import annotations

import base64
import json
import signal
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.harness import Backend, Traefik, free_port, request, wait_for
from tests.kubeapi import FakeApiServer


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer(bookmark_every=0.5)
    yield server
    server.stop()


def k8s_service(
    name: str, *backends: Backend, ns: str = "default", port: int = 80
) -> list[dict[str, Any]]:
    """A Service with one named port and its EndpointSlice of ready endpoints (the backends:
    all on 127.0.0.1, so one slice per backend port)."""
    objs: list[dict[str, Any]] = [
        {
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": port}]},
        }
    ]
    for i, b in enumerate(backends):
        objs.append(
            {
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-{i}",
                    "namespace": ns,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": b.port, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["127.0.0.1"], "conditions": {"ready": True, "serving": True}}
                ],
            }
        )
    return objs


def route(name: str, match: str, service: str, ns: str = "default", **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "match": match,
        "kind": "Rule",
        "services": [{"name": service, "port": 80}],
    }
    r.update(extra)
    return {
        "kind": "IngressRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"entryPoints": ["web"], "routes": [r]},
    }


def crd_config(api: FakeApiServer, **options: Any) -> dict[str, Any]:
    return {"providers": {"kubernetesCRD": {"endpoint": api.url, **options}}}


def served_by(port: int, path: str, host: str = "a.test") -> str | None:
    status, headers, _ = request(port, "GET", path, host=host)
    if status != 200:
        return None
    return dict((k.lower(), v) for k, v in headers).get("x-server")


def test_an_ingressroute_is_served_and_follows_changes(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any
) -> None:
    one, two = make_backend("one"), make_backend("two")
    for obj in [*k8s_service("whoami", one), route("web", "PathPrefix(`/`)", "whoami")]:
        api.apply(obj)
    hw = make_hopwire(crd_config(api))
    assert served_by(hw.port, "/") == "one"
    # an endpoint change moves the traffic
    api.apply(k8s_service("whoami", two)[1])
    wait_for(lambda: served_by(hw.port, "/") == "two", timeout=5)


def basic_auth_secret(name: str, user: str, password: str, ns: str = "default") -> dict[str, Any]:
    return {
        "kind": "Secret",
        "type": "kubernetes.io/basic-auth",
        "metadata": {"name": name, "namespace": ns},
        "data": {
            "username": base64.b64encode(user.encode()).decode(),
            "password": base64.b64encode(password.encode()).decode(),
        },
    }


def middleware(name: str, spec: dict[str, Any], ns: str = "default") -> dict[str, Any]:
    return {"kind": "Middleware", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def metric(hw: Any, name: str) -> float:
    _, _, body = request(hw.internal, "GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_objects_added_modified_and_deleted_take_effect_live(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any
) -> None:
    one, two = make_backend("one"), make_backend("two")
    for obj in [*k8s_service("one", one), *k8s_service("two", two)]:
        api.apply(obj)
    api.apply(route("a", "Host(`a.test`)", "one"))
    hw = make_hopwire(crd_config(api))
    assert served_by(hw.port, "/", "a.test") == "one"
    assert request(hw.port, "GET", "/", host="b.test")[0] == 404
    api.apply(route("b", "Host(`b.test`)", "two"))  # added
    wait_for(lambda: served_by(hw.port, "/", "b.test") == "two", timeout=5)
    api.apply(route("b", "Host(`c.test`)", "two"))  # modified: its rule
    wait_for(lambda: served_by(hw.port, "/", "c.test") == "two", timeout=5)
    assert request(hw.port, "GET", "/", host="b.test")[0] == 404
    api.delete("IngressRoute", "b")  # deleted
    wait_for(lambda: request(hw.port, "GET", "/", host="c.test")[0] == 404, timeout=5)
    assert served_by(hw.port, "/", "a.test") == "one"
    logs = hw.logs()
    assert "default-b-" in logs or "configuration written" in logs


def test_middleware_objects_and_secrets(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any
) -> None:
    b = make_backend("one")
    for obj in [
        *k8s_service("whoami", b),
        basic_auth_secret("users", "ann", "s3cret"),
        middleware("strip", {"stripPrefix": {"prefixes": ["/api"]}}),
        middleware("auth", {"basicAuth": {"secret": "users"}}),
        middleware("both", {"chain": {"middlewares": [{"name": "auth"}, {"name": "strip"}]}}),
        route(
            "web",
            "PathPrefix(`/api`)",
            "whoami",
            middlewares=[{"name": "both"}],
        ),
    ]:
        api.apply(obj)
    hw = make_hopwire(crd_config(api))
    assert request(hw.port, "GET", "/api/x")[0] == 401
    creds = "Basic " + base64.b64encode(b"ann:s3cret").decode()
    status, _, _ = request(hw.port, "GET", "/api/x", headers=[("authorization", creds)])
    assert status == 200
    assert b.requests[-1][1] == "/x"  # the chain's stripPrefix
    # a changed Secret is a changed middleware
    api.apply(basic_auth_secret("users", "ann", "n3w"))
    wait_for(
        lambda: request(hw.port, "GET", "/api/x", headers=[("authorization", creds)])[0] == 401,
        timeout=5,
    )


def test_a_bad_object_is_rejected_alone(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any
) -> None:
    """A route to a Service that does not exist, a Middleware hopwire cannot build and a
    route using it are not served, logged and counted; the rest is served."""
    b = make_backend("one")
    for obj in [
        *k8s_service("whoami", b),
        route("good", "PathPrefix(`/good`)", "whoami"),
        route("lost", "PathPrefix(`/lost`)", "nowhere"),
        middleware("odd", {"digestAuth": {"users": ["a:b:c"]}}),
        route("odd", "PathPrefix(`/odd`)", "whoami", middlewares=[{"name": "odd"}]),
        route("bad-rule", "PathPrefix(`/bad`) &&", "whoami"),
    ]:
        api.apply(obj)
    hw = make_hopwire({**crd_config(api), "metrics": {"prometheus": {}}})
    assert served_by(hw.port, "/good") == "one"
    for path in ("/lost", "/odd", "/bad"):
        assert request(hw.port, "GET", path)[0] == 404
    logs = hw.logs()
    assert "IngressRoute default/lost route 0 rejected" in logs
    assert "kubernetes service not found: default/nowhere" in logs
    assert "Middleware default/odd rejected" in logs
    assert "IngressRoute default/bad-rule route 0 rejected" in logs
    wait_for(lambda: metric(hw, "hopwire_provider_rejected_objects_total") == 4, timeout=5)
    # the Service appears: the lost route is served, the count does not move
    api.apply(route("lost", "PathPrefix(`/lost`)", "whoami"))
    wait_for(lambda: served_by(hw.port, "/lost") == "one", timeout=5)
    assert metric(hw, "hopwire_provider_rejected_objects_total") == 4


def test_gone_and_an_api_server_restart_converge(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any
) -> None:
    one, two, three = make_backend("one"), make_backend("two"), make_backend("three")
    for obj in [*k8s_service("whoami", one), route("web", "PathPrefix(`/`)", "whoami")]:
        api.apply(obj)
    hw = make_hopwire(crd_config(api))
    assert served_by(hw.port, "/") == "one"
    lists = api.count("/endpointslices", limit="500")
    # 410 inside the open watches: every kind is listed again, and changes still arrive
    api.expire_watches()
    api.apply(k8s_service("whoami", two)[1])
    wait_for(lambda: served_by(hw.port, "/") == "two", timeout=5)
    assert api.count("/endpointslices", limit="500") > lists
    # the API server goes away, its history with it; a change made meanwhile arrives
    api.stop()
    api.compact()
    api.apply(k8s_service("whoami", three)[1])
    assert served_by(hw.port, "/") == "two"  # the last known state serves meanwhile
    time.sleep(1.0)
    api.start()
    wait_for(lambda: served_by(hw.port, "/") == "three", timeout=15)
    assert "listing again" in hw.logs()


def test_a_refused_token_stops_start_up(api: FakeApiServer, make_hopwire: Any) -> None:
    api.token = "right"
    hw = make_hopwire(crd_config(api, token="wrong"), start=False).start(wait=False)
    assert hw.proc.wait(20) == 2
    logs = hw.logs()
    assert "providers.kubernetesCRD: the API server at" in logs
    assert "401 Unauthorized" in logs
    hw2 = make_hopwire(crd_config(api, token="right"))
    assert hw2.ping() == 200


def test_no_endpoint_outside_a_cluster_is_a_config_error(make_hopwire: Any) -> None:
    hw = make_hopwire(
        {"providers": {"kubernetesCRD": {}}},
        start=False,
        env={"KUBERNETES_SERVICE_HOST": ""},
    ).start(wait=False)
    assert hw.proc.wait(20) == 2
    assert "providers.kubernetesCRD.endpoint: endpoint is not set" in hw.logs()


def test_namespaces_and_label_selector_restrict_what_is_served(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any
) -> None:
    b = make_backend("one")
    for ns in ("team-a", "team-b"):
        for obj in k8s_service("whoami", b, ns=ns):
            api.apply(obj)
    a = route("web", "Host(`a.test`)", "whoami", ns="team-a")
    a["metadata"]["labels"] = {"edge": "public"}
    api.apply(a)
    api.apply(route("web", "Host(`b.test`)", "whoami", ns="team-b"))
    unlabelled = route("other", "Host(`c.test`)", "whoami", ns="team-a")
    api.apply(unlabelled)
    hw = make_hopwire(crd_config(api, namespaces=["team-a"], labelSelector="edge=public"))
    assert served_by(hw.port, "/", "a.test") == "one"
    assert request(hw.port, "GET", "/", host="b.test")[0] == 404  # another namespace
    assert request(hw.port, "GET", "/", host="c.test")[0] == 404  # not selected
    assert all(
        "/namespaces/team-a/" in path for _, path, _ in api.requests if "ingressroutes" in path
    )


def test_the_same_objects_route_as_in_traefik(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any, tmp_path: Any
) -> None:
    """Traefik 3.7 reads the same fake API server: every request gets the same status from
    both, reaches the same backend with the same path, Host and added fields."""
    one, two = make_backend("one"), make_backend("two")
    other_ns = route("far", "Host(`far.test`)", "whoami", ns="elsewhere")
    other_ns["spec"]["routes"][0]["services"][0]["namespace"] = "default"
    classed = route("classed", "Host(`classed.test`)", "whoami")
    classed["spec"]["ingressClassName"] = "other"
    site = route("site", "Host(`a.test`)", "whoami")
    site["spec"]["routes"].append(
        {
            "match": "Host(`a.test`) && PathPrefix(`/api`)",
            "kind": "Rule",
            "middlewares": [{"name": "strip"}, {"name": "env"}],
            "services": [{"name": "api", "port": 80, "passHostHeader": False}],
        }
    )
    ext_route = route("ext", "Host(`ext.test`)", "ext")
    ext_route["spec"]["routes"][0]["services"][0]["port"] = one.port
    split = route("split", "Host(`split.test`)", "whoami")
    split["spec"]["routes"][0]["services"] = [
        {"name": "whoami", "port": 80, "weight": 3},
        {"name": "api", "port": 80, "weight": 1},
    ]
    for obj in [
        *k8s_service("whoami", one),
        *k8s_service("api", two),
        basic_auth_secret("users", "ann", "s3cret"),
        middleware("strip", {"stripPrefix": {"prefixes": ["/api"]}}),
        middleware("env", {"headers": {"customRequestHeaders": {"X-Env": "k8s"}}}),
        middleware("auth", {"basicAuth": {"secret": "users", "realm": "k8s"}}),
        {
            "kind": "TraefikService",
            "metadata": {"name": "pair", "namespace": "default"},
            "spec": {
                "weighted": {
                    "services": [{"name": "whoami", "port": 80}, {"name": "api", "port": 80}]
                }
            },
        },
        site,
        split,
        route("lost", "Host(`lost.test`)", "nowhere"),
        route("private", "Host(`private.test`)", "whoami", middlewares=[{"name": "auth"}]),
        middleware(
            "pages",
            {
                "errors": {
                    "status": ["500-599"],
                    "service": {"name": "api", "port": 80},
                    "query": "/{status}.html",
                }
            },
        ),
        route("err", "Host(`err.test`)", "whoami", middlewares=[{"name": "pages"}]),
        {
            "kind": "Service",
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {
                "type": "ExternalName",
                "externalName": "localhost",
                "ports": [{"name": "http", "port": one.port}],
            },
        },
        ext_route,
        other_ns,
        classed,
        {
            "kind": "IngressRoute",
            "metadata": {"name": "ts", "namespace": "default"},
            "spec": {
                "entryPoints": ["web"],
                "routes": [
                    {
                        "match": "Host(`ts.test`)",
                        "kind": "Rule",
                        "services": [{"name": "pair", "kind": "TraefikService"}],
                    }
                ],
            },
        },
    ]:
        api.apply(obj)
    options = {"endpoint": api.url, "allowExternalNameServices": True}
    hw = make_hopwire({"providers": {"kubernetesCRD": options}}, workers=1)
    traefik = Traefik(tmp_path, {}, static={"providers": {"kubernetesCRD": options}})
    try:
        creds = [("authorization", "Basic " + base64.b64encode(b"ann:s3cret").decode())]
        cases = [
            ("a.test", "/", []),
            ("a.test", "/api/users", []),
            ("lost.test", "/", []),
            ("private.test", "/", []),
            ("private.test", "/", creds),
            ("far.test", "/", []),
            ("classed.test", "/", []),
            ("nowhere.test", "/", []),
            ("err.test", "/status/503", []),
            ("ext.test", "/", []),
        ]
        seen = agree(hw.port, traefik.port, cases, (one, two))
        assert seen[("err.test", "/status/503", False)][1][-1][:2] == ("two", "/503.html")
        assert seen[("ext.test", "/", False)][1][0][0] == "one"
        assert seen[("a.test", "/", False)][1][0][0] == "one"
        assert seen[("a.test", "/api/users", False)][1][0][:2] == ("two", "/users")
        assert seen[("private.test", "/", False)][0] == 401
        assert seen[("lost.test", "/", False)][0] == 404
        for host in ("split.test", "ts.test"):
            shares = []
            for port in (hw.port, traefik.port):
                names = [served_by(port, "/", host) for _ in range(40)]
                shares.append((names.count("one"), names.count("two")))
            assert shares[0] == shares[1], (host, shares)
    finally:
        traefik.stop()


def _status(port: int, path: str, host: str) -> int:
    try:
        return request(port, "GET", path, host=host, timeout=1.0)[0]
    except OSError:
        return 0


def _fields(headers: list[tuple[Any, Any]]) -> dict[str, str]:
    """What the backend saw that both proxies must agree on."""
    keep = {"host", "x-env", "x-forwarded-host", "x-forwarded-prefix", "authorization"}
    out = {}
    for k, v in headers:
        name = (k.decode() if isinstance(k, bytes) else k).lower()
        if name in keep:
            out[name] = v.decode() if isinstance(v, bytes) else v
    return out


def ingress(
    name: str, rules: list[dict[str, Any]], ns: str = "default", **spec: Any
) -> dict[str, Any]:
    return {
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns, "annotations": spec.pop("annotations", {})},
        "spec": {"rules": rules, **spec},
    }


def http_rule(host: str, *paths: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "host": host,
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": kind,
                    "backend": {"service": {"name": service, "port": {"number": 80}}},
                }
                for path, kind, service in paths
            ]
        },
    }


def test_ingresses_route_as_in_traefik(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any, tmp_path: Any
) -> None:
    """Ingresses (with an IngressClass, Traefik's router annotations, a middleware of the
    CRD provider, path types, a default backend) through hopwire and Traefik 3.7."""
    one, two = make_backend("one"), make_backend("two")
    for obj in [
        *k8s_service("whoami", one),
        *k8s_service("api", two),
        {
            "kind": "IngressClass",
            "metadata": {"name": "traefik"},
            "spec": {"controller": "traefik.io/ingress-controller"},
        },
        {
            "kind": "IngressClass",
            "metadata": {"name": "nginx"},
            "spec": {"controller": "k8s.io/ingress-nginx"},
        },
        middleware("strip", {"stripPrefix": {"prefixes": ["/api"]}}),
        ingress(
            "site",
            [http_rule("a.test", ("/exact", "Exact", "whoami"), ("/api", "Prefix", "api"))],
            ingressClassName="traefik",
            annotations={
                "traefik.ingress.kubernetes.io/router.middlewares": "default-strip@kubernetescrd",
                "traefik.ingress.kubernetes.io/router.entrypoints": "web",
            },
        ),
        ingress(
            "theirs", [http_rule("b.test", ("/", "Prefix", "whoami"))], ingressClassName="nginx"
        ),
        ingress(
            "annotated",
            [http_rule("c.test", ("/", "Prefix", "whoami"))],
            annotations={"kubernetes.io/ingress.class": "traefik"},
        ),
        ingress(
            "fallback",
            [],
            ingressClassName="traefik",
            defaultBackend={"service": {"name": "api", "port": {"number": 80}}},
        ),
        ingress(
            "lost", [http_rule("d.test", ("/", "Prefix", "nowhere"))], ingressClassName="traefik"
        ),
    ]:
        api.apply(obj)
    providers = {"kubernetesCRD": {"endpoint": api.url}, "kubernetesIngress": {"endpoint": api.url}}
    hw = make_hopwire({"providers": providers}, workers=1)
    traefik = Traefik(tmp_path, {}, static={"providers": providers})
    try:
        cases = [
            ("a.test", "/exact", []),
            ("a.test", "/exact/more", []),
            ("a.test", "/api/v1", []),
            ("b.test", "/", []),
            ("c.test", "/x", []),
            ("d.test", "/", []),
            ("z.test", "/anything", []),
        ]
        seen = agree(hw.port, traefik.port, cases, (one, two))
        assert seen[("a.test", "/exact", False)][1][0][:2] == ("one", "/exact")
        assert (
            seen[("a.test", "/exact/more", False)][1][0][0] == "two"
        )  # Exact: the default backend
        assert seen[("a.test", "/api/v1", False)][1][0][:2] == ("two", "/v1")  # the CRD middleware
        assert seen[("b.test", "/", False)][1][0][0] == "two"  # another class: the default backend
        assert seen[("c.test", "/x", False)][1][0][0] == "one"  # the class annotation
        assert "Ingress default/lost" in hw.logs()
    finally:
        traefik.stop()


def observe(port: int, cases: list[Any], backends: tuple[Backend, ...]) -> list[Any]:
    """Per request: the status, the backend reached with the path and fields it saw, and a
    challenge if any."""
    seen = []
    for host, path, headers in cases:
        before = {b.name: len(b.requests) for b in backends}
        try:
            status, resp_headers, _ = request(port, "GET", path, headers=headers, host=host)
        except OSError:
            status, resp_headers = 0, []
        got = [
            (b.name, b.requests[-1][1], _fields(b.requests[-1][2]))
            for b in backends
            if len(b.requests) > before[b.name]
        ]
        challenge = dict((k.lower(), v) for k, v in resp_headers).get("www-authenticate")
        seen.append((host, path, status, got, challenge))
    return seen


def agree(
    hw: int, traefik: int, cases: list[Any], backends: tuple[Backend, ...]
) -> dict[tuple[str, str, bool], Any]:
    """Both proxies give the same answers once each has read the cluster (each provider
    converges on its own: a reference to another provider's object resolves when that
    one's configuration arrives, in Traefik as in hopwire)."""
    last: list[Any] = []

    def same() -> bool:
        last[:] = [observe(hw, cases, backends), observe(traefik, cases, backends)]
        return last[0] == last[1] and all(status for _, _, status, _, _ in last[0])

    try:
        wait_for(same, timeout=30, interval=0.5)
    except AssertionError:
        for a, b in zip(*last, strict=True):
            assert a == b, (a, b)
        raise
    return {
        (host, path, bool(h)): (status, got)
        for (host, path, status, got, _), (_, _, h) in zip(last[0], cases, strict=True)
    }


def tls_secret(name: str, leaf: Any, ns: str = "default") -> dict[str, Any]:
    return {
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": ns},
        "data": {
            "tls.crt": base64.b64encode(leaf.cert.read_bytes()).decode(),
            "tls.key": base64.b64encode(leaf.key.read_bytes()).decode(),
        },
    }


def test_certificates_and_tls_options_from_the_cluster(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any, tmp_path: Any
) -> None:
    """An IngressRoute's tls.secretName is served by SNI with its TLSOption; a renewed
    Secret is served to new handshakes (new workers: certificates are built before them)."""
    from tests.certs import Authority
    from tests.integration.test_tls import client_context, https

    ca = Authority(tmp_path)
    first, renewed = ca.leaf("a.test", file="first"), ca.leaf("a.test", file="renewed")
    b = make_backend("one")
    secure = route("secure", "Host(`a.test`)", "whoami")
    secure["spec"]["entryPoints"] = ["websecure"]
    secure["spec"]["tls"] = {"secretName": "a-cert", "options": {"name": "modern"}}
    for obj in [
        *k8s_service("whoami", b),
        tls_secret("a-cert", first),
        {
            "kind": "TLSOption",
            "metadata": {"name": "modern", "namespace": "default"},
            "spec": {"minVersion": "VersionTLS13"},
        },
        secure,
    ]:
        api.apply(obj)
    port = free_port()
    hw = make_hopwire(
        {**crd_config(api), "entryPoints": {"websecure": {"address": f"127.0.0.1:{port}"}}}
    )
    status, headers, _, serial = https(port, "a.test", client_context(ca))
    assert (status, serial) == (200, first.serial)
    assert dict(headers).get("x-server") == "one"
    with pytest.raises(ssl.SSLError):  # the TLSOption: TLS 1.3 only
        https(port, "a.test", client_context(ca, version=ssl.TLSVersion.TLSv1_2))
    api.apply(tls_secret("a-cert", renewed))
    wait_for(lambda: https(port, "a.test", client_context(ca))[3] == renewed.serial, timeout=20)
    assert "tls changed" in hw.logs()


def test_per_route_observability(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any, tmp_path: Any
) -> None:
    """A route's observability switches (here the access log) hold as in a file router."""
    b = make_backend("one")
    quiet = route("quiet", "PathPrefix(`/quiet`)", "whoami")
    quiet["spec"]["routes"][0]["observability"] = {"accessLogs": False}
    for obj in [*k8s_service("whoami", b), route("loud", "PathPrefix(`/loud`)", "whoami"), quiet]:
        api.apply(obj)
    log = tmp_path / "access.log"
    hw = make_hopwire({**crd_config(api), "accessLog": {"filePath": str(log), "format": "json"}})
    for path in ("/loud", "/quiet", "/loud"):
        assert request(hw.port, "GET", path)[0] == 200
    lines = wait_for(
        lambda: [ln for ln in log.read_text().splitlines() if ln] if log.exists() else []
    )
    time.sleep(0.5)
    paths = [json.loads(ln)["RequestPath"] for ln in log.read_text().splitlines() if ln]
    assert lines and paths == ["/loud", "/loud"]
    assert all(
        json.loads(ln)["RouterName"].endswith("@kubernetescrd")
        for ln in log.read_text().splitlines()
        if ln
    )


def test_providers_refer_to_each_other(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any, tmp_path: Any
) -> None:
    """A file router to a Kubernetes Service's balancer with a Kubernetes middleware, and an
    IngressRoute with a middleware of the file provider, by Traefik's @provider names."""
    b = make_backend("one")
    uses_file = route(
        "uses-file", "PathPrefix(`/k`)", "whoami", middlewares=[{"name": "shout@file"}]
    )
    for obj in [
        *k8s_service("whoami", b),
        middleware("strip", {"stripPrefix": {"prefixes": ["/f"]}}),
        uses_file,
    ]:
        api.apply(obj)
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(
        yaml.safe_dump(
            {
                "http": {
                    "routers": {
                        "from-file": {
                            "rule": "PathPrefix(`/f`)",
                            "service": "default-whoami-80@kubernetescrd",
                            "middlewares": ["default-strip@kubernetescrd"],
                        }
                    },
                    "middlewares": {
                        "shout": {"headers": {"customRequestHeaders": {"X-Shout": "yes"}}}
                    },
                }
            }
        )
    )
    hw = make_hopwire(
        {
            "providers": {
                "kubernetesCRD": {"endpoint": api.url},
                "file": {"filename": str(dynamic)},
            }
        }
    )
    assert served_by(hw.port, "/f/x") == "one"
    assert b.requests[-1][1] == "/x"
    assert served_by(hw.port, "/k") == "one"
    assert any(k.lower() in ("x-shout", b"x-shout") for k, _ in b.requests[-1][2])
    # the Kubernetes middleware is deleted: the file router waits for it, the rest serves
    api.delete("Middleware", "strip")
    wait_for(lambda: request(hw.port, "GET", "/f/x")[0] == 404, timeout=5)
    assert served_by(hw.port, "/k") == "one"
    assert "http.routers.from-file is not served until default-strip@kubernetescrd" in hw.logs()


def test_a_burst_of_changes_is_one_configuration(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any
) -> None:
    """throttleDuration: ten changes within a second are written as one configuration, the
    last one; the endpoints that change after it are served once the throttle has passed."""
    b = make_backend("one")
    tagged = route("web", "PathPrefix(`/`)", "whoami", middlewares=[{"name": "tag"}])
    for obj in [*k8s_service("whoami", b), tagged, middleware("tag", _tag(0))]:
        api.apply(obj)
    hw = make_hopwire(crd_config(api, throttleDuration="2s"))
    written = hw.logs().count("configuration written")
    for n in range(1, 11):
        api.apply(middleware("tag", _tag(n)))
        time.sleep(0.1)
    wait_for(lambda: request(hw.port, "GET", "/")[0] == 200 and _tag_seen(b) == "10", timeout=10)
    time.sleep(2.5)  # a second write would have come by now
    assert hw.logs().count("configuration written") == written + 1


def _tag(n: int) -> dict[str, Any]:
    return {"headers": {"customRequestHeaders": {"X-Tag": str(n)}}}


def _tag_seen(b: Backend) -> str | None:
    for k, v in b.requests[-1][2]:
        name = k.decode() if isinstance(k, bytes) else k
        if name.lower() == "x-tag":
            return v.decode() if isinstance(v, bytes) else v
    return None


def test_a_provider_added_and_removed_on_sighup(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any
) -> None:
    """SIGHUP with the provider in the static file starts it; without, stops it and its
    objects go with it."""
    b = make_backend("one")
    for obj in [*k8s_service("whoami", b), route("web", "Host(`k.test`)", "whoami")]:
        api.apply(obj)
    hw = make_hopwire({"http": {"routers": {}, "services": {}}})
    assert request(hw.port, "GET", "/", host="k.test")[0] == 404
    hw.write({**hw.config, **crd_config(api)})
    hw.signal(signal.SIGHUP)
    wait_for(lambda: served_by(hw.port, "/", "k.test") == "one", timeout=15)
    hw.write({k: v for k, v in hw.config.items() if k != "providers"})
    hw.signal(signal.SIGHUP)
    wait_for(lambda: request(hw.port, "GET", "/", host="k.test")[0] == 404, timeout=15)
    assert hw.proc.poll() is None


def test_bookmarks_spare_a_relist_after_a_restart(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any
) -> None:
    """While other kinds change, bookmarks move every watch's resourceVersion on; so when
    the API server comes back with only recent history, every watch resumes where it was
    and nothing is listed again (without bookmarks the quiet kinds' versions would be too
    old: 410, then a LIST)."""
    b = make_backend("one")
    for obj in [*k8s_service("whoami", b), route("web", "PathPrefix(`/`)", "whoami")]:
        api.apply(obj)
    hw = make_hopwire(crd_config(api))
    assert served_by(hw.port, "/") == "one"
    for n in range(5):  # the Service changes; the traefik.io kinds do not
        api.apply(
            {
                **k8s_service("whoami", b)[0],
                "metadata": {"name": "whoami", "namespace": "default", "labels": {"n": str(n)}},
            }
        )
    time.sleep(1.5)  # bookmarks every 0.5 s
    lists = len([r for r in api.requests if "watch" not in r[2]])
    api.stop()
    api.compact()  # the history before now is gone
    api.start()
    two = make_backend("two")
    api.apply(k8s_service("whoami", two)[1])
    wait_for(lambda: served_by(hw.port, "/") == "two", timeout=15)
    assert len([r for r in api.requests if "watch" not in r[2]]) == lists
    assert "listing again" not in hw.logs()


def test_cross_namespace_references_when_allowed(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any
) -> None:
    b = make_backend("one")
    for obj in k8s_service("whoami", b, ns="apps"):
        api.apply(obj)
    api.apply(middleware("strip", {"stripPrefix": {"prefixes": ["/x"]}}, ns="shared"))
    far = route(
        "far",
        "PathPrefix(`/x`)",
        "whoami",
        ns="edge",
        middlewares=[{"name": "strip", "namespace": "shared"}],
    )
    far["spec"]["routes"][0]["services"][0]["namespace"] = "apps"
    api.apply(far)
    hw = make_hopwire(crd_config(api, allowCrossNamespace=True))
    assert served_by(hw.port, "/x/y") == "one"
    assert b.requests[-1][1] == "/y"


def test_servers_transport_and_the_default_store_from_secrets(
    api: FakeApiServer, make_backend: Any, make_hopwire: Any, tmp_path: Any
) -> None:
    """A ServersTransport whose CA and client certificate are Secrets reaches a backend
    that requires both, by its serverName; the TLSStore ``default`` gives the certificate a
    handshake without a known name gets."""
    from tests.certs import Authority
    from tests.integration.test_tls import client_context, https

    ca = Authority(tmp_path)
    backend_cert = ca.leaf("backend.internal", file="backend")
    client = ca.leaf(file="to-backend", cn="hopwire", client=True)
    fallback = ca.leaf("fallback.test", file="fallback")
    b = make_backend("mtls", tls=ca.mtls_server(backend_cert))
    ca_secret = {
        "kind": "Secret",
        "metadata": {"name": "ca", "namespace": "default"},
        "data": {"ca.crt": base64.b64encode(ca.pem).decode()},
    }
    secure = route("secure", "Host(`a.test`)", "whoami")
    secure["spec"]["routes"][0]["services"][0].update(
        {"scheme": "https", "serversTransport": "mtls"}
    )
    secure["spec"]["entryPoints"] = ["web", "websecure"]
    secure["spec"]["tls"] = {}
    for obj in [
        *k8s_service("whoami", b),
        ca_secret,
        tls_secret("client", client),
        tls_secret("fallback", fallback),
        {
            "kind": "ServersTransport",
            "metadata": {"name": "mtls", "namespace": "default"},
            "spec": {
                "serverName": "backend.internal",
                "rootCAs": [{"secret": "ca"}],
                "certificatesSecrets": ["client"],
            },
        },
        {
            "kind": "TLSStore",
            "metadata": {"name": "default", "namespace": "default"},
            "spec": {"defaultCertificate": {"secretName": "fallback"}},
        },
        secure,
    ]:
        api.apply(obj)
    port = free_port()
    hw = make_hopwire(
        {**crd_config(api), "entryPoints": {"websecure": {"address": f"127.0.0.1:{port}"}}}
    )
    loose = client_context(ca)
    loose.check_hostname = False  # the store's certificate is not a.test's: its CA is checked
    status, headers, _, serial = https(port, "a.test", loose)
    assert status == 200 and dict(headers).get("x-server") == "mtls"
    assert serial == fallback.serial  # no certificate for a.test: the store's default
    assert "ServersTransport" not in hw.logs()  # nothing rejected
