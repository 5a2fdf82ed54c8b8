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


def request_stage(cfg: Any) -> RequestStage | None:
    if not cfg.customRequestHeaders:
        return None
    drop, add = _edits(cfg.customRequestHeaders)

    def stage(ex: Any) -> bool:
        ex.kept = _apply(ex.kept, drop, add)
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
