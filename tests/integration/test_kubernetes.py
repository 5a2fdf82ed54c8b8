"""The Kubernetes providers against a faithful fake API server (tests/kubeapi.py): objects
listed and watched, translated, checked one by one and served live."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import Backend, request, wait_for
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
