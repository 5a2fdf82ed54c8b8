"""The checks of ``http.middlewares`` that need the middlewares' own code (``hopwire.checks``):
one type each, options their compilers accept, every name used defined, no chain loop."""

from __future__ import annotations

import re
from typing import Any

from hopwire.config import Config
from hopwire.config.validate import suggest
from hopwire.config.values import check_status_ranges
from hopwire.middlewares import TYPES, expand, kind_of
from hopwire.middlewares.access import read_users
from hopwire.middlewares.bodies import media_type


def _check_bodies(config: Config, key: str, mw: Any) -> list[str]:
    """compress, errors, forwardAuth, retry and rateLimit.redis options."""
    errors: list[str] = []
    if mw.compress is not None:
        c = mw.compress
        if c.excludedContentTypes and c.includedContentTypes:
            errors.append(
                f"{key}.compress: excludedContentTypes and includedContentTypes are mutually "
                "exclusive"
            )
        for field in ("excludedContentTypes", "includedContentTypes"):
            for i, value in enumerate(getattr(c, field)):
                if media_type(value) is None:
                    errors.append(f"{key}.compress.{field}[{i}]: {value!r} is not a media type")
        if not c.encodings:
            errors.append(f"{key}.compress.encodings: at least one encoding is required")
        if c.defaultEncoding and c.defaultEncoding not in c.encodings:
            errors.append(
                f"{key}.compress.defaultEncoding: {c.defaultEncoding!r} is not in encodings"
            )
    if mw.errors is not None:
        e = mw.errors
        if e.service not in config.http.services:
            errors.append(
                f"{key}.errors.service: {e.service!r} is not a service"
                f"{suggest(e.service, list(config.http.services))}"
            )
        for spec, code in e.statusRewrites.items():
            problem = check_status_ranges(str(spec))
            if problem is not None:
                errors.append(f"{key}.errors.statusRewrites: {spec!r}: {problem}")
            elif not isinstance(code, int) or not 100 <= code <= 599:
                errors.append(f"{key}.errors.statusRewrites.{spec}: {code!r} is not a status")
    if mw.retry is not None and not mw.retry.status and mw.retry.disableRetryOnNetworkError:
        errors.append(f"{key}.retry: nothing to retry (no status, and disableRetryOnNetworkError)")
    redis = mw.rateLimit.redis if mw.rateLimit is not None else None
    if redis is not None and len(redis.endpoints) != 1:
        errors.append(
            f"{key}.rateLimit.redis.endpoints: one endpoint is supported (a Redis Cluster or "
            f"Sentinel is not), got {len(redis.endpoints)}"
        )
    fa = mw.forwardAuth
    if fa is not None and fa.tls is not None and bool(fa.tls.cert) != bool(fa.tls.key):
        errors.append(f"{key}.forwardAuth.tls: cert and key go together")
    return errors


def check(config: Config) -> list[str]:
    """Each middleware has one type and good options; every name used exists; no chain loops."""
    errors: list[str] = []
    defined = config.http.middlewares
    for name, mw in defined.items():
        key = f"http.middlewares.{name}"
        kinds = kind_of(mw)
        if len(kinds) != 1:
            errors.append(
                f"{key}: expected exactly one type ({', '.join(TYPES)}), got "
                f"{', '.join(kinds) or 'none'}"
            )
            continue
        regexes = []
        if mw.replacePathRegex is not None:
            regexes.append(("replacePathRegex.regex", mw.replacePathRegex.regex))
        if mw.redirectRegex is not None:
            regexes.append(("redirectRegex.regex", mw.redirectRegex.regex))
        if mw.stripPrefixRegex is not None:
            regexes += [
                (f"stripPrefixRegex.regex[{i}]", r) for i, r in enumerate(mw.stripPrefixRegex.regex)
            ]
        if mw.basicAuth is not None:
            auth = mw.basicAuth
            try:
                if not read_users(auth.users, auth.usersFile):
                    errors.append(f"{key}.basicAuth: no users (users or usersFile)")
            except OSError as exc:
                errors.append(f"{key}.basicAuth.usersFile: {auth.usersFile!r}: {exc.strerror}")
            except ValueError as exc:
                errors.append(f"{key}.basicAuth.{exc}")
        limited = mw.rateLimit or mw.inFlightReq
        if limited is not None and limited.sourceCriterion is not None:
            crit = limited.sourceCriterion
            chosen = [
                n
                for n, on in (
                    ("ipStrategy", crit.ipStrategy is not None),
                    ("requestHeaderName", bool(crit.requestHeaderName)),
                    ("requestHost", crit.requestHost),
                )
                if on
            ]
            if len(chosen) > 1:
                kind = "rateLimit" if mw.rateLimit is not None else "inFlightReq"
                errors.append(
                    f"{key}.{kind}.sourceCriterion: {' and '.join(chosen)} are mutually exclusive"
                )
        if mw.ipAllowList is not None:
            bits = mw.ipAllowList.ipStrategy.ipv6Subnet if mw.ipAllowList.ipStrategy else None
            if bits is not None and not 0 <= bits <= 128:
                errors.append(f"{key}.ipAllowList.ipStrategy.ipv6Subnet: {bits} is not 0-128")
        if mw.forwardAuth is not None and mw.forwardAuth.authResponseHeadersRegex:
            regexes.append(
                ("forwardAuth.authResponseHeadersRegex", mw.forwardAuth.authResponseHeadersRegex)
            )
        errors += _check_bodies(config, key, mw)
        for field, pattern in regexes:
            try:
                re.compile(pattern)
            except re.error as exc:
                errors.append(f"{key}.{field}: {pattern!r}: {exc}")
        if mw.stripPrefix is not None and not [p for p in mw.stripPrefix.prefixes if p.strip()]:
            errors.append(f"{key}.stripPrefix.prefixes: at least one prefix is required")
    users = [
        (f"http.routers.{n}.middlewares", r.middlewares) for n, r in config.http.routers.items()
    ]
    users += [
        (f"entryPoints.{n}.http.middlewares", e.http.middlewares)
        for n, e in config.entryPoints.items()
    ]
    users += [
        (f"http.middlewares.{n}.chain.middlewares", m.chain.middlewares)
        for n, m in defined.items()
        if m.chain is not None
    ]
    for key, names in users:
        for i, used in enumerate(names):
            if used not in defined:
                errors.append(
                    f"{key}[{i}]: {used!r} is not in http.middlewares{suggest(used, list(defined))}"
                )
    if not errors:
        for name in defined:
            try:
                expand([name], defined)
            except ValueError as exc:
                errors.append(f"http.middlewares.{name}: {exc}")
    return errors
