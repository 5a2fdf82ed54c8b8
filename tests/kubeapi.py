"""A Kubernetes API server for the tests: the part of it a provider uses, done as the real
one does it (no cluster can run here).

- LIST of a resource, cluster-wide or in one namespace, with ``labelSelector``
  (``k=v``, ``k!=v``, ``k``, ``!k``), ``limit`` and ``continue`` pages; the list's
  ``metadata.resourceVersion`` is the current version.
- WATCH (``watch=1``) from ``resourceVersion``: the events after it, then the new ones as
  they happen, as a chunked stream of JSON lines; ``BOOKMARK`` events every
  ``bookmark_every`` seconds when ``allowWatchBookmarks``; the stream ends after
  ``timeoutSeconds``.  A version older than the history kept (``compact``) is ``410 Gone``,
  as the answer; ``expire_watches`` sends ``ERROR`` 410 inside the open streams.
  ``sendInitialEvents=true`` (client-go's streaming list) sends every object as ADDED, then
  a bookmark marked ``k8s.io/initial-events-end``.
- One global resourceVersion, as etcd's revision; objects get uid, resourceVersion,
  generation and creationTimestamp.  The API's own kinds (Service, EndpointSlice, Secret,
  Ingress, IngressClass) are validated against its schema (kubernetes-validate, strict) as
  they are applied, and Traefik's kinds against their CRDs' shapes (tests/crd_shapes.py),
  so that the tests' objects have the shapes a cluster accepts.
- A bearer token, when set: anything else is ``401``.
- ``restart``: the server goes away (open watches cut) and comes back on the same port;
  with ``forget=True`` its history is gone too (a resumed watch gets 410).

Every request is recorded in ``requests`` as (method, path, query dict).
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate

from tests import crd_shapes

PLURALS = {
    "IngressRoute": ("traefik.io/v1alpha1", "ingressroutes"),
    "Middleware": ("traefik.io/v1alpha1", "middlewares"),
    "TraefikService": ("traefik.io/v1alpha1", "traefikservices"),
    "ServersTransport": ("traefik.io/v1alpha1", "serverstransports"),
    "TLSOption": ("traefik.io/v1alpha1", "tlsoptions"),
    "TLSStore": ("traefik.io/v1alpha1", "tlsstores"),
    "IngressRouteTCP": ("traefik.io/v1alpha1", "ingressroutetcps"),
    "IngressRouteUDP": ("traefik.io/v1alpha1", "ingressrouteudps"),
    "MiddlewareTCP": ("traefik.io/v1alpha1", "middlewaretcps"),
    "ServersTransportTCP": ("traefik.io/v1alpha1", "serverstransporttcps"),
    "Service": ("v1", "services"),
    "Secret": ("v1", "secrets"),
    "ConfigMap": ("v1", "configmaps"),
    "Node": ("v1", "nodes"),
    "Namespace": ("v1", "namespaces"),
    "Endpoints": ("v1", "endpoints"),
    "EndpointSlice": ("discovery.k8s.io/v1", "endpointslices"),
    "Ingress": ("networking.k8s.io/v1", "ingresses"),
    "IngressClass": ("networking.k8s.io/v1", "ingressclasses"),
}
CLUSTER_SCOPED = {"nodes", "namespaces", "ingressclasses"}
BY_PLURAL = {plural: (kind, api) for kind, (api, plural) in PLURALS.items()}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class FakeApiServer:
    def __init__(self, token: str = "", bookmark_every: float = 1.0, port: int = 0):
        self.token = token
        self.bookmark_every = bookmark_every
        self.lock = threading.Condition()
        self.version = 1000
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []  # rv, plural, type, obj
        self.compacted = self.version  # a watch from before this version is 410 Gone
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.expired = 0  # bumped by expire_watches: open streams send ERROR 410
        self.epoch = 0  # bumped by restart: open streams end
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.conns: set[socket.socket] = set()
        self.start()

    # -- the objects -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object (as kubectl apply): ADDED or MODIFIED."""
        obj = copy.deepcopy(obj)
        api, plural = PLURALS[obj["kind"]]
        obj.setdefault("apiVersion", api)
        meta = obj.setdefault("metadata", {})
        ns = "" if plural in CLUSTER_SCOPED else meta.setdefault("namespace", "default")
        if api.startswith("traefik.io/"):  # as the API server checks them against the CRDs
            crd_shapes.validate(obj)
        else:  # the API's own kinds
            kubernetes_validate.validate(obj, "1.31", strict=True)
        key = (ns, meta["name"])
        with self.lock:
            table = self.objects.setdefault(plural, {})
            old = table.get(key)
            self.version += 1
            meta["resourceVersion"] = str(self.version)
            meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
            meta["generation"] = (old["metadata"].get("generation", 1) + 1) if old else 1
            meta.setdefault("creationTimestamp", "2026-12-07T00:00:00Z")
            table[key] = obj
            self.history.append((self.version, plural, "MODIFIED" if old else "ADDED", obj))
            self.lock.notify_all()
        return obj

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        _, plural = PLURALS[kind]
        ns = "" if plural in CLUSTER_SCOPED else namespace
        with self.lock:
            obj = self.objects.get(plural, {}).pop((ns, name))
            self.version += 1
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self.version)
            self.history.append((self.version, plural, "DELETED", gone))
            self.lock.notify_all()

    def compact(self) -> None:
        """Forget the history: a watch resumed from an older version gets 410 Gone."""
        with self.lock:
            self.history.clear()
            self.compacted = self.version

    def expire_watches(self) -> None:
        """Compact, and end every open watch with an ERROR 410 event inside its stream."""
        with self.lock:
            self.history.clear()
            self.compacted = self.version
            self.expired += 1
            self.lock.notify_all()

    def count(self, path_part: str, **query: str) -> int:
        """How many requests went to a path containing ``path_part`` with ``query``."""
        return sum(
            1
            for _, path, q in list(self.requests)
            if path_part in path and all(q.get(k) == v for k, v in query.items())
        )

    # -- the server --------------------------------------------------------------------------

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                fake.conns.add(self.connection)

            def finish(self) -> None:
                fake.conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def do_GET(self) -> None:
                fake.handle(self)

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # every watch of two proxies' providers connects at once

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that went away (hopwire stopping, a watch cut)

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        with self.lock:
            self.epoch += 1
            self.lock.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for conn in list(self.conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restart(self, down_for: float = 0.5, forget: bool = False) -> None:
        self.stop()
        time.sleep(down_for)
        if forget:
            self.compact()
        self.start()

    def send_json(self, h: BaseHTTPRequestHandler, code: int, value: Any) -> None:
        body = json.dumps(value).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.requests.append(("GET", parts.path, query))
        if self.token and h.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_json(h, 401, status(401, "Unauthorized", "Unauthorized"))
            return
        if parts.path == "/version":
            self.send_json(
                h, 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux"}
            )
            return
        segments = [s for s in parts.path.split("/") if s]
        # /api/v1[/namespaces/NS]/PLURAL or /apis/GROUP/VERSION[/namespaces/NS]/PLURAL
        if segments[:1] == ["api"]:
            rest = segments[2:]
        elif segments[:1] == ["apis"]:
            rest = segments[3:]
        else:
            self.send_json(h, 404, status(404, "NotFound", "the server could not find it"))
            return
        namespace = ""
        if len(rest) == 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if len(rest) != 1 or rest[0] not in BY_PLURAL:
            self.send_json(h, 404, status(404, "NotFound", "the server could not find it"))
            return
        plural = rest[0]
        if query.get("watch") in ("1", "true"):
            self.watch(h, plural, namespace, query)
        else:
            self.list(h, plural, namespace, query)

    def selected(self, obj: dict[str, Any], namespace: str, selector: str) -> bool:
        meta = obj["metadata"]
        if namespace and meta.get("namespace") != namespace:
            return False
        return matches(meta.get("labels") or {}, selector)

    def list(
        self, h: BaseHTTPRequestHandler, plural: str, namespace: str, q: dict[str, str]
    ) -> None:
        kind, api = BY_PLURAL[plural]
        with self.lock:
            items = [
                copy.deepcopy(o)
                for _, o in sorted(self.objects.get(plural, {}).items())
                if self.selected(o, namespace, q.get("labelSelector", ""))
            ]
            version = self.version
        start = int(q.get("continue") or 0)
        limit = int(q.get("limit") or 0)
        page = items[start : start + limit] if limit else items[start:]
        meta: dict[str, Any] = {"resourceVersion": str(version)}
        if limit and start + limit < len(items):
            meta["continue"] = str(start + limit)
        self.send_json(
            h, 200, {"kind": f"{kind}List", "apiVersion": api, "metadata": meta, "items": page}
        )

    def watch(
        self, h: BaseHTTPRequestHandler, plural: str, namespace: str, q: dict[str, str]
    ) -> None:
        kind, api = BY_PLURAL[plural]
        selector = q.get("labelSelector", "")
        initial = q.get("sendInitialEvents") == "true"
        raw_version = q.get("resourceVersion") or ""
        with self.lock:
            since = int(raw_version) if raw_version.isdigit() else self.version
            if raw_version in ("", "0"):
                since = self.version
            gone = not initial and since < self.compacted
            epoch, expired = self.epoch, self.expired
            snapshot = (
                [copy.deepcopy(o) for _, o in sorted(self.objects.get(plural, {}).items())]
                if initial
                else []
            )
            if initial:
                since = self.version
        if gone:
            self.send_json(
                h,
                410,
                status(410, "Expired", f"too old resource version: {since} ({self.compacted})"),
            )
            return
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def send(event: dict[str, Any]) -> None:
            data = json.dumps(event).encode() + b"\n"
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        bookmarks = q.get("allowWatchBookmarks") == "true"
        ends = time.monotonic() + float(q.get("timeoutSeconds") or 1800)
        next_mark = time.monotonic() + self.bookmark_every
        try:
            for obj in snapshot:
                if self.selected(obj, namespace, selector):
                    send({"type": "ADDED", "object": obj})
            if initial:
                send(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": kind,
                            "apiVersion": api,
                            "metadata": {
                                "resourceVersion": str(since),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    }
                )
            while True:
                with self.lock:
                    if self.version <= since and self.epoch == epoch and self.expired == expired:
                        self.lock.wait(timeout=0.1)
                    # the events after ``since`` and the version they run to, read together:
                    # every event of this watch up to ``current`` is sent, so a bookmark may
                    # name it
                    pending = [
                        (t, o)
                        for rv, p, t, o in self.history
                        if rv > since and p == plural and self.selected(o, namespace, selector)
                    ]
                    stopped = self.epoch != epoch
                    newly_expired = self.expired != expired
                    current = self.version
                if stopped:
                    return
                for t, o in pending:
                    send({"type": t, "object": copy.deepcopy(o)})
                since = current
                if newly_expired:
                    send(
                        {
                            "type": "ERROR",
                            "object": status(410, "Expired", "too old resource version"),
                        }
                    )
                    break
                now = time.monotonic()
                if now >= ends:
                    break
                if bookmarks and now >= next_mark:
                    next_mark = now + self.bookmark_every
                    send(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": kind,
                                "apiVersion": api,
                                "metadata": {"resourceVersion": str(since)},
                            },
                        }
                    )
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except OSError:
            return
