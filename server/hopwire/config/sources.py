"""Where settings come from: the file, ``HOPWIRE_*`` variables, ``--dotted.flags``, and the
compatibility variables (``PROXY_TRACING_*`` of the Kubernetes proxy, the standard ``OTEL_*``).

Precedence: command-line flag > environment variable > file > default.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import orjson
import yaml

from hopwire.config.schema import Config
from hopwire.config.validate import (
    ConfigError,
    build_struct,
    suggest,
    type_hints,
    unwrap_optional,
    validate,
    with_defaults,
)
from hopwire.config.values import check_host_port

log = logging.getLogger("hopwire.config")

KUBERNETES_SUFFIXES = ("@kubernetescrd", "@kubernetes")
KUBERNETES_PROVIDERS = ("kubernetesCRD", "kubernetesIngress")


def read_file(path: str) -> dict[str, Any]:
    """Read a YAML (.yml/.yaml) or TOML (.toml) file into a plain mapping."""
    ext = os.path.splitext(path)[1].lower()
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError([f"config file {path}: cannot read: {exc.strerror}"])
    try:
        if ext == ".toml":
            loaded: Any = tomllib.loads(data.decode("utf-8"))
        elif ext == ".json":  # what the Kubernetes providers write
            loaded = orjson.loads(data)
        elif ext in (".yml", ".yaml"):
            loaded = yaml.safe_load(data)
        else:
            raise ConfigError(
                [f"config file {path}: unknown extension {ext!r}: expected .yml, .yaml or .toml"]
            )
    except (
        yaml.YAMLError,
        tomllib.TOMLDecodeError,
        UnicodeDecodeError,
        orjson.JSONDecodeError,
    ) as exc:
        raise ConfigError([f"config file {path}: cannot parse: {exc}"])
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError([f"config file {path}: expected a mapping at the top level"])
    return loaded


DYNAMIC_EXTENSIONS = (".yml", ".yaml", ".toml")
# the named tables of the dynamic sections: a name may be defined once across all files
DYNAMIC_TABLES = {
    "http": ("routers", "middlewares", "services", "serversTransports"),
    "tls": ("options", "stores"),
}
UNSUPPORTED_DYNAMIC = {
    "tcp": "TCP routers and services are not supported: hopwire proxies HTTP",
    "udp": "UDP routers and services are not supported: hopwire proxies HTTP",
}


def provider_paths(filename: str, directory: str) -> list[str]:
    """The files of ``providers.file``: the one file, or every YAML/TOML file under the
    directory (subdirectories too; names starting with a dot, such as a Kubernetes ConfigMap's
    ``..data``, are skipped: the files beside them link into it), sorted."""
    if filename and directory:
        raise ConfigError(["providers.file: set filename or directory, not both"])
    if filename:
        return [filename]
    if not directory:
        raise ConfigError(["providers.file: filename or directory is required"])
    if not os.path.isdir(directory):
        raise ConfigError([f"providers.file.directory: {directory!r} is not a readable directory"])
    paths = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in DYNAMIC_EXTENSIONS:
                paths.append(os.path.join(root, name))
    return paths


def _canonical(name: Any, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n.lower() == str(name).lower()), None)


def merge_dynamic(raw: dict[str, Any], paths: list[str], errors: list[str]) -> None:
    """Merge the providers' files into ``raw``'s http and tls sections; a router, service,
    middleware, transport, TLS option or store defined twice (in two files, or in a file and
    the main one) is an error naming both places."""
    origin: dict[tuple[str, str, str], str] = {}
    for section, tables in DYNAMIC_TABLES.items():
        for table in tables:
            for name in _ci_get(raw, section, table) or {}:
                origin[(section, table, str(name))] = "the main config file"
    for path in paths:
        try:
            data = read_file(path)
        except ConfigError as exc:
            errors.extend(exc.errors)
            continue
        for key, value in data.items():
            found = _canonical(key, tuple(DYNAMIC_TABLES))
            if found is None:
                errors.append(f"{path}: {_not_dynamic(str(key))}")
            elif value is not None and not isinstance(value, dict):
                errors.append(f"{path}: {found}: expected a mapping")
            elif value is not None:
                _merge_section(raw, path, found, value, origin, errors)


def _not_dynamic(key: str) -> str:
    """Why a top-level key has no place in a dynamic file."""
    lowered = key.lower()
    if lowered in UNSUPPORTED_DYNAMIC:
        return f"{key}: {UNSUPPORTED_DYNAMIC[lowered]}"
    if lowered in {f.name.lower() for f in dataclasses.fields(Config)}:
        return (
            f"{key} is static configuration: it belongs in the main config file "
            "(applied at start and on SIGHUP)"
        )
    return f"{key}: unknown key (a dynamic file holds http, tls)"


def _merge_section(
    raw: dict[str, Any],
    path: str,
    section: str,
    value: dict[Any, Any],
    origin: dict[tuple[str, str, str], str],
    errors: list[str],
) -> None:
    """One file's http or tls section into ``raw``: its named tables entry by entry (a name
    seen before is an error), tls.certificates appended."""
    allowed = (*DYNAMIC_TABLES[section], *(("certificates",) if section == "tls" else ()))
    for sub, items in value.items():
        table = _canonical(sub, allowed)
        if table is None:
            errors.append(f"{path}: {section}.{sub}: unknown key{suggest(str(sub), list(allowed))}")
        elif items is None:
            continue
        elif table == "certificates":
            if isinstance(items, list):
                existing = _ci_get(raw, "tls", "certificates")
                _set(raw, ["tls", "certificates"], [*(existing or []), *items])
            else:
                errors.append(f"{path}: tls.certificates: expected a list")
        elif not isinstance(items, dict):
            errors.append(f"{path}: {section}.{table}: expected a mapping")
        else:
            for name, item in items.items():
                where = origin.setdefault((section, table, str(name)), path)
                if where != path:
                    errors.append(
                        f"{section}.{table}.{name}: defined twice, in {where} and in {path}"
                    )
                else:
                    _set(raw, [section, table, str(name)], item)


def _drop_provider(name: Any) -> Any:
    """``whoami@file`` names ``whoami``: the file provider's suffix, as Traefik writes it."""
    return name[: -len("@file")] if isinstance(name, str) and name.endswith("@file") else name


