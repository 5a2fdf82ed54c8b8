"""A small client of the Kubernetes API server: GET a list, WATCH a stream of events.

HTTP/1.1 and JSON over asyncio, parsed by httptools as the proxy's own backends are, one
connection per request (a LIST is rare, a WATCH lasts minutes).  Every step has a deadline:
the connection, a LIST's answer, and the silence a WATCH may keep (the server ends a watch
after ``timeoutSeconds`` and sends bookmarks meanwhile, so a longer silence is a dead peer).

Credentials are read for each request, as client-go does: a projected service-account
token is rotated on disk while the process runs.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from httptools import HttpParserError, HttpResponseParser

from hopwire import __version__

IN_CLUSTER = "/var/run/secrets/kubernetes.io/serviceaccount"
CONNECT_TIMEOUT = 10.0
LIST_TIMEOUT = 60.0  # a whole LIST answer (one page)
MAX_BODY = 256 * 1024 * 1024  # a LIST page larger than this is refused
MAX_EVENT = 16 * 1024 * 1024  # one WATCH event (an object), as the API server bounds requests


class ApiError(Exception):
    """The API server answered with an error status (or not at all: ``status`` 0)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status} {message}" if status else message)
        self.status = status
        self.message = message


class Gone(ApiError):
    """410 Gone: the resourceVersion asked for is older than the server keeps: list again."""


@dataclass(frozen=True)
class Credentials:
    endpoint: str  # https://host:port (or http:// for a local test server)
    token: str = ""  # a bearer token; empty: the in-cluster file's, if any
    token_file: str = ""  # read before each request (rotated service-account tokens)
    ca_file: str = ""  # the server's CA bundle; empty: the system's


def credentials(endpoint: str, token: str, ca_file: str) -> Credentials:
    """Traefik's options, with the in-cluster service account's defaults for what is unset:
    ``KUBERNETES_SERVICE_HOST``/``_PORT`` for the endpoint, its token and CA files."""
    token_file = ""
    if not endpoint:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ValueError(
                "endpoint is not set and this is not a Kubernetes pod "
                "(KUBERNETES_SERVICE_HOST is unset)"
            )
        endpoint = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        if not ca_file and os.path.exists(f"{IN_CLUSTER}/ca.crt"):
            ca_file = f"{IN_CLUSTER}/ca.crt"
    if not token and os.path.exists(f"{IN_CLUSTER}/token"):
        token_file = f"{IN_CLUSTER}/token"
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint {endpoint!r}: expected http(s)://host[:port]")
    return Credentials(endpoint.rstrip("/"), token, token_file, ca_file)


class _Reader:
    """httptools' callbacks for one response: its status, then its body as it comes."""

    def __init__(self) -> None:
        self.parser = HttpResponseParser(self)
        self.headers_done = False
        self.complete = False
        self.body: list[bytes] = []
        self.size = 0

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        self.complete = True

    def take(self) -> bytes:
        out = b"".join(self.body)
        self.body.clear()
        self.size = 0
        return out


