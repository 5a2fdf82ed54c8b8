"""The Kubernetes translations' pieces that must match Traefik's exactly: names (they are
the routers' and services' names in metrics, logs and references), weighted shares, the
class filters, the Ingress rules."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from hopwire.kube import crd, ingress
from hopwire.kube.objects import Cluster, Invalid, flatten, normalize, service_scheme


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("default-whoami-80", "default-whoami-80"),
        ("ns-web.app-8080", "ns-web-app-8080"),
        ("--a__b--", "a-b"),
        ("default-a.test/exact", "default-a-test-exact"),
    ],
)
def test_normalize_is_traefiks(given: str, expected: str) -> None:
    assert normalize(given) == expected


def test_router_names_are_traefiks() -> None:
    """``<ns>-<name>-<first 10 hex digits of sha256(match)>`` (Traefik's makeServiceKey)."""
    match = "Host(`a.test`) && PathPrefix(`/api`)"
    digest = hashlib.sha256(match.encode()).hexdigest()[:10]
    assert crd.router_name("default", "web", match) == f"default-web-{digest}@kubernetescrd"


@pytest.mark.parametrize(
    ("children", "expected"),
    [
        ([(3, ["a"]), (1, ["b"])], {"a": 3, "b": 1}),
        ([(1, ["a", "b"]), (1, ["c"])], {"a": 1, "b": 1, "c": 2}),
        ([(2, ["a", "b", "c"]), (1, ["d", "e"])], {"a": 4, "b": 4, "c": 4, "d": 3, "e": 3}),
        ([(0, ["a"]), (5, ["b"])], {"b": 1}),
        ([(1, []), (1, ["b"])], {"b": 1}),
    ],
)
def test_weights_keep_each_services_share(
    children: list[tuple[int, list[str]]], expected: dict[str, int]
) -> None:
    servers = {s["url"]: s["weight"] for s in flatten(children)}
    assert servers == expected
    total = sum(servers.values())
    live = [(w, urls) for w, urls in children if w and urls]
    for weight, urls in live:  # each service's share of the requests is its weight's
        share = sum(servers[u] for u in urls) / total
        assert share == pytest.approx(weight / sum(w for w, _ in live))


@pytest.mark.parametrize(
    ("given", "name", "port", "expected"),
    [
        ("", "http", 80, "http"),
        ("", "https-web", 8443, "https"),
        ("", "", 443, "https"),
        ("h2c", "", 80, "h2c"),
    ],
)
def test_schemes_are_traefiks(given: str, name: str, port: int, expected: str) -> None:
    assert service_scheme(given, name, port) == expected


def test_an_unknown_scheme_is_invalid() -> None:
    with pytest.raises(Invalid):
        service_scheme("ftp", "", 21)


def ep_slice(service: str, port: int, *endpoints: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{service}-x",
            "namespace": "ns",
            "labels": {"kubernetes.io/service-name": service},
        },
        "ports": [{"name": "http", "port": port}],
        "endpoints": list(endpoints),
    }