def _drop_provider_suffixes(raw: dict[str, Any]) -> None:
    """Every reference by name may carry Traefik's ``@file``: a router's service,
    middlewares and TLS options, a chain's middlewares, an errors middleware's service, a
    service's servers transport, an entrypoint's middlewares and TLS options."""

    def fix(node: Any, key: str) -> None:
        if not isinstance(node, dict):
            return
        found = next((k for k in node if str(k).lower() == key.lower()), None)
        if found is None:
            return
        value = node[found]
        node[found] = (
            [_drop_provider(v) for v in value] if isinstance(value, list) else _drop_provider(value)
        )

    def each(*path: str) -> list[Any]:
        table = _ci_get(raw, *path)
        return list(table.values()) if isinstance(table, dict) else []

    for router in each("http", "routers"):
        fix(router, "service")
        fix(router, "middlewares")
        fix(_ci_get(router, "tls"), "options")
    for mw in each("http", "middlewares"):
        fix(_ci_get(mw, "chain"), "middlewares")
        fix(_ci_get(mw, "errors"), "service")
    for svc in each("http", "services"):
        fix(_ci_get(svc, "loadBalancer"), "serversTransport")
    for ep in each("entryPoints"):
        fix(_ci_get(ep, "http"), "middlewares")
        fix(_ci_get(ep, "http", "tls"), "options")


