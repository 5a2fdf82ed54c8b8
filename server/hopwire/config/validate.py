"""Turning a raw mapping into a typed, frozen Config, and the checks across fields.

Every problem found is collected (not just the first) as a ``key: message`` string naming the
key, the value and what was expected; the command line turns them into exit code 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from hopwire.config.schema import (
    INTERNAL_ADDRESS,
    INTERNAL_ENTRYPOINT,
    Config,
    EntryPoint,
    LogsOTLPHttp,
    MetricsOTLPHttp,
)
from hopwire.config.values import (
    DURATION,
    REQUIRED,
    check_status_ranges,
    parse_address,
    parse_duration,
    propagators_problem,
)


class ConfigError(Exception):
    """Raised with every problem found; ``errors`` lists ``key: message`` strings."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


_HINTS: dict[type, dict[str, Any]] = {}


def type_hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def suggest(word: str, names: list[str]) -> str:
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    if not close:
        lowered = {n.lower(): n for n in names}
        close = [lowered[c] for c in difflib.get_close_matches(word.lower(), list(lowered), n=1)]
    return f" (did you mean {close[0]!r}?)" if close else ""


def unwrap_optional(tp: Any) -> Any:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else '"' + value + '"'


def _scalar(tp: Any, kind: str | None, value: Any, key: str, errors: list[str]) -> Any:
    if isinstance(value, dict | list):
        errors.append(f"{key}: expected a single value, got a {type(value).__name__}")
        return None
    try:
        if kind == DURATION:
            return parse_duration(value)
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1"):
                return True
            if text in ("false", "0"):
                return False
            raise ValueError("expected true or false")
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected an integer")
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if tp is str:
            return str(value)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("invalid literal") or message.startswith("could not convert"):
            message = "expected " + ("an integer" if tp is int else "a number")
        errors.append(f"{key}: {_show(value)} is not valid: {message}")
        return None
    raise TypeError(f"schema type {tp!r} not handled")  # a bug in the schema, not in the input


def _build(tp: Any, kind: str | None, check: Any, value: Any, key: str, errors: list[str]) -> Any:
    optional = unwrap_optional(tp) is not tp
    tp = unwrap_optional(tp)
    if dataclasses.is_dataclass(tp):
        text = str(value).strip().lower() if isinstance(value, str | bool) else None
        if optional and text == "false":
            return None  # an optional section switched off
        if text == "true":
            value = {}
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build_struct(tp, value, key, errors)
    if origin is Mapping:
        _, item_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping of names, got {_show(value)}")
            return types.MappingProxyType({})
        built = {}
        for name, item in value.items():
            name = str(name)
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", name):
                errors.append(f"{key}.{name}: invalid name: use letters, digits, _ . @ -")
                continue
            built[name] = _build(item_tp, None, check, item, f"{key}.{name}", errors)
        return types.MappingProxyType(built)
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if isinstance(value, str) and not dataclasses.is_dataclass(item_tp):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, dict) and all(str(k).isdigit() for k in value):
            value = [value[k] for k in sorted(value, key=lambda k: int(k))]
        if not isinstance(value, list):
            errors.append(f"{key}: expected a list, got {_show(value)}")
            return ()
        items = []
        for i, item in enumerate(value):
            built_item = _build(item_tp, kind, check, item, f"{key}[{i}]", errors)
            items.append(built_item)
        return tuple(items)
    result = _scalar(tp, kind, value, key, errors)
    if result is not None and check is not None:
        problem = check(result)
        if problem:
            errors.append(f"{key}: {_show(value)} is not valid: {problem}")
    return result


def build_struct(cls: Any, value: Any, key: str, errors: list[str]) -> Any:
    if value is None or value is True:
        value = {}
    if not isinstance(value, dict):
        errors.append(f"{key or 'config'}: expected a mapping, got {_show(value)}")
        value = {}
    hints = type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    lowered = {n.lower(): n for n in names}
    given: dict[str, Any] = {}
    for raw_key, item in value.items():
        name = str(raw_key)
        if name not in hints:
            name = lowered.get(name.lower(), "")
        if not name:
            where = f"{key}.{raw_key}" if key else str(raw_key)
            rejected = getattr(cls, "REJECTED", {})
            reason = next((v for k, v in rejected.items() if k.lower() == str(raw_key).lower()), "")
            if reason:
                errors.append(f"{where}: {reason}")
            else:
                errors.append(f"{where}: unknown key{suggest(str(raw_key), names)}")
            continue
        given[name] = item
    kwargs = {}
    for f in dataclasses.fields(cls):
        sub = f"{key}.{f.name}" if key else f.name
        if f.name in given:
            kwargs[f.name] = _build(
                hints[f.name],
                f.metadata.get("kind"),
                f.metadata.get("check"),
                given[f.name],
                sub,
                errors,
            )
        elif f.default is REQUIRED:
            errors.append(f"{sub}: required key is missing ({f.metadata['doc']})")
            kwargs[f.name] = None
    return cls(**kwargs)


