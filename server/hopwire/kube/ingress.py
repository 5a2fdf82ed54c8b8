"""``providers.kubernetesIngress``: ``networking.k8s.io/v1`` Ingresses as routers and
services, as Traefik's Ingress provider builds them.

A path is a router named ``<namespace>-<ingress>-<host><path>`` (normalized; the first 10
hex digits of sha256(rule) added when two paths of an Ingress give the same name) with the
rule ``Host("<host>") && PathPrefix("<path>")`` (``Path`` for pathType Exact), to the
balancer ``<namespace>-<service>-<port>`` of the Service's serving endpoints.  An Ingress
with no rules and a default backend is the lowest-priority ``default-router``.  Traefik's
``traefik.ingress.kubernetes.io/router.*`` annotations on the Ingress and ``service.*``
annotations on the Service apply; ``spec.tls`` secrets are certificates.

Which Ingresses: ``spec.ingressClassName`` naming an IngressClass whose controller is
``traefik.io/ingress-controller`` (and whose name is ``ingressClass``, when set), or,
without a class name, the ``kubernetes.io/ingress.class`` annotation equal to
``ingressClass`` (``traefik`` when that is unset).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from hopwire.kube.crd import Unit
from hopwire.kube.objects import Cluster, Invalid, meta, normalize, spec
from hopwire.kube.reflector import Key, Resource

PROVIDER = "kubernetes"
SUFFIX = "@" + PROVIDER
RESOURCES = {
    "Ingress": Resource("networking.k8s.io", "v1", "ingresses", "Ingress"),
    "IngressClass": Resource(
        "networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced=False
    ),
}
CONTROLLER = "traefik.io/ingress-controller"
DEFAULT_CLASS = "traefik"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
PREFIX = "traefik.ingress.kubernetes.io/"
LOWEST = 1  # the default backend's priority: below every other (Traefik: math.MinInt32)

ROUTER_KEYS = {
    "router.entrypoints",
    "router.middlewares",
    "router.priority",
    "router.pathmatcher",
    "router.rulesyntax",
    "router.tls",
    "router.tls.options",
    "router.observability.accesslogs",
    "router.observability.metrics",
    "router.observability.tracing",
    "router.observability.traceverbosity",
}
SERVICE_KEYS = {
    "service.passhostheader",
    "service.serversscheme",
    "service.serverstransport",
    "service.nativelb",
}


def traefik_annotations(obj: Mapping[str, Any], scope: str, allowed: set[str]) -> dict[str, str]:
    """Traefik's annotations of ``scope`` (router or service), keys lower-cased; one hopwire
    does not know is an error naming it."""
    out: dict[str, str] = {}
    for key, value in (meta(obj).get("annotations") or {}).items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :].lower()
        if not name.startswith(scope + "."):
            continue
        if name not in allowed:
            raise Invalid(f"annotation {key} is not supported")
        out[name] = str(value)
    return out


def _bool(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise Invalid(f"annotation {PREFIX}{key}: {value!r} is not true or false")
    return lowered == "true"


def classes(stores: Mapping[str, Mapping[Key, dict[str, Any]]], opts: Any) -> set[str] | None:
    """The IngressClasses that are Traefik's (None: the lookup is off)."""
    if opts.disableIngressClassLookup:
        return None
    names = set()
    for (_, name), obj in (stores.get("IngressClass") or {}).items():
        mine = not opts.ingressClass or name == opts.ingressClass
        if spec(obj).get("controller") == CONTROLLER and mine:
            names.add(name)
    return names


def wanted(obj: Mapping[str, Any], ours: set[str] | None, ingress_class: str) -> bool:
    given = spec(obj).get("ingressClassName")
    if given is not None:
        if ours is None:
            return bool(given == ingress_class or (not ingress_class and given == DEFAULT_CLASS))
        return given in ours
    annotation = (meta(obj).get("annotations") or {}).get(CLASS_ANNOTATION)
    return annotation == ingress_class or (not ingress_class and annotation == DEFAULT_CLASS)


def translate(
    stores: Mapping[str, Mapping[Key, dict[str, Any]]], cluster: Cluster, opts: Any
) -> tuple[list[Unit], list[tuple[str, str]]]:
    units: list[Unit] = []
    invalid: list[tuple[str, str]] = []
    ours = classes(stores, opts)
    default_taken = False
    for (ns, name), obj in sorted((stores.get("Ingress") or {}).items()):
        if not wanted(obj, ours, opts.ingressClass):
            continue
        label = f"Ingress {ns}/{name}"
        try:
            router = router_config(obj)
        except Invalid as exc:
            invalid.append((label, str(exc)))
            continue
        s = spec(obj)
        for index, tls in enumerate(s.get("tls") or ()):
            secret = tls.get("secretName")
            if secret:
                unit = Unit(f"{label} tls {index}")
                try:
                    unit.fragment["tls"] = {"certificates": [cluster.certificate(ns, secret)]}
                    units.append(unit)
                except Invalid as exc:
                    invalid.append((unit.label, str(exc)))
        rules = s.get("rules") or ()
        backend = s.get("defaultBackend")
        if not rules and isinstance(backend, dict):
            unit = Unit(f"{label} default backend")
            try:
                if default_taken:
                    raise Invalid("the default backend already exists")
                sname = "default-backend" + SUFFIX
                unit.add_service(sname, service(ns, backend, cluster, opts))
                unit.table("http", "routers")["default-router" + SUFFIX] = {
                    **router,
                    "rule": 'PathPrefix("/")',
                    "priority": LOWEST,
                    "service": sname,
                }
                units.append(unit)
                default_taken = True
            except Invalid as exc:
                invalid.append((unit.label, str(exc)))
        paths: dict[str, list[tuple[dict[str, Any], Unit]]] = {}  # router key -> its paths
        for rule in rules:
            host = str(rule.get("host") or "")
            for index, path in enumerate((rule.get("http") or {}).get("paths") or ()):
                p = str(path.get("path") or "")
                unit = Unit(f"{label} {host}{p or '/'} path {index}")
                try:
                    backend = path.get("backend") or {}
                    if backend.get("resource"):
                        raise Invalid("resource backends are not supported")
                    ref = backend.get("service")
                    if not isinstance(ref, dict):
                        raise Invalid("missing service definition")
                    port = ref.get("port") or {}
                    sname = normalize(f"{ns}-{ref.get('name')}-{port_string(port)}") + SUFFIX
                    unit.add_service(sname, service(ns, backend, cluster, opts))
                    rt = {**router, "service": sname, "rule": rule_of(host, path, router)}
                    rt.pop("pathmatcher", None)
                except Invalid as exc:
                    invalid.append((unit.label, str(exc)))
                    continue
                key = normalize(f"{ns}-{name}-{host}{p}").strip("-")
                paths.setdefault(key, []).append((rt, unit))
        for key, entries in paths.items():
            for rt, unit in entries:
                rname = key
                if len(entries) > 1:
                    rname = f"{key}-{hashlib.sha256(rt['rule'].encode()).hexdigest()[:10]}"
                unit.table("http", "routers")[rname + SUFFIX] = rt
                units.append(unit)
    return units, invalid


