"""What both Kubernetes providers read alike: names as Traefik makes them, a Service's port
and its EndpointSlices as servers, Secrets as certificates, CAs and users.

A translation that cannot be made raises ``Invalid`` with the reason: the provider rejects
the object it was translating (and logs and counts it), and the others are served.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hopwire.kube.reflector import Key


class Invalid(Exception):
    """This object cannot be translated: why."""


_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]+")


def normalize(name: str) -> str:
    """Traefik's ``provider.Normalize``: every run of other characters becomes one ``-``,
    and none at the ends."""
    return "-".join(part for part in _NOT_ALNUM.split(name) if part)


def spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    value = obj.get("spec")
    return value if isinstance(value, dict) else {}


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


@dataclass
class Cluster:
    """The objects the translations read, by (namespace, name); EndpointSlices by the
    Service they belong to (their ``kubernetes.io/service-name`` label)."""

    services: dict[Key, dict[str, Any]] = field(default_factory=dict)
    slices: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)
    secrets: dict[Key, dict[str, Any]] = field(default_factory=dict)
    files: str = ""  # where the certificates and keys of Secrets are written
    written: set[str] = field(default_factory=set)  # the files this snapshot uses

    def index_slices(self, slices: Mapping[Key, dict[str, Any]]) -> None:
        by_service: dict[Key, list[dict[str, Any]]] = {}
        for (ns, _), obj in sorted(slices.items()):
            owner = (meta(obj).get("labels") or {}).get("kubernetes.io/service-name")
            if owner:
                by_service.setdefault((ns, str(owner)), []).append(obj)
        self.slices = by_service

    # -- servers ---------------------------------------------------------------------------

    def servers(
        self,
        namespace: str,
        name: str,
        port: Any,
        scheme: str,
        allow_external: bool,
    ) -> list[str]:
        """The URLs of a Service's serving endpoints on ``port`` (its number or name), as
        Traefik builds them; an ExternalName Service is its one name."""
        service = self.services.get((namespace, name))
        if service is None:
            raise Invalid(f"kubernetes service not found: {namespace}/{name}")
        if port in (None, "", 0):
            raise Invalid(f"service {namespace}/{name}: port not defined")
        s = spec(service)
        svc_port = None
        for p in s.get("ports") or ():
            if (isinstance(port, int) and p.get("port") == port) or (
                isinstance(port, str) and p.get("name") == port
            ):
                svc_port = p
                break
        external = s.get("type") == "ExternalName"
        if svc_port is None:
            if not external or isinstance(port, str):
                raise Invalid(f"service {namespace}/{name}: port not found: {port}")
            svc_port = {"port": port}
        number = int(svc_port.get("port") or 0)
        port_name = str(svc_port.get("name") or "")
        protocol = service_scheme(scheme, port_name, number)
        if external:
            if not allow_external:
                raise Invalid(f"externalName services not allowed: {namespace}/{name}")
            return [f"{protocol}://{host_port(str(s.get('externalName') or ''), number)}"]
        urls: list[str] = []
        seen: set[str] = set()
        for es in self.slices.get((namespace, name), ()):
            target = 0
            for p in es.get("ports") or ():
                if (p.get("name") or "") == port_name:
                    target = int(p.get("port") or 0)
                    break
            if not target:
                continue
            for endpoint in es.get("endpoints") or ():
                conditions = endpoint.get("conditions") or {}
                if conditions.get("serving", conditions.get("ready", True)) is False:
                    continue  # unset means serving (the API's own default)
                if conditions.get("terminating") is True:
                    continue  # hopwire has no fenced servers: a terminating pod gets no new work
                for address in endpoint.get("addresses") or ():
                    if address not in seen:
                        seen.add(address)
                        urls.append(f"{protocol}://{host_port(str(address), target)}")
        if not urls:
            raise Invalid(f"no servers found for {namespace}/{name}")
        return urls

    def servers_of(
        self, ns: str, ref: Mapping[str, Any], allow_external: bool
    ) -> list[dict[str, Any]]:
        """A route's service reference (name, port, scheme, nativeLB) as servers."""
        name = str(ref.get("name") or "")
        if ref.get("healthCheck"):
            service = self.services.get((ns, name))
            if service is not None and spec(service).get("type") != "ExternalName":
                raise Invalid("healthCheck is allowed only for ExternalName services")
        if ref.get("nativeLB"):
            return [{"url": self.native(ns, name, ref.get("port"), str(ref.get("scheme") or ""))}]
        urls = self.servers(ns, name, ref.get("port"), str(ref.get("scheme") or ""), allow_external)
        return [{"url": url} for url in urls]

    def native(self, ns: str, name: str, port: Any, scheme: str) -> str:
        """nativeLB: the Service's cluster IP, which kube-proxy balances."""
        service = self.services.get((ns, name))
        if service is None:
            raise Invalid(f"kubernetes service not found: {ns}/{name}")
        s = spec(service)
        ip = s.get("clusterIP")
        if not ip or ip == "None":
            raise Invalid(f"service {ns}/{name} has no cluster IP")
        for p in s.get("ports") or ():
            if p.get("port") == port or p.get("name") == port:
                number = int(p.get("port") or 0)
                protocol = service_scheme(scheme, str(p.get("name") or ""), number)
                return f"{protocol}://{host_port(str(ip), number)}"
        raise Invalid(f"service {ns}/{name}: port not found: {port}")

    # -- secrets ---------------------------------------------------------------------------

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        secret = self.secrets.get((namespace, name))
        if secret is None:
            raise Invalid(f"secret {namespace}/{name} not found")
        out: dict[str, bytes] = {}
        for key, value in (secret.get("data") or {}).items():
            try:
                out[str(key)] = base64.b64decode(str(value), validate=True)
            except ValueError:
                raise Invalid(f"secret {namespace}/{name}: {key} is not base64") from None
        for key, value in (secret.get("stringData") or {}).items():
            out[str(key)] = str(value).encode()
        return out

    def secret_type(self, namespace: str, name: str) -> str:
        return str((self.secrets.get((namespace, name)) or {}).get("type") or "")

    def write(self, data: bytes, suffix: str) -> str:
        """A file of this content (named by its digest: a changed Secret is a new file,
        so that the configuration that names it changes too)."""
        digest = hashlib.sha256(data).hexdigest()[:24]
        path = os.path.join(self.files, f"{digest}{suffix}")
        if os.path.exists(path):
            os.utime(path)  # in use: kept (Provider.tidy)
        else:
            tmp = f"{path}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        self.written.add(path)
        return path

    def certificate(self, namespace: str, name: str) -> dict[str, str]:
        """A ``kubernetes.io/tls`` Secret as certFile and keyFile."""
        data = self.secret_data(namespace, name)
        cert, key = data.get("tls.crt"), data.get("tls.key")
        if not cert or not key:
            raise Invalid(f"secret {namespace}/{name} must have tls.crt and tls.key")
        return {"certFile": self.write(cert, ".crt"), "keyFile": self.write(key, ".key")}

    def ca(self, namespace: str, name: str) -> str:
        """A Secret's CA bundle (``tls.ca``, ``ca.crt`` or ``tls.crt``) as a file."""
        data = self.secret_data(namespace, name)
        for key in ("tls.ca", "ca.crt", "tls.crt"):
            if data.get(key):
                return self.write(data[key], ".crt")
        raise Invalid(f"secret {namespace}/{name} has no tls.ca, ca.crt or tls.crt")

    def users(self, namespace: str, name: str) -> list[str]:
        """basicAuth's users: a ``kubernetes.io/basic-auth`` Secret (username and password,
        hashed as Traefik does, {SHA}), or a Secret of one key holding htpasswd lines."""
        data = self.secret_data(namespace, name)
        if self.secret_type(namespace, name) == "kubernetes.io/basic-auth":
            user, password = data.get("username"), data.get("password")
            if user is None or password is None:
                raise Invalid(f"secret {namespace}/{name} must have username and password")
            digest = base64.b64encode(hashlib.sha1(password).digest()).decode()
            return [f"{user.decode()}:{{SHA}}{digest}"]
        if len(data) != 1:
            raise Invalid(f"secret {namespace}/{name}: {len(data)} keys, exactly one expected")
        lines = [ln for ln in next(iter(data.values())).decode().splitlines() if ln.strip()]
        if not lines:
            raise Invalid(f"secret {namespace}/{name} holds no credentials")
        return lines


def service_scheme(given: str, port_name: str, port: int) -> str:
    """Traefik's choice: the scheme given (http, https, h2c), else https for port 443 or a
    port whose name begins with https, else http."""
    if given in ("http", "https", "h2c"):
        return given
    if given:
        raise Invalid(f"invalid scheme {given!r} specified")
    return "https" if port == 443 or port_name.startswith("https") else "http"


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def flatten(children: list[tuple[int, list[str]]]) -> list[dict[str, Any]]:
    """Weighted services of servers as one balancer of servers: each child's weight shared
    among its servers, in integers (smooth weighted round robin gives each child its share
    of the requests, as Traefik's weighted service over them does)."""
    live = [(w, urls) for w, urls in children if w > 0 and urls]
    if not live:
        return []
    common = math.lcm(*(len(urls) for _, urls in live))
    servers: dict[str, int] = {}
    for weight, urls in live:
        for url in urls:
            servers[url] = servers.get(url, 0) + weight * common // len(urls)
    divisor = math.gcd(*servers.values())
    return [{"url": url, "weight": w // divisor} for url, w in servers.items()]
