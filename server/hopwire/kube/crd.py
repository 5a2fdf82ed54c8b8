"""``providers.kubernetesCRD``: Traefik's ``traefik.io/v1alpha1`` HTTP kinds as dynamic
configuration, named as Traefik names them (``<namespace>-<name>@kubernetescrd``; a route's
router ``<namespace>-<ingressroute>-<first 10 hex digits of sha256(match)>``, a Service's
balancer ``<namespace>-<service>-<port>``).

Each route, Middleware, TraefikService, ServersTransport, TLSOption, TLSStore and
IngressRoute TLS section is one ``Unit``: translated alone, checked alone by the provider,
rejected alone (the others are served), as Traefik skips the one route or middleware it
cannot build.  What hopwire does not do is rejected with the reason (sticky sessions,
mirroring, failover, highest-random-weight services, a service's own middlewares,
certificate resolvers, non-default TLS stores, the TCP and UDP kinds).

A route with more than one service, and a ``weighted`` TraefikService over Kubernetes
Services, are one balancer whose servers share their service's weight (``objects.flatten``):
the same share of requests per service as Traefik's weighted round robin over them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hopwire.kube.objects import Cluster, Invalid, flatten, meta, normalize, spec
from hopwire.kube.reflector import Key, Resource

PROVIDER = "kubernetescrd"
SUFFIX = "@" + PROVIDER
GROUP = "traefik.io"

RESOURCES = {
    "IngressRoute": Resource(GROUP, "v1alpha1", "ingressroutes", "IngressRoute"),
    "Middleware": Resource(GROUP, "v1alpha1", "middlewares", "Middleware"),
    "TraefikService": Resource(GROUP, "v1alpha1", "traefikservices", "TraefikService"),
    "ServersTransport": Resource(GROUP, "v1alpha1", "serverstransports", "ServersTransport"),
    "TLSOption": Resource(GROUP, "v1alpha1", "tlsoptions", "TLSOption"),
    "TLSStore": Resource(GROUP, "v1alpha1", "tlsstores", "TLSStore"),
}
# kinds of the group hopwire does not serve: listed once, so that their objects are logged
IGNORED = {
    "IngressRouteTCP": Resource(GROUP, "v1alpha1", "ingressroutetcps", "IngressRouteTCP"),
    "IngressRouteUDP": Resource(GROUP, "v1alpha1", "ingressrouteudps", "IngressRouteUDP"),
    "MiddlewareTCP": Resource(GROUP, "v1alpha1", "middlewaretcps", "MiddlewareTCP"),
    "ServersTransportTCP": Resource(
        GROUP, "v1alpha1", "serverstransporttcps", "ServersTransportTCP"
    ),
}
DEFAULT_CLASS = "traefik"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"


@dataclass
class Options:
    allow_cross_namespace: bool = False
    allow_external_name: bool = False
    ingress_class: str = ""


@dataclass
class Unit:
    """One object's (or one route's) part of the dynamic configuration."""

    label: str  # "IngressRoute default/web route 0": what the log and the rejection name
    fragment: dict[str, Any] = field(default_factory=dict)  # {"http": {...}, "tls": {...}}

    def table(self, section: str, name: str) -> dict[str, Any]:
        return self.fragment.setdefault(section, {}).setdefault(name, {})

    def add_service(self, name: str, service: dict[str, Any]) -> None:
        self.table("http", "services")[name] = service


def reference(parent_ns: str, ns: str, name: str, opts: Options) -> str:
    """A reference to a Middleware, TLSOption or ServersTransport: ``<ns>-<name>`` of this
    provider, or a name of another provider as given (``@file`` names are hopwire's own)."""
    if "@" in name:
        if name.endswith(SUFFIX) and not opts.allow_cross_namespace:
            raise Invalid(
                f"{name}: @{PROVIDER} references are not allowed without allowCrossNamespace"
            )
        return name[: -len("@file")] if name.endswith("@file") else name
    ns = ns or parent_ns
    if ns != parent_ns and not opts.allow_cross_namespace:
        raise Invalid(f"{ns}/{name}: another namespace, and allowCrossNamespace is off")
    return normalize(f"{ns}-{name}") + SUFFIX


def translate(
    stores: Mapping[str, Mapping[Key, dict[str, Any]]], cluster: Cluster, opts: Options
) -> tuple[list[Unit], list[tuple[str, str]]]:
    """Every object's unit, in the order the provider checks them (what is referred to
    before what refers to it), and the objects that could not be translated, with why."""
    units: list[Unit] = []
    invalid: list[tuple[str, str]] = []

    def each(kind: str, build: Any) -> None:
        for (ns, name), obj in sorted((stores.get(kind) or {}).items()):
            try:
                units.extend(build(ns, name, obj))
            except Invalid as exc:
                invalid.append((f"{kind} {ns}/{name}", str(exc)))

    each("ServersTransport", lambda ns, name, obj: [servers_transport(ns, name, obj, cluster)])
    each("TLSOption", lambda ns, name, obj: [tls_option(ns, name, obj, cluster)])
    each("TLSStore", lambda ns, name, obj: [tls_store(ns, name, obj, cluster)])
    each("Middleware", lambda ns, name, obj: [middleware(ns, name, obj, cluster, opts)])
    each("TraefikService", lambda ns, name, obj: [traefik_service(ns, name, obj, cluster, opts)])
    for (ns, name), obj in sorted((stores.get("IngressRoute") or {}).items()):
        if not wanted(obj, opts.ingress_class):
            continue
        for index, route in enumerate(spec(obj).get("routes") or ()):
            label = f"IngressRoute {ns}/{name} route {index}"
            try:
                units.append(ingress_route(ns, name, obj, route, label, cluster, opts))
            except Invalid as exc:
                invalid.append((label, str(exc)))
        secret = (spec(obj).get("tls") or {}).get("secretName")
        if secret:
            label = f"IngressRoute {ns}/{name} tls"
            try:
                certificate = cluster.certificate(ns, str(secret))
                units.append(Unit(label, {"tls": {"certificates": [certificate]}}))
            except Invalid as exc:
                invalid.append((label, str(exc)))
    return units, invalid


def wanted(obj: Mapping[str, Any], ingress_class: str) -> bool:
    """Traefik's class filter: the object's class (``spec.ingressClassName``, else the
    annotation) is the provider's, or the provider has none and the object's is ``traefik``
    or unset."""
    given = spec(obj).get("ingressClassName")
    if given is None:
        given = (meta(obj).get("annotations") or {}).get(CLASS_ANNOTATION, "")
    return given == ingress_class or (not ingress_class and given == DEFAULT_CLASS)


# -- routes ----------------------------------------------------------------------------------


def router_name(ns: str, ingress: str, match: str) -> str:
    digest = hashlib.sha256(match.encode()).hexdigest()[:10]
    return normalize(f"{ns}-{ingress}-{digest}") + SUFFIX


def ingress_route(
    ns: str,
    name: str,
    obj: Mapping[str, Any],
    route: Mapping[str, Any],
    label: str,
    cluster: Cluster,
    opts: Options,
) -> Unit:
    s = spec(obj)
    kind = route.get("kind") or "Rule"
    if kind != "Rule":
        raise Invalid(f'unsupported match kind {kind}: only "Rule" is supported')
    match = str(route.get("match") or "")
    if not match:
        raise Invalid("empty match rule")
    if route.get("syntax") not in (None, "", "v3"):
        raise Invalid(f"rule syntax {route.get('syntax')}: only v3 is supported")
    unit = Unit(label)
    rname = router_name(ns, name, match)
    middlewares = [
        reference(ns, str(m.get("namespace") or ""), str(m.get("name") or ""), opts)
        for m in route.get("middlewares") or ()
    ]
    services = route.get("services") or ()
    if not services:
        raise Invalid("a route without services (hopwire routes every request to a service)")
    if len(services) == 1:
        sname = service_ref(ns, services[0], unit, cluster, opts)
    else:
        sname = rname
        unit.add_service(sname, weighted(ns, services, cluster, opts))
    router: dict[str, Any] = {"rule": match, "service": sname}
    if route.get("priority"):
        router["priority"] = route["priority"]
    if s.get("entryPoints"):
        router["entryPoints"] = list(s["entryPoints"])
    if middlewares:
        router["middlewares"] = middlewares
    observability = route.get("observability")
    if isinstance(observability, dict) and observability:
        router["observability"] = dict(observability)
    tls = s.get("tls")
    if isinstance(tls, dict):
        for key in ("certResolver", "domains"):
            if tls.get(key):
                raise Invalid(f"tls.{key}: ACME is not supported (give tls.secretName)")
        if tls.get("store") and (tls["store"] or {}).get("name") not in (None, "", "default"):
            raise Invalid("tls.store: only the default store exists")
        router_tls: dict[str, Any] = {}
        options = tls.get("options")
        if isinstance(options, dict) and options.get("name"):
            router_tls["options"] = tls_option_ref(
                ns, str(options.get("namespace") or ""), str(options["name"]), opts
            )
        router["tls"] = router_tls
    unit.table("http", "routers")[rname] = router
    return unit


def tls_option_ref(parent_ns: str, ns: str, name: str, opts: Options) -> str:
    if name == "default" and "@" not in name:
        return "default"
    if "@" in name:
        return reference(parent_ns, ns, name, opts)
    ns = ns or parent_ns
    if ns != parent_ns and not opts.allow_cross_namespace:
        raise Invalid(f"TLSOption {ns}/{name}: another namespace, and allowCrossNamespace is off")
    return f"{ns}-{name}{SUFFIX}"


def service_ref(
    parent_ns: str, ref: Mapping[str, Any], unit: Unit, cluster: Cluster, opts: Options
) -> str:
    """The name a route (or an errors middleware) uses for one service reference; a
    Kubernetes Service's balancer is added to ``unit``."""
    name = str(ref.get("name") or "")
    if not name:
        raise Invalid("a service without a name")
    kind = ref.get("kind") or "Service"
    if "@" in name:
        if name.endswith(SUFFIX) and not opts.allow_cross_namespace:
            raise Invalid(f"{name}: @{PROVIDER} references need allowCrossNamespace")
        return name[: -len("@file")] if name.endswith("@file") else name
    ns = str(ref.get("namespace") or parent_ns)
    if ns != parent_ns and not opts.allow_cross_namespace:
        raise Invalid(f"service {ns}/{name} is not in the namespace {parent_ns}")
    if kind == "TraefikService":
        return normalize(f"{ns}-{name}") + SUFFIX
    if kind != "Service":
        raise Invalid(f"unsupported service kind {kind}")
    port = ref.get("port")
    full = normalize(f"{ns}-{name}-{port}") + SUFFIX
    unit.add_service(
        full, balancer(ns, ref, cluster.servers_of(ns, ref, opts.allow_external_name), opts)
    )
    return full


def balancer(
    ns: str, ref: Mapping[str, Any], servers: list[dict[str, Any]], opts: Options
) -> dict[str, Any]:
    for key, why in (
        ("sticky", "sticky sessions are not supported"),
        ("middlewares", "a service's own middlewares are not supported"),
        ("nodePortLB", "nodePortLB is not supported"),
        ("passiveHealthCheck", "passive health checks are not supported"),
        ("responseForwarding", "responseForwarding is not supported (hopwire streams)"),
    ):
        if ref.get(key):
            raise Invalid(why)
    lb: dict[str, Any] = {"servers": servers}
    if ref.get("passHostHeader") is not None:
        lb["passHostHeader"] = bool(ref["passHostHeader"])
    strategy = ref.get("strategy")
    if strategy:
        if strategy == "RoundRobin":
            strategy = "wrr"
        lb["strategy"] = strategy
    transport = ref.get("serversTransport")
    if transport:
        lb["serversTransport"] = reference(ns, "", str(transport), opts)
    check = ref.get("healthCheck")
    if isinstance(check, dict) and check:
        lb["healthCheck"] = {k: v for k, v in check.items() if k in HEALTH_KEYS}
        unknown = sorted(set(check) - set(HEALTH_KEYS))
        if unknown:
            raise Invalid(f"healthCheck: {', '.join(unknown)} not supported")
    return {"loadBalancer": lb}


HEALTH_KEYS = ("path", "interval", "timeout", "status")


def weighted(
    ns: str, refs: Any, cluster: Cluster, opts: Options, what: str = "route"
) -> dict[str, Any]:
    """Several Kubernetes Services, weighted, as one balancer (see the module's note)."""
    children: list[tuple[int, list[str]]] = []
    first: Mapping[str, Any] | None = None
    for ref in refs:
        if (ref.get("kind") or "Service") != "Service" or "@" in str(ref.get("name") or ""):
            raise Invalid(f"a weighted {what} of other than Kubernetes Services is not supported")
        ref_ns = str(ref.get("namespace") or ns)
        if ref_ns != ns and not opts.allow_cross_namespace:
            raise Invalid(f"service {ref_ns}/{ref.get('name')} is not in the namespace {ns}")
        servers = [s["url"] for s in cluster.servers_of(ref_ns, ref, opts.allow_external_name)]
        weight = ref.get("weight")
        children.append((1 if weight is None else int(weight), servers))
        if first is None:
            first = ref
        else:
            for key in ("passHostHeader", "serversTransport", "strategy", "healthCheck"):
                if ref.get(key) != first.get(key):
                    raise Invalid(f"weighted services that differ in {key} are not supported")
    assert first is not None
    servers = flatten(children)
    if not servers:
        raise Invalid("no servers found: every weight is 0")
    return balancer(ns, first, servers, opts)


# -- the other kinds -------------------------------------------------------------------------


def traefik_service(
    ns: str, name: str, obj: Mapping[str, Any], cluster: Cluster, opts: Options
) -> Unit:
    s = spec(obj)
    unit = Unit(f"TraefikService {ns}/{name}")
    for kind in ("mirroring", "failover", "highestRandomWeight"):
        if s.get(kind):
            raise Invalid(f"{kind} services are not supported")
    w = s.get("weighted")
    if not isinstance(w, dict) or not w.get("services"):
        raise Invalid("a TraefikService needs weighted.services")
    if w.get("sticky"):
        raise Invalid("sticky sessions are not supported")
    unit.add_service(
        normalize(f"{ns}-{name}") + SUFFIX,
        weighted(ns, w["services"], cluster, opts, "TraefikService"),
    )
    return unit


def middleware(ns: str, name: str, obj: Mapping[str, Any], cluster: Cluster, opts: Options) -> Unit:
    """The spec is Traefik's dynamic middleware; what names Kubernetes objects is read."""
    unit = Unit(f"Middleware {ns}/{name}")
    mid = normalize(f"{ns}-{name}") + SUFFIX
    out: dict[str, Any] = {}
    for kind, value in spec(obj).items():
        if not isinstance(value, dict):
            out[kind] = value
            continue
        value = dict(value)
        if kind == "basicAuth":
            secret = value.pop("secret", "")
            if not secret:
                raise Invalid("basicAuth: the secret must be set")
            value["users"] = cluster.users(ns, str(secret))
        elif kind == "chain":
            value["middlewares"] = [
                reference(ns, str(m.get("namespace") or ""), str(m.get("name") or ""), opts)
                for m in value.get("middlewares") or ()
            ]
        elif kind == "errors":
            ref = value.get("service")
            if not isinstance(ref, dict):
                raise Invalid("errors: the service must be set")
            page_unit = Unit(unit.label)
            sname = service_ref(ns, ref, page_unit, cluster, opts)
            services = page_unit.fragment.get("http", {}).get("services", {})
            if services:  # a Kubernetes Service: its balancer named after the middleware
                own = normalize(f"{ns}-{name}-errorpage-service") + SUFFIX
                unit.add_service(own, services[sname])
                sname = own
            value["service"] = sname
        elif kind == "forwardAuth":
            tls = value.get("tls")
            if isinstance(tls, dict):
                tls = dict(tls)
                ca = tls.pop("caSecret", "")
                cert = tls.pop("certSecret", "")
                if ca:
                    tls["ca"] = cluster.ca(ns, str(ca))
                if cert:
                    files = cluster.certificate(ns, str(cert))
                    tls["cert"], tls["key"] = files["certFile"], files["keyFile"]
                value["tls"] = tls
        elif kind == "rateLimit":
            redis = value.get("redis")
            if isinstance(redis, dict) and redis.get("secret"):
                raise Invalid("rateLimit.redis.secret: give the credentials in the Middleware")
        out[kind] = value
    unit.table("http", "middlewares")[mid] = out
    return unit


def servers_transport(ns: str, name: str, obj: Mapping[str, Any], cluster: Cluster) -> Unit:
    s = dict(spec(obj))
    unit = Unit(f"ServersTransport {ns}/{name}")
    for key in ("peerCertURI", "spiffe"):
        if s.pop(key, None):
            raise Invalid(f"{key} is not supported")
    roots: list[str] = []
    for secret in s.pop("rootCAsSecrets", None) or ():
        roots.append(cluster.ca(ns, str(secret)))
    for root in s.pop("rootCAs", None) or ():
        if root.get("secret"):
            roots.append(cluster.ca(ns, str(root["secret"])))
        elif root.get("configMap"):
            raise Invalid("rootCAs.configMap is not supported: use a Secret")
    if roots:
        s["rootCAs"] = roots
    certs = [cluster.certificate(ns, str(n)) for n in s.pop("certificatesSecrets", None) or ()]
    if certs:
        s["certificates"] = certs
    unit.table("http", "serversTransports")[normalize(f"{ns}-{name}") + SUFFIX] = s
    return unit


def tls_option(ns: str, name: str, obj: Mapping[str, Any], cluster: Cluster) -> Unit:
    s = dict(spec(obj))
    unit = Unit(f"TLSOption {ns}/{name}")
    auth = s.get("clientAuth")
    if isinstance(auth, dict):
        auth = dict(auth)
        names = auth.pop("secretNames", None) or ()
        if names:
            auth["caFiles"] = [cluster.ca(ns, str(n)) for n in names]
        s["clientAuth"] = auth
    oid = "default" if name == "default" else f"{ns}-{name}{SUFFIX}"
    unit.table("tls", "options")[oid] = s
    return unit


def tls_store(ns: str, name: str, obj: Mapping[str, Any], cluster: Cluster) -> Unit:
    if name != "default":
        raise Invalid("only the TLSStore named default is supported")
    s = spec(obj)
    unit = Unit(f"TLSStore {ns}/{name}")
    if s.get("defaultGeneratedCert"):
        raise Invalid("defaultGeneratedCert: ACME is not supported")
    store: dict[str, Any] = {}
    default = s.get("defaultCertificate")
    if isinstance(default, dict) and default.get("secretName"):
        store["defaultCertificate"] = cluster.certificate(ns, str(default["secretName"]))
    unit.table("tls", "stores")["default"] = store
    certificates = [
        cluster.certificate(ns, str(c.get("secretName")))
        for c in s.get("certificates") or ()
        if c.get("secretName")
    ]
    if certificates:
        unit.fragment["tls"]["certificates"] = certificates
    return unit