def port_string(port: Mapping[str, Any]) -> str:
    return str(port.get("name") or port.get("number") or 0)


def rule_of(host: str, path: Mapping[str, Any], router: Mapping[str, Any]) -> str:
    parts = []
    if host:
        parts.append(f'Host("{host}")')
    p = str(path.get("path") or "")
    if p:
        kind = path.get("pathType") or "ImplementationSpecific"
        matcher = "PathPrefix"
        if kind == "Exact":
            matcher = "Path"
        elif kind == "ImplementationSpecific" and router.get("pathmatcher"):
            matcher = str(router["pathmatcher"])
        parts.append(f'{matcher}("{p}")')
    if not parts:
        raise Invalid("a path with neither host nor path")
    return " && ".join(parts)


def router_config(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The router's settings from the Ingress's annotations (and its path matcher, taken
    out again by the caller)."""
    notes = traefik_annotations(obj, "router", ROUTER_KEYS)
    out: dict[str, Any] = {}
    obs: dict[str, Any] = {}
    for key, value in notes.items():
        if key == "router.entrypoints":
            out["entryPoints"] = [v.strip() for v in value.split(",") if v.strip()]
        elif key == "router.middlewares":
            out["middlewares"] = [middleware_ref(v.strip()) for v in value.split(",") if v.strip()]
        elif key == "router.priority":
            try:
                out["priority"] = int(value)
            except ValueError:
                raise Invalid(f"annotation {PREFIX}{key}: {value!r} is not a number") from None
        elif key == "router.pathmatcher":
            if value not in ("Path", "PathPrefix", "PathRegexp"):
                raise Invalid(
                    f"invalid router path matcher {value!r}: must be one of Path, PathPrefix, "
                    "PathRegexp"
                )
            out["pathmatcher"] = value
        elif key == "router.rulesyntax":
            if value not in ("v3", "default"):
                raise Invalid(f"rule syntax {value}: only v3 is supported")
        elif key == "router.tls":
            if _bool(key, value):
                out.setdefault("tls", {})
        elif key == "router.tls.options":
            out.setdefault("tls", {})["options"] = middleware_ref(value.strip())
        else:
            field = key.rsplit(".", 1)[1]
            name = {
                "accesslogs": "accessLogs",
                "metrics": "metrics",
                "tracing": "tracing",
                "traceverbosity": "traceVerbosity",
            }[field]
            obs[name] = value if field == "traceverbosity" else _bool(key, value)
    if obs:
        out["observability"] = obs
    return out


def middleware_ref(name: str) -> str:
    """Annotations name middlewares and TLS options with their provider, as Traefik's do;
    hopwire's own (file) names carry none."""
    if "@" not in name:
        raise Invalid(f"{name}: name the provider (for example {name}@kubernetescrd or @file)")
    return name[: -len("@file")] if name.endswith("@file") else name


def service(ns: str, backend: Mapping[str, Any], cluster: Cluster, opts: Any) -> dict[str, Any]:
    ref = backend.get("service") or {}
    name = str(ref.get("name") or "")
    svc = cluster.services.get((ns, name))
    if svc is None:
        raise Invalid(f"service {ns}/{name} not found")
    notes = traefik_annotations(svc, "service", SERVICE_KEYS)
    port = ref.get("port") or {}
    wanted_port: Any = port.get("name") or int(port.get("number") or 0)
    scheme = notes.get("service.serversscheme", "")
    lb: dict[str, Any] = {}
    if "service.passhostheader" in notes:
        lb["passHostHeader"] = _bool("service.passhostheader", notes["service.passhostheader"])
    if notes.get("service.serverstransport"):
        lb["serversTransport"] = middleware_ref(notes["service.serverstransport"])
    if "service.nativelb" in notes and _bool("service.nativelb", notes["service.nativelb"]):
        lb["servers"] = [{"url": cluster.native(ns, name, wanted_port, scheme)}]
    else:
        urls = cluster.servers(ns, name, wanted_port, scheme, opts.allowExternalNameServices)
        lb["servers"] = [{"url": u} for u in urls]
    return {"loadBalancer": lb}