def with_defaults(config: Config) -> Config:
    """Add the implicit entrypoints (`web` when none is configured, and `internal`), and drop
    the OTLP exporter sections switched off with ``enabled: false`` (Traefik's Helm values)."""
    eps = dict(config.entryPoints)
    if not eps:
        eps["web"] = EntryPoint(address=":8080")
    if INTERNAL_ENTRYPOINT not in eps:
        eps[INTERNAL_ENTRYPOINT] = EntryPoint(address=INTERNAL_ADDRESS)
    config = dataclasses.replace(config, entryPoints=types.MappingProxyType(eps))
    tracing = config.tracing
    if tracing is not None:
        otlp = _switched(tracing.otlp)
        if otlp != tracing.otlp:
            config = dataclasses.replace(config, tracing=dataclasses.replace(tracing, otlp=otlp))
    # metrics and logs go over OTLP/HTTP unless grpc is given, as Traefik's do
    metrics = config.metrics
    if metrics.otlp is not None:
        otlp = _switched(metrics.otlp, MetricsOTLPHttp)
        if otlp != metrics.otlp:
            config = dataclasses.replace(config, metrics=dataclasses.replace(metrics, otlp=otlp))
    access = config.accessLog
    if access is not None and access.otlp is not None:
        otlp = _switched(access.otlp, LogsOTLPHttp)
        if otlp != access.otlp:
            config = dataclasses.replace(config, accessLog=dataclasses.replace(access, otlp=otlp))
    if config.log.otlp is not None:
        otlp = _switched(config.log.otlp, LogsOTLPHttp)
        if otlp != config.log.otlp:
            config = dataclasses.replace(config, log=dataclasses.replace(config.log, otlp=otlp))
    return config


def _switched(otlp: Any, default_http: Any = None) -> Any:
    """An OTLP section without the exporters switched off (``enabled: false``); with
    ``default_http``, OTLP/HTTP to its default endpoint when neither is left."""
    grpc = otlp.grpc if otlp.grpc is not None and otlp.grpc.enabled else None
    http = otlp.http if otlp.http is not None and otlp.http.enabled else None
    both_off = otlp.grpc is not None and otlp.http is not None and grpc is None and http is None
    if default_http is not None and grpc is None and http is None and not both_off:
        http = default_http()
    if (grpc, http) == (otlp.grpc, otlp.http):
        return otlp
    return dataclasses.replace(otlp, grpc=grpc, http=http)


def _check_otlp(key: str, otlp: Any) -> list[str]:
    """One signal's exporter: one protocol, TLS files that exist, cert with key."""
    errors = []
    if otlp.grpc is not None and otlp.http is not None:
        errors.append(f"{key}: set grpc or http, not both")
    if otlp.grpc is not None and otlp.grpc.insecure and otlp.grpc.tls is not None:
        errors.append(f"{key}.grpc: insecure together with tls: choose one")
    for kind, target in (("grpc", otlp.grpc), ("http", otlp.http)):
        tls = getattr(target, "tls", None)
        for field_name in ("ca", "cert", "key"):
            value = getattr(tls, field_name, "") if tls is not None else ""
            if value and not os.path.isfile(value):
                errors.append(f"{key}.{kind}.tls.{field_name}: {value!r} is not a readable file")
        if tls is not None and bool(tls.cert) != bool(tls.key):
            errors.append(f"{key}.{kind}.tls: cert and key go together")
    return errors