def wait_for_kubernetes(raw: dict[str, Any]) -> list[str]:
    """Leave out what refers to a Kubernetes provider's object that is not there (yet, or
    any more): a router, a chain or errors middleware, or a service's transport naming
    ``...@kubernetescrd`` or ``...@kubernetes``, and what refers to what was left out.  The
    rest is served; the left-out parts are served once the names exist, as Traefik's
    routers in error are.  The reasons, one line each."""
    http = _ci_get(raw, "http")
    if not isinstance(http, dict):
        return []
    tables = {
        t: _ci_get(http, t) for t in ("routers", "middlewares", "services", "serversTransports")
    }
    tables = {t: v for t, v in tables.items() if isinstance(v, dict)}

    def refs(table: str, item: Any) -> list[tuple[str, str]]:
        """(table referred to, name) of one entry."""
        out: list[tuple[str, str]] = []
        if not isinstance(item, dict):
            return out
        if table == "routers":
            out.append(("services", str(_ci_get(item, "service") or "")))
            out += [("middlewares", str(m)) for m in _ci_get(item, "middlewares") or ()]
        elif table == "middlewares":
            chain = _ci_get(item, "chain")
            if isinstance(chain, dict):
                out += [("middlewares", str(m)) for m in _ci_get(chain, "middlewares") or ()]
            errors = _ci_get(item, "errors")
            if isinstance(errors, dict):
                out.append(("services", str(_ci_get(errors, "service") or "")))
        elif table == "services":
            lb = _ci_get(item, "loadBalancer")
            if isinstance(lb, dict) and _ci_get(lb, "serversTransport"):
                out.append(("serversTransports", str(_ci_get(lb, "serversTransport"))))
        return out

    left: list[str] = []
    dropped: set[tuple[str, str]] = set()
    changed = True
    while changed:
        changed = False
        for table, items in tables.items():
            for name in list(items):
                for target, ref in refs(table, items[name]):
                    missing = ref.endswith(KUBERNETES_SUFFIXES) and ref not in tables.get(
                        target, {}
                    )
                    if missing or (target, ref) in dropped:
                        del items[name]
                        dropped.add((table, str(name)))
                        left.append(
                            f"http.{table}.{name} is not served until {ref} exists (http.{target})"
                        )
                        changed = True
                        break
    return left


def _resolve(segments: list[str], origin: str, errors: list[str]) -> list[str | int] | None:
    """Map override segments onto canonical schema names (case-insensitively)."""
    tp: Any = Config
    out: list[str | int] = []
    for i, seg in enumerate(segments):
        tp = unwrap_optional(tp)
        origin_tp = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            names = [f.name for f in dataclasses.fields(tp)]
            match = next((n for n in names if n.lower() == seg.lower()), None)
            if match is None:
                rejected = getattr(tp, "REJECTED", {})
                reason = next((v for k, v in rejected.items() if k.lower() == seg.lower()), "")
                errors.append(
                    f"{origin}: {reason}"
                    if reason
                    else f"{origin}: unknown key {seg!r}{suggest(seg, names)}"
                )
                return None
            out.append(match)
            tp = type_hints(typing.cast(type, tp))[match]
        elif origin_tp is Mapping:
            item_tp = typing.get_args(tp)[1]
            if not dataclasses.is_dataclass(unwrap_optional(item_tp)):
                # a map of values (resourceAttributes, headers): the rest is one key, dots
                # and all, as Traefik reads --tracing.resourceAttributes.deployment.environment
                out.append(".".join(segments[i:]))
                return out
            out.append(seg)
            tp = item_tp
        elif origin_tp is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            if not seg.isdigit():
                errors.append(f"{origin}: expected a list index at {seg!r}")
                return None
            out.append(int(seg))
            tp = typing.get_args(tp)[0]
        else:
            errors.append(f"{origin}: {'.'.join(segments[:i])} takes a value, not sub-keys")
            return None
    return out


