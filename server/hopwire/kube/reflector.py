"""One kind of object kept in memory as the API server has it: LIST, then WATCH.

The list gives the objects and the collection's resourceVersion; the watch goes on from
that version (with bookmarks, which move it on while nothing changes).  When the server has
forgotten the version (``410 Gone``, as the answer or as an ERROR event inside the stream),
the kind is listed again; when the server goes away, the watch is resumed from the last
version after a backoff (0.5 s doubling to 30 s), and listed again if that is gone too.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hopwire.kube.api import Api, ApiError, Gone

REFUSED = (401, 403)  # the credentials, or the role: a configuration error before the first list

log = logging.getLogger("hopwire.kubernetes")

PAGE = 500  # objects per LIST page
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
WATCH_MIN = 300  # a watch's timeoutSeconds: random in [WATCH_MIN, 2 * WATCH_MIN), as client-go
WATCH_SLACK = 60.0  # silence beyond the watch's own timeout that ends it as dead


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    def path(self, namespace: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace and self.namespaced:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"


Key = tuple[str, str]  # (namespace, name)


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def version_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Reflector:
    """The objects of one resource (in one namespace, or all), kept current; ``changed`` is
    called after every change of them."""

    def __init__(
        self,
        api: Api,
        resource: Resource,
        namespace: str,
        label_selector: str,
        changed: Callable[[], None],
        failed: Callable[[str], None],
    ):
        self.api = api
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.changed = changed
        self.failed = failed  # a failed request: counted by the provider
        self.objects: dict[Key, dict[str, Any]] = {}
        self.version = ""  # the resourceVersion the next watch resumes from
        self.synced = asyncio.Event()  # set once the first list is in
        self.path = resource.path(namespace)
        self.relists = 0
        self.last_error = ""

    async def run(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            try:
                if not self.version:
                    await self.relist()
                await self.watch()
                delay = BACKOFF_FIRST
            except Gone as exc:
                log.info("%s: %s; listing again", self.path, exc)
                self.version = ""
            except ApiError as exc:
                if exc.status in REFUSED and not self.synced.is_set():
                    # never read: the provider stops start-up, naming why
                    raise ApiError(exc.status, f"{exc.message} ({self.path})") from None
                self.failed(str(exc))
                message = str(exc)
                level = logging.ERROR if message != self.last_error else logging.WARNING
                log.log(level, "%s: %s; trying again in %.1fs", self.path, exc, delay)
                self.last_error = message
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, BACKOFF_MAX)

    async def relist(self) -> None:
        objects: dict[Key, dict[str, Any]] = {}
        params: dict[str, Any] = {"limit": PAGE, "labelSelector": self.label_selector}
        while True:
            page = await self.api.get(self.path, params)
            for obj in page.get("items") or ():
                if isinstance(obj, dict):
                    objects[key_of(obj)] = obj
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                version = str(meta.get("resourceVersion") or "")
                break
            params = {**params, "continue": token}
        self.relists += 1
        if self.last_error:
            log.info("%s: listed again after: %s", self.path, self.last_error)
            self.last_error = ""
        before = self.objects
        self.objects = objects
        self.version = version
        first = not self.synced.is_set()
        self.synced.set()
        if first or objects != before:
            self.changed()

    async def watch(self) -> None:
        timeout = random.randrange(WATCH_MIN, 2 * WATCH_MIN)
        params = {
            "resourceVersion": self.version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout,
            "labelSelector": self.label_selector,
        }
        async for event in self.api.watch(self.path, params, timeout + WATCH_SLACK):
            kind = event.get("type")
            obj = event.get("object")
            if not isinstance(obj, dict):
                continue
            if kind == "ERROR":  # a Status object: 410 when the version was compacted away
                code = int(obj.get("code") or 0)
                message = str(obj.get("message") or obj.get("reason") or "error event")
                raise (Gone if code == 410 else ApiError)(code, message)
            version = version_of(obj)
            if kind == "BOOKMARK":
                self.version = version or self.version
                continue
            log.debug("%s: %s %s %s", self.path, kind, key_of(obj), version)
            if kind in ("ADDED", "MODIFIED"):
                self.objects[key_of(obj)] = obj
            elif kind == "DELETED":
                self.objects.pop(key_of(obj), None)
            else:
                continue
            self.version = version or self.version
            if self.last_error:
                self.last_error = ""
            self.changed()