def validate(config: Config) -> list[str]:
    """Cross-field checks: references between sections, rules, addresses."""
    from hopwire.routing import RuleError, parse_rule  # routing depends on config, not back

    errors: list[str] = []
    seen: dict[tuple[str, int], str] = {}
    for name, ep in config.entryPoints.items():
        host, port = parse_address(ep.address)
        other = seen.get((host, port))
        if other:
            errors.append(
                f"entryPoints.{name}.address: {ep.address!r} is already used by "
                f"entrypoint {other!r}"
            )
        seen[(host, port)] = name
    prom = config.metrics.prometheus
    if prom is not None:
        if prom.entryPoint not in config.entryPoints:
            errors.append(
                f"metrics.prometheus.entryPoint: {prom.entryPoint!r} is not an entrypoint"
                f"{suggest(prom.entryPoint, list(config.entryPoints))}"
            )
        if list(prom.buckets) != sorted(set(prom.buckets)):
            errors.append("metrics.prometheus.buckets: expected increasing, distinct bounds")
    otlp_metrics = config.metrics.otlp
    if otlp_metrics is not None and list(otlp_metrics.explicitBoundaries) != sorted(
        set(otlp_metrics.explicitBoundaries)
    ):
        errors.append("metrics.otlp.explicitBoundaries: expected increasing, distinct bounds")
    if config.ping.entryPoint not in config.entryPoints:
        errors.append(
            f"ping.entryPoint: {config.ping.entryPoint!r} is not an entrypoint"
            f"{suggest(config.ping.entryPoint, list(config.entryPoints))}"
        )
    transports = config.http.serversTransports
    for name, svc in config.http.services.items():
        lb = svc.loadBalancer
        if not lb.servers:
            errors.append(
                f"http.services.{name}.loadBalancer.servers: at least one server is required"
            )
        elif not any(s.weight for s in lb.servers):
            errors.append(f"http.services.{name}.loadBalancer.servers: every weight is 0")
        if lb.serversTransport and lb.serversTransport not in transports:
            errors.append(
                f"http.services.{name}.loadBalancer.serversTransport: "
                f"{lb.serversTransport!r} is not in http.serversTransports"
                f"{suggest(lb.serversTransport, list(transports))}"
            )
    for name, tr in [
        ("serversTransport", config.serversTransport),
        *((f"http.serversTransports.{n}", t) for n, t in transports.items()),
    ]:
        for i, ca in enumerate(tr.rootCAs):
            if not os.path.isfile(ca):
                errors.append(f"{name}.rootCAs[{i}]: {ca!r} is not a readable file")
    for section_key, otlp in config.otlp_sections():
        errors += _check_otlp(section_key, otlp)
    if config.tracing is not None:
        problem = propagators_problem(config.tracing.propagators)
        if problem:
            errors.append(f"tracing.propagators: {problem}")
    if config.tracing is not None and config.tracing.encoder == "c":
        from hopwire.telemetry.otlp import compiled_encoder

        problem = compiled_encoder()
        if problem:
            errors.append(f"tracing.encoder: 'c' but {problem}; or set tracing.encoder: python")
    errors += _check_tls(config)
    errors += _check_middlewares(config)
    for name, router in config.http.routers.items():
        key = f"http.routers.{name}"
        if router.service not in config.http.services:
            errors.append(
                f"{key}.service: {router.service!r} is not a service"
                f"{suggest(router.service, list(config.http.services))}"
            )
        for ep_name in router.entryPoints:
            if ep_name not in config.entryPoints:
                errors.append(
                    f"{key}.entryPoints: {ep_name!r} is not an entrypoint"
                    f"{suggest(ep_name, list(config.entryPoints))}"
                )
        try:
            parse_rule(router.rule)
        except RuleError as exc:
            errors.append(f"{key}.rule: {router.rule!r}: {exc}")
    return errors


def _check_tls(config: Config) -> list[str]:
    """References of the TLS sections, then the files and options (``http.tls.check``)."""
    from hopwire.http import tls

    errors: list[str] = []
    names = ["default", *config.tls.options]
    for name in config.tls.stores:
        if name != "default":
            errors.append(f"tls.stores.{name}: only the store `default` exists")
    for i, cert in enumerate(config.tls.certificates):
        for store in cert.stores:
            if store != "default":
                errors.append(f"tls.certificates[{i}].stores: {store!r}: only `default` exists")
    sections = [(f"http.routers.{n}.tls", r.tls) for n, r in config.http.routers.items()]
    sections += [(f"entryPoints.{n}.http.tls", e.http.tls) for n, e in config.entryPoints.items()]
    for key, section in sections:
        if section is not None and section.options and section.options not in names:
            errors.append(
                f"{key}.options: {section.options!r} is not in tls.options"
                f"{suggest(section.options, names)}"
            )
    for name, ep in config.entryPoints.items():
        redirect = ep.http.redirections.entryPoint
        if redirect is None:
            continue
        key = f"entryPoints.{name}.http.redirections.entryPoint.to"
        if re.fullmatch(r":\d+", redirect.to):
            continue
        if redirect.to not in config.entryPoints:
            errors.append(
                f"{key}: {redirect.to!r} is neither an entrypoint nor :port"
                f"{suggest(redirect.to, list(config.entryPoints))}"
            )
        elif redirect.to == name:
            errors.append(f"{key}: {name!r} redirects to itself")
    transports = [("serversTransport", config.serversTransport)]
    transports += [
        (f"http.serversTransports.{n}", t) for n, t in config.http.serversTransports.items()
    ]
    for key, tr in transports:
        for i, files in enumerate(tr.certificates):
            try:
                tls.read_certificate(files.certFile, files.keyFile, f"{key}.certificates[{i}]")
            except tls.TLSError as exc:
                errors += exc.errors
        if tr.maxVersion and tls.VERSIONS[tr.maxVersion] < tls.VERSIONS[tr.minVersion]:
            errors.append(f"{key}.maxVersion: {tr.maxVersion} is below minVersion")
    if not errors:
        errors += tls.check(config)
    return errors


def _check_body_middlewares(config: Config, key: str, mw: Any) -> list[str]:
    """compress, errors, forwardAuth, retry and rateLimit.redis options."""
    from hopwire.middlewares.bodies import media_type

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


def _check_middlewares(config: Config) -> list[str]:
    """Each middleware has one type and good options; every name used exists; no chain loops."""
    from hopwire.middlewares import TYPES, expand, kind_of

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
            from hopwire.middlewares.access import read_users

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
        errors += _check_body_middlewares(config, key, mw)
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
