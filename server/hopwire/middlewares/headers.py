"""The ``headers`` middleware, as Traefik's: custom request and response fields (an empty
value removes the field) and the security headers.

The request side edits the fields forwarded to the backend; the response side edits the
backend's response fields before they are written.  Security headers follow Traefik
(unrolled/secure): HSTS only on TLS connections unless ``forceSTSHeader``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Fields = list[tuple[bytes, bytes]]
RequestStage = Callable[[Any], bool]
ResponseStage = Callable[[Any, Fields], Fields]


def _edits(custom: Any) -> tuple[frozenset[bytes], Fields]:
    """(lower-case names to drop, fields to add) of a customRequest/ResponseHeaders map."""
    drop = frozenset(name.lower().encode("latin-1") for name in custom)
    add = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in custom.items() if v]
    return drop, add


def _apply(fields: Fields, drop: frozenset[bytes], add: Fields) -> Fields:
    return [f for f in fields if f[0].lower() not in drop] + add


FORWARDED_SET = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-real-ip",
    }
)


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


def _field(fields: Fields, name: bytes) -> bytes | None:
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

    def preflight(self, ex: Any) -> bool:
        fields = ex.kept
        method = _field(fields, b"access-control-request-method")
        origin = _field(fields, b"origin")
        if not method or not origin or ex.method != "OPTIONS":
            return False
        out: list[bytes] = []

        def put(name: str, value: str | bytes) -> None:
            raw = value if isinstance(value, bytes) else value.encode("latin-1")
            out.append(name.encode() + b": " + raw + b"\r\n")

        if self.credentials:
            put("Access-Control-Allow-Credentials", "true")
        if "*" in self.allow_headers and self.credentials:
            asked = _field(fields, b"access-control-request-headers")
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

    def response(self, ex: Any, fields: Fields) -> Fields:
        sets: Fields = []
        origin = _field(ex.kept, b"origin")
        allowed = self.match(origin.decode("latin-1")) if origin is not None else None
        if allowed is None and origin is None:
            allowed = self.match("")
        if allowed is not None:
            sets.append((b"Access-Control-Allow-Origin", allowed.encode("latin-1")))
        if self.credentials:
            sets.append((b"Access-Control-Allow-Credentials", b"true"))
        exposed = self.exposed()
        if exposed is not None:
            sets.append((b"Access-Control-Expose-Headers", exposed.encode("latin-1")))
        drop = {name.lower() for name, _ in sets}
        out = [f for f in fields if f[0].lower() not in drop] + sets
        if self.vary:
            vary = _field(out, b"vary")
            if vary != b"Origin":
                value = (vary + b"," if vary else b"") + b"Origin"
                out = [f for f in out if f[0].lower() != b"vary"] + [(b"Vary", value)]
        return out


def request_stage(cfg: Any) -> RequestStage | None:
    cors = Cors(cfg) if cors_defined(cfg) else None
    custom = cfg.customRequestHeaders
    if cors is None and not custom:
        return None
    host = next((v for n, v in custom.items() if n.lower() == "host" and v), None)
    forwarded = {
        n.lower().encode("latin-1"): v.encode("latin-1")
        for n, v in custom.items()
        if n.lower().encode("latin-1") in FORWARDED_SET and v
    }
    plain = {n: v for n, v in custom.items() if n.lower() != "host"}
    plain = {n: v for n, v in plain.items() if n.lower().encode("latin-1") not in forwarded}
    drop, add = _edits(plain)

    def stage(ex: Any) -> bool:
        if cors is not None and cors.preflight(ex):
            return True
        if custom:
            ex.kept = _apply(ex.kept, drop, add)
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


def response_stage(cfg: Any) -> ResponseStage | None:
    custom = custom_response_stage(cfg)
    cors = Cors(cfg) if cors_defined(cfg) else None
    if cors is None:
        return custom
    if custom is None:
        return cors.response

    def both(ex: Any, fields: Fields) -> Fields:  # custom fields first, then CORS (Traefik)
        return cors.response(ex, custom(ex, fields))

    return both


def custom_response_stage(cfg: Any) -> ResponseStage | None:
    drop, add = _edits(cfg.customResponseHeaders)
    security, sts = security_fields(cfg)
    add = security + add
    drop = drop | {name.lower() for name, _ in security}
    force = cfg.forceSTSHeader
    if sts is not None:
        drop = drop | {b"strict-transport-security"}
    if not drop and not add and sts is None:
        return None
    with_sts = [*add, (b"Strict-Transport-Security", sts)] if sts is not None else add

    def stage(ex: Any, fields: Fields) -> Fields:
        tls = ex.down.ep.tls
        return _apply(fields, drop, with_sts if sts is not None and (tls or force) else add)

    return stage
