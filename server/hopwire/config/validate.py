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
    """Cross-field checks within the configuration: references between sections, addresses,
    files.  What needs the runtime's compilers (rules, middlewares, TLS contexts, the span
    encoder) is checked beside them, and composed in ``hopwire.checks``."""
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
    for name, tr in config.transports():
        for i, ca in enumerate(tr.rootCAs):
            if not os.path.isfile(ca):
                errors.append(f"{name}.rootCAs[{i}]: {ca!r} is not a readable file")
    for section_key, otlp in config.otlp_sections():
        errors += _check_otlp(section_key, otlp)
    if config.tracing is not None:
        problem = propagators_problem(config.tracing.propagators)
        if problem:
            errors.append(f"tracing.propagators: {problem}")
    errors += _check_tls(config)
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
    return errors


def _check_tls(config: Config) -> list[str]:
    """References of the TLS sections (the files and options: ``hopwire.http.tls.check``)."""
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
    return errors
