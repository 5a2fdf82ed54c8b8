"""The Kubernetes provider process: the API server's objects, kept current, written as one
dynamic configuration for the master.

One reflector per resource (and per namespace when ``namespaces`` is set).  Nothing is
written until every resource has been listed once (a half-known cluster would reject routes
whose Services are merely not read yet).  After a change the provider waits
``throttleDuration`` (at least one turn of the loop), so that a burst of changes is one new
configuration; then it translates every object, checks each one's part alone against the
running configuration and the parts accepted before it (``Checker``), and writes the
accepted parts as ``<provider>.json`` in the master's directory, replaced atomically and
only when it changed.  The master reads that file beside the file provider's (``live``).

A rejected object is logged (once per reason) and counted in
``hopwire_provider_rejected_objects_total{provider}``; a failed request to the API server
in ``hopwire_provider_api_errors_total{provider}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import uvloop

from hopwire import checks
from hopwire.config import Config, ConfigError
from hopwire.config.schema import HTTP, TLS
from hopwire.config.validate import build_struct
from hopwire.kube import crd, ingress
from hopwire.kube.api import Api, ApiError, credentials
from hopwire.kube.objects import Cluster
from hopwire.kube.reflector import Reflector, Resource
from hopwire.live import POLL, Watcher
from hopwire.telemetry import logs, metrics

log = logging.getLogger("hopwire.kubernetes")

SERVICES = Resource("", "v1", "services", "Service")
SLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
SECRETS = Resource("", "v1", "secrets", "Secret")

NAMES = {"kubernetesCRD": crd.PROVIDER, "kubernetesIngress": ingress.PROVIDER}
FILES_KEPT = 86400.0  # seconds a Secret's file outlives its last use
# as Traefik: Helm's release records are Secrets too, large and never a certificate
SELECTORS = {"Secret": "owner!=helm"}


def kinds(provider: str) -> dict[str, Resource]:
    """The resources a provider reads, by kind; the label selector applies to the first
    group (the provider's own objects), not to Services, EndpointSlices and Secrets."""
    own = crd.RESOURCES if provider == "kubernetesCRD" else ingress.RESOURCES
    return {**own, "Service": SERVICES, "EndpointSlice": SLICES, "Secret": SECRETS}


class Checker:
    """Each unit checked with the running configuration's static part, the other providers'
    objects, and the units accepted before it: what the master will check, one unit at a
    time, so that one bad object never stops the others."""

    def __init__(self, config: Config, suffix: str):
        def others(table: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in table.items() if not k.endswith(suffix)}

        http = config.http
        self.base = dataclasses.replace(
            config,
            http=HTTP(
                routers=others(http.routers),
                middlewares=others(http.middlewares),
                services=others(http.services),
                serversTransports=others(http.serversTransports),
            ),
            tls=dataclasses.replace(config.tls, options=others(config.tls.options)),
        )

    def accept(self, units: list[crd.Unit]) -> tuple[dict[str, Any], dict[str, str]]:
        """The accepted units merged (a dynamic file's content) and the rejected ones, by
        label, with why.  All of them are checked together first; when that fails, one by
        one: a unit that refers to one checked after it (a chain to a middleware later in
        the order) is tried again after each pass that accepted any."""
        whole = crd.Unit("all", {})
        if all(merge(whole.fragment, unit.fragment) for unit in units):
            _, errors = self.check(self.base, whole)
            if not errors:  # the usual case, checked once rather than once per object
                return whole.fragment, {}
        config = self.base
        merged: dict[str, Any] = {}
        rejected: dict[str, str] = {}
        waiting = list(units)
        while waiting:
            again: list[crd.Unit] = []
            for unit in waiting:
                candidate, errors = self.check(config, unit)
                if errors:
                    rejected[unit.label] = "; ".join(errors)
                    again.append(unit)
                    continue
                rejected.pop(unit.label, None)
                config = candidate
                merge(merged, unit.fragment)
            if len(again) == len(waiting):
                break
            waiting = again
        return merged, rejected

    def check(self, config: Config, unit: crd.Unit) -> tuple[Config, list[str]]:
        """``config`` with ``unit`` added, and what is wrong with it."""
        errors: list[str] = []
        http = build_struct(HTTP, unit.fragment.get("http") or {}, "http", errors)
        tls = build_struct(TLS, unit.fragment.get("tls") or {}, "tls", errors)
        tables = ("routers", "middlewares", "services", "serversTransports")
        for table in tables:
            have, new = getattr(config.http, table), getattr(http, table)
            for name in new:
                if name in have and have[name] != new[name]:
                    errors.append(f"http.{table}.{name}: defined differently elsewhere")
        for name in tls.options:
            if name in config.tls.options and config.tls.options[name] != tls.options[name]:
                errors.append(f"tls.options.{name}: defined differently elsewhere")
        if errors:
            return config, errors
        candidate = dataclasses.replace(
            config,
            http=HTTP(**{t: {**getattr(config.http, t), **getattr(http, t)} for t in tables}),
            tls=TLS(
                certificates=config.tls.certificates + tls.certificates,
                options={**config.tls.options, **tls.options},
                stores={**config.tls.stores, **tls.stores},
            ),
        )
        return candidate, checks.validate(candidate)


def merge(into: dict[str, Any], fragment: Mapping[str, Any]) -> bool:
    """Add a unit's fragment; False when it defines a name already there differently."""
    same = True
    for section, tables in fragment.items():
        target = into.setdefault(section, {})
        for table, items in tables.items():
            if isinstance(items, list):
                target.setdefault(table, []).extend(items)
                continue
            have = target.setdefault(table, {})
            for name, value in items.items():
                if name in have and have[name] != value:
                    same = False
                have[name] = value
    return same


class Provider:
    def __init__(
        self,
        config: Config,
        which: str,
        out_path: str,
        files: str,
        base: Callable[[], Config],
        watched: Watcher | None = None,
    ):
        self.watched = watched  # the files the base is read from
        self.config = config
        self.base = base  # the configuration without this provider's objects, read again
        self.base_config = config
        self.which = which
        self.name = NAMES[which]
        self.options = getattr(config.providers, which)
        self.out_path = out_path
        self.files = files
        self.api = Api(
            credentials(self.options.endpoint, self.options.token, self.options.certAuthFilePath)
        )
        self.dirty = asyncio.Event()
        self.reflectors: dict[str, list[Reflector]] = {}
        self.rejected: dict[str, str] = {}  # label -> why, as last logged
        self.written = b""
        namespaces = list(self.options.namespaces) or [""]
        selector = self.options.labelSelector
        own = crd.RESOURCES if which == "kubernetesCRD" else ingress.RESOURCES
        for kind, resource in kinds(which).items():
            spaces = namespaces if resource.namespaced else [""]
            self.reflectors[kind] = [
                Reflector(
                    self.api,
                    resource,
                    ns,
                    selector if kind in own else SELECTORS.get(kind, ""),
                    self.dirty.set,
                    self.api_failed,
                )
                for ns in spaces
            ]

    def api_failed(self, why: str) -> None:
        metrics.family("provider_api_errors").labels(self.name).inc()

    def store(self, kind: str) -> dict[Any, dict[str, Any]]:
        out: dict[Any, dict[str, Any]] = {}
        for reflector in self.reflectors.get(kind, ()):
            out.update(reflector.objects)
        return out

    async def run(self) -> int:
        """Until cancelled; 2 when the API server refuses the first reading (401, 403)."""
        tasks = [asyncio.create_task(r.run()) for group in self.reflectors.values() for r in group]
        waits = [r.synced.wait() for group in self.reflectors.values() for r in group]
        synced: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*waits))
        pending: list[asyncio.Future[Any]] = [synced, *tasks]
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            exc = task.exception() if task.done() else None
            if isinstance(exc, ApiError):
                log.error(
                    "providers.%s: the API server at %s refused to be read: %s (check the "
                    "token and the ClusterRole: get, list and watch are needed)",
                    self.which,
                    self.api.creds.endpoint,
                    exc,
                )
                for other in (synced, *tasks):
                    other.cancel()
                await asyncio.gather(synced, *tasks, return_exceptions=True)
                return 2
        log.info("%s: every resource listed; serving its objects", self.name)
        if self.which == "kubernetesCRD":
            tasks.append(asyncio.create_task(self.log_ignored()))
        if self.watched is not None:
            tasks.append(asyncio.create_task(self.watch_base()))
        throttle = self.options.throttleDuration
        while True:
            await self.dirty.wait()
            await asyncio.sleep(throttle)  # the changes of a burst, together
            self.dirty.clear()
            self.publish()
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]

    async def watch_base(self) -> None:
        """The configuration files and the other provider's snapshot: when they change, this
        provider's objects are checked again (one may refer to what arrived there)."""
        assert self.watched is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(POLL)
            if self.watched.poll(loop.time()):
                self.dirty.set()

    async def log_ignored(self) -> None:
        """The TCP and UDP kinds: counted once, never served."""
        for kind, resource in crd.IGNORED.items():
            try:
                page = await self.api.get(resource.path(), {"limit": 1})
            except ApiError:
                continue  # not installed, or not readable: nothing to say
            if page.get("items"):
                log.warning("%s objects are ignored: hopwire proxies HTTP only", kind)

    def build(self) -> tuple[dict[str, Any], dict[str, str]]:
        cluster = Cluster(
            services=self.store("Service"), secrets=self.store("Secret"), files=self.files
        )
        cluster.index_slices(self.store("EndpointSlice"))
        if self.which == "kubernetesCRD":
            stores = {kind: self.store(kind) for kind in crd.RESOURCES}
            opts = crd.Options(
                allow_cross_namespace=self.options.allowCrossNamespace,
                allow_external_name=self.options.allowExternalNameServices,
                ingress_class=self.options.ingressClass,
            )
            units, invalid = crd.translate(stores, cluster, opts)
        else:
            units, invalid = ingress.translate(
                {kind: self.store(kind) for kind in ingress.RESOURCES}, cluster, self.options
            )
        try:  # the other providers' objects as they are now (they may refer to each other)
            self.base_config = self.base()
        except ConfigError as exc:
            log.warning(
                "%s: the configuration files do not load (%s): checking against the last that did",
                self.name,
                "; ".join(exc.errors[:3]),
            )
        merged, rejected = Checker(self.base_config, "@" + self.name).accept(units)
        rejected.update(invalid)
        self.tidy(cluster.written)
        return merged, rejected

    def tidy(self, used: set[str]) -> None:
        """Remove the Secrets' files that no snapshot has named for FILES_KEPT seconds: a
        configuration the master still runs (a later one it rejected) may name them, and
        a worker started again reads them."""
        old = time.time() - FILES_KEPT
        for entry in os.listdir(self.files):
            path = os.path.join(self.files, entry)
            try:
                if path not in used and os.stat(path).st_mtime < old:
                    os.unlink(path)
            except OSError:
                pass

    def publish(self) -> None:
        merged, rejected = self.build()
        for label, why in sorted(rejected.items()):
            if self.rejected.get(label) != why:
                log.error("%s: %s rejected (the others are served): %s", self.name, label, why)
                metrics.family("provider_rejected").labels(self.name).inc()
        for label in sorted(set(self.rejected) - set(rejected)):
            log.info("%s: %s is served now", self.name, label)
        self.rejected = rejected
        data = orjson.dumps(merged, option=orjson.OPT_SORT_KEYS)
        if data == self.written:
            return
        tmp = f"{self.out_path}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, self.out_path)
        self.written = data
        http = merged.get("http") or {}
        log.info(
            "%s: configuration written: %d router(s), %d service(s), %d middleware(s); "
            "%d object(s) rejected",
            self.name,
            len(http.get("routers") or {}),
            len(http.get("services") or {}),
            len(http.get("middlewares") or {}),
            len(rejected),
        )


def run_provider(
    config: Config,
    which: str,
    out_path: str,
    files: str,
    base: Callable[[], Config],
    watched: Watcher | None = None,
) -> int:
    """Entry point of a provider process (after fork)."""
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    log_cfg = config.log
    logs.setup(log_cfg.level, log_cfg.filePath, f"provider-{NAMES[which]}", log_cfg.format)
    signal.signal(signal.SIGUSR1, lambda *_: logs.reopen())
    os.makedirs(files, mode=0o700, exist_ok=True)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    provider = Provider(config, which, out_path, files, base, watched)
    main = loop.create_task(provider.run())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    try:
        return loop.run_until_complete(main)
    except asyncio.CancelledError:
        return 0
    finally:
        loop.close()