def test_servers_are_the_serving_endpoints() -> None:
    cluster = Cluster(services={("ns", "web"): {"spec": {"ports": [{"name": "http", "port": 80}]}}})
    cluster.index_slices(
        {
            ("ns", "web-x"): ep_slice(
                "web",
                8080,
                {"addresses": ["10.0.0.1"], "conditions": {"ready": True, "serving": True}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": False, "serving": False}},
                {"addresses": ["10.0.0.3"], "conditions": {"serving": True, "terminating": True}},
                {"addresses": ["10.0.0.1", "fd00::4"]},
            )
        }
    )
    assert cluster.servers("ns", "web", 80, "", False) == [
        "http://10.0.0.1:8080",
        "http://[fd00::4]:8080",
    ]
    assert cluster.servers("ns", "web", "http", "", False) == cluster.servers(
        "ns", "web", 80, "", False
    )
    with pytest.raises(Invalid, match="port not found"):
        cluster.servers("ns", "web", 81, "", False)
    with pytest.raises(Invalid, match="kubernetes service not found"):
        cluster.servers("ns", "api", 80, "", False)


@pytest.mark.parametrize(
    ("spec", "annotations", "provider", "served"),
    [
        ({}, {}, "", True),
        ({"ingressClassName": "traefik"}, {}, "", True),
        ({}, {"kubernetes.io/ingress.class": "traefik"}, "", True),
        ({"ingressClassName": "other"}, {}, "", False),
        ({"ingressClassName": "other"}, {}, "other", True),
        ({}, {}, "other", False),
    ],
)
def test_ingressroute_class_filter(
    spec: dict[str, Any], annotations: dict[str, str], provider: str, served: bool
) -> None:
    """Traefik's shouldProcessIngress for IngressRoutes: the object's class equals the
    provider's (both empty included), or the provider has none and the object's is
    ``traefik``."""
    obj = {"metadata": {"annotations": annotations}, "spec": spec}
    assert crd.wanted(obj, provider) is served


@pytest.mark.parametrize(
    ("path", "router", "expected"),
    [
        ({"path": "/a", "pathType": "Prefix"}, {}, 'Host("h") && PathPrefix("/a")'),
        ({"path": "/a", "pathType": "Exact"}, {}, 'Host("h") && Path("/a")'),
        (
            {"path": "/a", "pathType": "ImplementationSpecific"},
            {"pathmatcher": "PathRegexp"},
            'Host("h") && PathRegexp("/a")',
        ),
        (
            {"path": "/a", "pathType": "Prefix"},
            {"pathmatcher": "Path"},
            'Host("h") && PathPrefix("/a")',
        ),
    ],
)
def test_ingress_rules_are_traefiks(
    path: dict[str, Any], router: dict[str, Any], expected: str
) -> None:
    assert ingress.rule_of("h", path, router) == expected


def test_unknown_traefik_annotations_reject_the_ingress() -> None:
    obj = {
        "metadata": {"annotations": {"traefik.ingress.kubernetes.io/router.tls.certresolver": "le"}}
    }
    with pytest.raises(Invalid, match=r"router\.tls\.certresolver is not supported"):
        ingress.router_config(obj)


def checker(tmp_path: Any) -> Any:
    from hopwire import checks
    from hopwire.kube.provider import Checker

    path = tmp_path / "hopwire.yml"
    path.write_text("entryPoints: {web: {address: '127.0.0.1:18080'}}\n")
    return Checker(checks.load(str(path)), "@kubernetescrd")


def svc(url: str) -> dict[str, Any]:
    return {"loadBalancer": {"servers": [{"url": url}]}}


def unit(label: str, router: str, service: str, url: str, **router_extra: Any) -> Any:
    return crd.Unit(
        label,
        {
            "http": {
                "routers": {
                    router: {"rule": "PathPrefix(`/`)", "service": service, **router_extra}
                },
                "services": {service: svc(url)},
            }
        },
    )


def test_the_checker_rejects_each_bad_unit_alone(tmp_path: Any) -> None:
    check = checker(tmp_path)
    good = unit("good", "a@kubernetescrd", "s@kubernetescrd", "http://10.0.0.1:80")
    same = unit("same", "b@kubernetescrd", "s@kubernetescrd", "http://10.0.0.1:80")
    clash = unit("clash", "c@kubernetescrd", "s@kubernetescrd", "http://10.0.0.2:80")
    dangling = unit(
        "dangling",
        "d@kubernetescrd",
        "t@kubernetescrd",
        "http://10.0.0.3:80",
        middlewares=["nowhere@kubernetescrd"],
    )
    merged, rejected = check.accept([good, same, clash, dangling])
    assert set(merged["http"]["routers"]) == {"a@kubernetescrd", "b@kubernetescrd"}
    assert merged["http"]["services"]["s@kubernetescrd"] == svc("http://10.0.0.1:80")
    assert set(rejected) == {"clash", "dangling"}
    assert "defined differently elsewhere" in rejected["clash"]
    assert "nowhere@kubernetescrd" in rejected["dangling"]
    # all good: accepted together, in one check
    merged, rejected = check.accept([good, same])
    assert rejected == {} and len(merged["http"]["routers"]) == 2