def _set(raw: dict[str, Any], path: list[str | int], value: Any) -> None:
    node: Any = raw
    for seg, nxt in itertools.pairwise(path):
        if isinstance(node, dict):
            found = next((k for k in node if str(k).lower() == str(seg).lower()), seg)
            child = node.get(found)
            if not isinstance(child, dict | list):
                child = [] if isinstance(nxt, int) else {}
                node[found] = child
            node = child
        else:
            while len(node) <= int(seg):
                node.append({})
            if not isinstance(node[seg], dict | list):
                node[seg] = [] if isinstance(nxt, int) else {}
            node = node[seg]
    last = path[-1]
    if isinstance(node, dict):
        found = next((k for k in node if str(k).lower() == str(last).lower()), last)
        node[found] = value
    else:
        while len(node) <= int(last):
            node.append({})
        node[last] = value


def _flag_segments(name: str) -> list[str]:
    return [s for s in re.split(r"[.\[\]]+", name) if s]


def _ci_get(node: Any, *path: str) -> Any:
    """The value at ``path`` in a raw mapping (keys matched case-insensitively), or None."""
    for seg in path:
        if not isinstance(node, dict):
            return None
        node = next((v for k, v in node.items() if str(k).lower() == seg.lower()), None)
    return node


def _ci_set_default(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    if _ci_get(raw, *path) is None:
        _set(raw, list(path), value)


TRUTHY = ("1", "true")


def _tracing_switched_on(raw: dict[str, Any]) -> bool:
    """`tracing: true`, `tracing:`, --tracing=true (and a `tracing:` mapping) switch it on; the
    first three are turned into a mapping here."""
    tracing = _ci_get(raw, "tracing")
    if isinstance(tracing, dict):
        return True
    if (
        tracing is True
        or (tracing is None and any(str(k).lower() == "tracing" for k in raw))
        or str(tracing).strip().lower() == "true"
    ):
        _set(raw, ["tracing"], {})
        return True
    return False


def _proxy_tracing_env(
    raw: dict[str, Any],
    environ: Mapping[str, str],
    overridden: list[list[str | int]],
    errors: list[str],
) -> None:
    """PROXY_TRACING_* of the Kubernetes proxy, with exactly its semantics (DESIGN §4).

    Tracing is opt-in: PROXY_TRACING_ENABLED truthy (1 or true, any case, whitespace ignored)
    switches it on, anything else switches it off; unset, the file decides.  ENDPOINT and
    SAMPLE_RATE only configure tracing that is on, they never switch it on.  The variables rank
    above the file and below HOPWIRE_* variables and flags (``overridden``: the keys those set).
    """
    endpoint = environ.get("PROXY_TRACING_ENDPOINT", "").strip()
    grpc: dict[str, Any] | None = None
    if endpoint:
        scheme, sep, rest = endpoint.partition("://")
        if not sep:
            scheme, rest = "", endpoint
        rest = rest.rstrip("/")
        if scheme not in ("", "http", "https") or check_host_port(rest):
            errors.append(
                f"environment PROXY_TRACING_ENDPOINT: {endpoint!r} is not valid: "
                "expected host:port, http://host:port or https://host:port"
            )
        else:
            grpc = {"endpoint": rest, "insecure": scheme != "https"}
    rate_text = environ.get("PROXY_TRACING_SAMPLE_RATE")
    rate: float | None = None
    if rate_text is not None and rate_text.strip():
        try:
            rate = float(rate_text)
        except ValueError:
            rate = -1.0
        if not 0.0 <= rate <= 1.0:
            errors.append(
                f"environment PROXY_TRACING_SAMPLE_RATE: {rate_text!r} is not valid: "
                "expected a probability between 0 and 1"
            )
            rate = None
    enabled = environ.get("PROXY_TRACING_ENABLED")
    if enabled is not None and ["tracing"] not in overridden:
        if enabled.strip().lower() not in TRUTHY:
            _set(raw, ["tracing"], False)
            return
        if not _tracing_switched_on(raw):
            _set(raw, ["tracing"], {})
    if not _tracing_switched_on(raw):
        return
    if grpc is not None and not any(p[:2] == ["tracing", "otlp"] for p in overridden):
        # the variable names a gRPC collector: it replaces the file's exporter choice
        otlp = _ci_get(raw, "tracing", "otlp")
        file_grpc = _ci_get(otlp, "grpc") if isinstance(otlp, dict) else None
        kept = {
            k: v
            for k, v in (file_grpc if isinstance(file_grpc, dict) else {}).items()
            if str(k).lower() not in ("endpoint", "insecure", "tls")
        }
        _set(raw, ["tracing", "otlp"], {"grpc": {**kept, **grpc}})
    if rate is not None and ["tracing", "sampleRate"] not in overridden:
        _set(raw, ["tracing", "sampleRate"], rate)


def _exporter_on(otlp: Any, kind: str) -> bool:
    """An OTLP exporter section is given and not switched off (`enabled: false`, `false`)."""
    section = _ci_get(otlp, kind)
    if section is None or str(section).strip().lower() == "false":
        return False
    enabled = _ci_get(section, "enabled")
    return enabled is None or str(enabled).strip().lower() not in ("false", "0")


def _otel_env(raw: dict[str, Any], environ: Mapping[str, str], errors: list[str]) -> None:
    """The standard OTEL_* variables fill in only what no explicit setting gave."""
    if not _tracing_switched_on(raw):
        return
    tracing = _ci_get(raw, "tracing")

    def env(name: str) -> str:
        return (
            environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}")
            or environ.get(f"OTEL_EXPORTER_OTLP_{name}")
            or ""
        ).strip()

    otlp = _ci_get(tracing, "otlp") or {}
    has_grpc, has_http = _exporter_on(otlp, "grpc"), _exporter_on(otlp, "http")
    protocol = env("PROTOCOL")
    if protocol not in ("", "grpc", "http/protobuf"):
        errors.append(
            f"environment OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported: "
            "expected grpc or http/protobuf"
        )
        return
    kind = "http" if has_http or (not has_grpc and protocol == "http/protobuf") else "grpc"
    base = ("tracing", "otlp", kind)
    if not (has_grpc or has_http):
        _set(raw, list(base), {})
    traces_endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    endpoint = traces_endpoint or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if endpoint and _ci_get(raw, *base, "endpoint") is None:
        if kind == "http":
            if not traces_endpoint:  # the generic variable names the base URL
                endpoint = endpoint.rstrip("/") + "/v1/traces"
            _set(raw, [*base, "endpoint"], endpoint)
        else:
            scheme, sep, rest = endpoint.partition("://")
            _set(raw, [*base, "endpoint"], (rest if sep else endpoint).rstrip("/"))
            if sep and _ci_get(raw, *base, "insecure") is None:
                _set(raw, [*base, "insecure"], scheme == "http")
    if kind == "grpc" and env("INSECURE"):
        _ci_set_default(raw, (*base, "insecure"), env("INSECURE").lower() in TRUTHY)
    headers = env("HEADERS")
    if headers and _ci_get(raw, *base, "headers") is None:
        parsed = {}
        for item in headers.split(","):
            k, sep, v = item.partition("=")
            if not sep or not k.strip():
                errors.append("environment OTEL_EXPORTER_OTLP_HEADERS: expected key=value,...")
                break
            parsed[unquote(k.strip()).lower()] = unquote(v.strip())
        _set(raw, [*base, "headers"], parsed)
    for var, key in (("CERTIFICATE", "ca"), ("CLIENT_CERTIFICATE", "cert"), ("CLIENT_KEY", "key")):
        if env(var) and not (kind == "grpc" and _ci_get(raw, *base, "insecure") is True):
            _ci_set_default(raw, (*base, "tls", key), env(var))
    if env("COMPRESSION"):
        _ci_set_default(raw, (*base, "compression"), env("COMPRESSION"))
    if env("TIMEOUT"):
        _ci_set_default(raw, (*base, "timeout"), f"{env('TIMEOUT')}ms")
    propagators = [p.strip() for p in environ.get("OTEL_PROPAGATORS", "").split(",") if p.strip()]
    if propagators:
        _ci_set_default(raw, ("tracing", "propagators"), propagators)
    if environ.get("OTEL_SERVICE_NAME", "").strip():
        _ci_set_default(raw, ("tracing", "serviceName"), environ["OTEL_SERVICE_NAME"].strip())
    for item in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        k, sep, v = item.partition("=")
        if sep and k.strip():
            _ci_set_default(
                raw, ("tracing", "resourceAttributes", unquote(k.strip())), unquote(v.strip())
            )
    for var, key, unit in (
        ("SCHEDULE_DELAY", "scheduleDelay", "ms"),
        ("MAX_QUEUE_SIZE", "maxQueueSize", ""),
        ("MAX_EXPORT_BATCH_SIZE", "maxExportBatchSize", ""),
        ("EXPORT_TIMEOUT", "exportTimeout", "ms"),
    ):
        value = environ.get(f"OTEL_BSP_{var}", "").strip()
        if value:
            _ci_set_default(raw, ("tracing", "batch", key), value + unit)


