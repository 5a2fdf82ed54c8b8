"""The ``headers`` middleware, as Traefik's: custom request and response fields (an empty
value removes the field) and the security headers.

The request side edits the fields forwarded to the backend; the response side edits the
backend's response fields before they are written.  Security headers follow Traefik
(unrolled/secure): HSTS only on TLS connections unless ``forceSTSHeader``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hopwire.contracts import ExchangeView
from hopwire.http.wire import FORWARDED, UNFORWARDED

Fields = list[tuple[bytes, bytes]]
RequestStage = Callable[[Any], bool]


def _edits(custom: Any) -> tuple[frozenset[bytes], Fields]:
    """(lower-case names to drop, fields to add) of a customRequest/ResponseHeaders map."""
    drop = frozenset(name.lower().encode("latin-1") for name in custom)
    add = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in custom.items() if v]
    return drop, add


def _apply(fields: Fields, drop: frozenset[bytes], add: Fields) -> Fields:
    return [f for f in fields if f[0].lower() not in drop] + add


def cors_defined(cfg: Any) -> bool:
    return bool(
        cfg.accessControlAllowCredentials
        or cfg.accessControlAllowHeaders
        or cfg.accessControlAllowMethods
        or cfg.accessControlAllowOriginList
        or cfg.accessControlAllowOriginListRegex
        or cfg.accessControlExposeHeaders
        or cfg.accessControlMaxAge
        or cfg.addVaryHeader
    )


def field(fields: Fields, name: bytes) -> bytes | None:
    """The first value of the lower-case field ``name``, or None."""
    for n, v in fields:
        if n.lower() == name:
            return v
    return None


class Cors:
    """Traefik's CORS: preflights answered by the proxy, the response fields set after."""

    def __init__(self, cfg: Any):
        import re

        self.credentials = cfg.accessControlAllowCredentials
        self.allow_headers = list(cfg.accessControlAllowHeaders)
        self.allow_methods = list(cfg.accessControlAllowMethods)
        self.origins = list(cfg.accessControlAllowOriginList)
        self.regexes = [re.compile(r) for r in cfg.accessControlAllowOriginListRegex]
        self.expose = list(cfg.accessControlExposeHeaders)
        self.max_age = cfg.accessControlMaxAge
        self.vary = cfg.addVaryHeader

    def match(self, origin: str) -> str | None:
        for item in self.origins:
            if item == origin:
                return item
            if item == "*":
                return origin if self.credentials else item  # no wildcard with credentials
        for regex in self.regexes:
            if regex.search(origin):
                return origin
        return None

    def exposed(self) -> str | None:
        if self.expose and not ("*" in self.expose and self.credentials):
            return ",".join(self.expose)
        return None

    def preflight(self, ex: ExchangeView) -> bool:
        fields = ex.kept
        method = field(fields, b"access-control-request-method")
        origin = field(fields, b"origin")
        if not method or not origin or ex.method != "OPTIONS":
            return False
        out: list[bytes] = []

        def put(name: str, value: str | bytes) -> None:
            raw = value if isinstance(value, bytes) else value.encode("latin-1")
            out.append(name.encode() + b": " + raw + b"\r\n")

        if self.credentials:
            put("Access-Control-Allow-Credentials", "true")
        if "*" in self.allow_headers and self.credentials:
            asked = field(fields, b"access-control-request-headers")
            if asked:
                put("Access-Control-Allow-Headers", asked)
        elif self.allow_headers:
            put("Access-Control-Allow-Headers", ",".join(self.allow_headers))
        if "*" in self.allow_methods and self.credentials:
            put("Access-Control-Allow-Methods", method)
        elif self.allow_methods:
            put("Access-Control-Allow-Methods", ",".join(self.allow_methods))
        allowed = self.match(origin.decode("latin-1"))
        if allowed is not None:
            put("Access-Control-Allow-Origin", allowed)
        if self.max_age is not None:
            put("Access-Control-Max-Age", str(self.max_age))
        exposed = self.exposed()
        if exposed is not None:
            put("Access-Control-Expose-Headers", exposed)
        ex.respond_local(200, b"", b"", out)
        return True

    def drops(self) -> frozenset[bytes]:
        names = {
            b"access-control-allow-origin",
            b"access-control-allow-credentials",
            b"access-control-expose-headers",
        }
        return frozenset(names | ({b"vary"} if self.vary else set()))

    def fields(self, ex: ExchangeView, backend: Fields) -> Fields:
        """The CORS fields of a response (replacing the backend's, see ``drops``)."""
        sets: Fields = []
        origin = field(ex.kept, b"origin")
        allowed = self.match(origin.decode("latin-1") if origin is not None else "")
        if allowed is not None:
            sets.append((b"Access-Control-Allow-Origin", allowed.encode("latin-1")))
        if self.credentials:
            sets.append((b"Access-Control-Allow-Credentials", b"true"))
        exposed = self.exposed()
        if exposed is not None:
            sets.append((b"Access-Control-Expose-Headers", exposed.encode("latin-1")))
        if self.vary:
            vary = field(backend, b"vary")
            if vary == b"Origin":
                sets.append((b"Vary", vary))
            else:
                sets.append((b"Vary", (vary + b"," if vary else b"") + b"Origin"))
        return sets