class Api:
    def __init__(self, creds: Credentials):
        self.creds = creds
        parts = urlsplit(creds.endpoint)
        self.host = parts.hostname or ""
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.authority = parts.netloc
        self.context: ssl.SSLContext | None = None
        if self.tls:
            self.context = ssl.create_default_context(cafile=creds.ca_file or None)

    def token(self) -> str:
        if self.creds.token:
            return self.creds.token
        if self.creds.token_file:
            try:
                with open(self.creds.token_file) as fh:
                    return fh.read().strip()
            except OSError:
                return ""
        return ""

    def head(self, path: str, params: dict[str, Any]) -> bytes:
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        lines = [
            f"GET {path}{'?' + query if query else ''} HTTP/1.1",
            f"Host: {self.authority}",
            "Accept: application/json",
            f"User-Agent: hopwire/{__version__}",
        ]
        token = self.token()
        if token:
            lines.append(f"Authorization: Bearer {token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def open(
        self, path: str, params: dict[str, Any]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.context,
                    server_hostname=self.host if self.tls else None,
                    limit=1 << 20,
                ),
                CONNECT_TIMEOUT,
            )
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            raise ApiError(0, f"cannot connect to {self.creds.endpoint}: {exc or 'timed out'}")
        writer.write(self.head(path, params))
        return reader, writer

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One GET answered with a JSON object (a LIST page)."""
        reader, writer = await self.open(path, params or {})
        rd = _Reader()
        try:
            async with asyncio.timeout(LIST_TIMEOUT):
                while not rd.complete:
                    data = await reader.read(1 << 20)
                    if not data:
                        rd.parser.feed_data(b"")  # a body read to the close ends here
                        if not rd.complete:
                            raise ApiError(0, f"GET {path}: the connection closed early")
                        break
                    rd.parser.feed_data(data)
                    if rd.size > MAX_BODY:
                        raise ApiError(0, f"GET {path}: answer over {MAX_BODY} bytes")
        except TimeoutError:
            raise ApiError(0, f"GET {path}: no complete answer in {LIST_TIMEOUT:g}s") from None
        except (OSError, HttpParserError) as exc:
            raise ApiError(0, f"GET {path}: {exc}") from None
        finally:
            writer.close()
        status = rd.parser.get_status_code()
        body = rd.take()
        if status != 200:
            raise _error(status, body)
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(0, f"GET {path}: not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ApiError(0, f"GET {path}: not a JSON object")
        return value

    async def watch(
        self, path: str, params: dict[str, Any], idle: float
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of a WATCH (one JSON object per line) until the server ends it; a
        silence longer than ``idle`` seconds ends it too (ApiError)."""
        reader, writer = await self.open(path, {**params, "watch": "1"})
        rd = _Reader()
        pending = b""
        try:
            while not rd.complete:
                try:
                    data = await asyncio.wait_for(reader.read(1 << 20), idle)
                except TimeoutError:
                    raise ApiError(0, f"WATCH {path}: silent for {idle:g}s") from None
                if not data:
                    return  # the server ended the watch: resume from the last version
                rd.parser.feed_data(data)
                if rd.headers_done and rd.parser.get_status_code() != 200:
                    while not rd.complete:  # the error's body (a Status object)
                        more = await asyncio.wait_for(reader.read(1 << 16), idle)
                        if not more:
                            break
                        rd.parser.feed_data(more)
                    raise _error(rd.parser.get_status_code(), rd.take())
                if not rd.body:
                    continue
                pending += rd.take()
                *lines, pending = pending.split(b"\n")
                if len(pending) > MAX_EVENT:
                    raise ApiError(0, f"WATCH {path}: an event over {MAX_EVENT} bytes")
                for line in lines:
                    if line.strip():
                        try:
                            event = orjson.loads(line)
                        except orjson.JSONDecodeError as exc:
                            raise ApiError(0, f"WATCH {path}: not JSON: {exc}") from None
                        yield event
        except (OSError, HttpParserError) as exc:
            raise ApiError(0, f"WATCH {path}: {exc}") from None
        finally:
            writer.close()


def _error(status: int, body: bytes) -> ApiError:
    """An error answer: its Status object's message when it has one."""
    message = ""
    try:
        value = orjson.loads(body)
        if isinstance(value, dict):
            message = str(value.get("message") or value.get("reason") or "")
    except orjson.JSONDecodeError:
        message = body[:200].decode("utf-8", "replace")
    cls = Gone if status == 410 else ApiError
    return cls(status, message or "error")


def check(config: Any) -> list[str]:
    """A configured provider has an API server to talk to, and its CA file is readable."""
    errors: list[str] = []
    for which in ("kubernetesCRD", "kubernetesIngress"):
        options = getattr(config.providers, which)
        if options is None:
            continue
        try:
            credentials(options.endpoint, options.token, options.certAuthFilePath)
        except ValueError as exc:
            errors.append(f"providers.{which}.endpoint: {exc}")
        path = options.certAuthFilePath
        if path and not os.access(path, os.R_OK):
            errors.append(f"providers.{which}.certAuthFilePath: {path!r} is not a readable file")
    return errors