def load(
    path: str | None,
    flags: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    checks: Sequence[Callable[[Config], list[str]]] = (),
    snapshots: Sequence[str] = (),
    quiet: bool = False,
) -> Config:
    """Load and validate; raise ConfigError with every problem found.  ``checks``: more
    checks of the built Config, by the runtime's compilers (``hopwire.checks.CHECKS``);
    ``snapshots``: the Kubernetes providers' files (those that exist), merged as dynamic
    files; ``quiet``: what waits for a Kubernetes object is not logged (a provider's own
    reading of the rest of the configuration)."""
    errors: list[str] = []
    raw: dict[str, Any] = read_file(path) if path else {}
    environ = os.environ if environ is None else environ
    overridden: list[list[str | int]] = []  # keys set by HOPWIRE_* variables and flags
    for name in sorted(environ):
        if not name.startswith("HOPWIRE_") or name == "HOPWIRE_CONFIG":
            continue
        segments = [s.lower() for s in name[len("HOPWIRE_") :].split("_") if s]
        resolved = _resolve(segments, f"environment {name}", errors)
        if resolved is not None:
            _set(raw, resolved, environ[name])
            overridden.append(resolved)
    for flag in flags or []:
        body = flag[2:] if flag.startswith("--") else flag
        name, sep, value = body.partition("=")
        resolved = _resolve(_flag_segments(name), f"flag --{name}", errors)
        if resolved is not None:
            _set(raw, resolved, value if sep else "true")
            overridden.append(resolved)
    _proxy_tracing_env(raw, environ, overridden, errors)
    _otel_env(raw, environ, errors)
    provider = _ci_get(raw, "providers", "file")
    if isinstance(provider, dict):
        try:
            paths = provider_paths(
                str(_ci_get(provider, "filename") or ""), str(_ci_get(provider, "directory") or "")
            )
        except ConfigError as exc:
            errors.extend(exc.errors)
        else:
            merge_dynamic(raw, paths, errors)
    merge_dynamic(raw, [p for p in snapshots if os.path.exists(p)], errors)
    _drop_provider_suffixes(raw)
    if any(_ci_get(raw, "providers", name) is not None for name in KUBERNETES_PROVIDERS):
        for line in wait_for_kubernetes(raw):
            if not quiet:
                log.warning("%s", line)
    config = build_struct(Config, raw, "", errors)
    if not errors:
        config = with_defaults(config)
        errors.extend(validate(config))
        for check in checks:
            errors.extend(check(config))
    if errors:
        raise ConfigError(errors)
    return typing.cast(Config, config)