def request_stage(cfg: Any) -> RequestStage | None:
    cors = Cors(cfg) if cors_defined(cfg) else None
    custom = cfg.customRequestHeaders
    if cors is None and not custom:
        return None
    host = next((v for n, v in custom.items() if n.lower() == "host" and v), None)
    forwarded = {
        n.lower().encode("latin-1"): v.encode("latin-1")
        for n, v in custom.items()
        if n.lower().encode("latin-1") in FORWARDED and v
    }
    removed = frozenset(
        n.lower().encode("latin-1")
        for n, v in custom.items()
        if n.lower().encode("latin-1") in FORWARDED and not v
    )
    if removed:
        forwarded[UNFORWARDED] = removed
    plain = {n: v for n, v in custom.items() if n.lower() != "host"}
    plain = {
        n: v
        for n, v in plain.items()
        if n.lower().encode("latin-1") not in forwarded
        and n.lower().encode("latin-1") not in removed
    }
    drop, add = _edits(plain)

    def stage(ex: ExchangeView) -> bool:
        if cors is not None and cors.preflight(ex):
            return True
        if custom:
            kept = ex.kept
            for name, _ in kept:
                if name.lower() in drop:
                    ex.kept = _apply(kept, drop, add)
                    break
            else:  # the usual case: nothing to replace, the fields are added in place
                kept += add
            if forwarded:  # the fields hopwire writes itself take the set value (Traefik: Set)
                ex.fwd = {**ex.fwd, **forwarded}
            if host is not None:  # Traefik sets req.Host; X-Forwarded-Host keeps the client's
                ex.fwd = {b"x-forwarded-host": ex.authority, **ex.fwd}
                ex.authority = host.encode("latin-1")
        return False

    return stage


def security_fields(cfg: Any) -> tuple[Fields, bytes | None]:
    """(fields every response gets, the Strict-Transport-Security value or None)."""
    fields: Fields = []
    frame = cfg.customFrameOptionsValue or ("DENY" if cfg.frameDeny else "")
    if frame:
        fields.append((b"X-Frame-Options", frame.encode("latin-1")))
    if cfg.contentTypeNosniff:
        fields.append((b"X-Content-Type-Options", b"nosniff"))
    if cfg.browserXssFilter:
        fields.append((b"X-XSS-Protection", b"1; mode=block"))
    if cfg.contentSecurityPolicy:
        fields.append((b"Content-Security-Policy", cfg.contentSecurityPolicy.encode("latin-1")))
    if cfg.referrerPolicy:
        fields.append((b"Referrer-Policy", cfg.referrerPolicy.encode("latin-1")))
    if cfg.permissionsPolicy:
        fields.append((b"Permissions-Policy", cfg.permissionsPolicy.encode("latin-1")))
    sts = None
    if cfg.stsSeconds:
        sts = b"max-age=%d" % cfg.stsSeconds
        if cfg.stsIncludeSubdomains:
            sts += b"; includeSubDomains"
        if cfg.stsPreload:
            sts += b"; preload"
    return fields, sts


def response_step(cfg: Any) -> tuple[frozenset[bytes], Callable[[Any, Fields], Fields]] | None:
    """(names replaced, the fields of a response) of a headers middleware, or None: custom
    response fields and security headers first, then CORS, as Traefik applies them."""
    drop, add = _edits(cfg.customResponseHeaders)
    security, sts = security_fields(cfg)
    static = security + add
    drop = drop | {name.lower() for name, _ in security}
    if sts is not None:
        drop = drop | {b"strict-transport-security"}
    with_sts = [*static, (b"Strict-Transport-Security", sts)] if sts is not None else static
    force = cfg.forceSTSHeader
    cors = Cors(cfg) if cors_defined(cfg) else None
    if cors is not None:
        drop = drop | cors.drops()
    if not drop and not static and sts is None:
        return None

    def fields(ex: ExchangeView, backend: Fields) -> Fields:
        out = with_sts if sts is not None and (force or ex.down.ep.tls) else static
        return out + cors.fields(ex, backend) if cors is not None else out

    return frozenset(drop), fields
