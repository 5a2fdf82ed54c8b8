"""The TLS of one config generation: every certificate read and every context made in the
master before the workers fork (``build``), or every problem found (``check``).
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

from hopwire.http.tls.certificates import (
    Certificate,
    Store,
    TLSError,
    read_certificate,
    self_signed,
)
from hopwire.http.tls.options import (
    DEFAULT_OPTIONS,
    VERSIONS,
    _default_options,
    _explain,
    check_options,
    make_context,
)
from hopwire.http.tls.selection import needs_tls

log = logging.getLogger("hopwire.tls")


def _certificates(config: Any, errors: list[str]) -> tuple[list[Certificate], Any]:
    """The configured certificates, and the default one (None: to be made)."""
    tls = config.tls
    certs: list[Certificate] = []
    for i, entry in enumerate(tls.certificates):
        try:
            certs.append(read_certificate(entry.certFile, entry.keyFile, f"tls.certificates[{i}]"))
        except TLSError as exc:
            errors += exc.errors
    store_cfg = tls.stores.get("default")
    default_cfg = store_cfg.defaultCertificate if store_cfg is not None else None
    default = None
    if default_cfg is not None:
        try:
            default = read_certificate(
                default_cfg.certFile, default_cfg.keyFile, "tls.stores.default.defaultCertificate"
            )
        except TLSError as exc:
            errors += exc.errors
    return certs, default


def all_options(config: Any) -> dict[str, Any]:
    options = dict(config.tls.options)
    options.setdefault(DEFAULT_OPTIONS, _default_options())
    return options


def check(config: Any) -> list[str]:
    """Every problem of the TLS configuration (``hopwire.checks``): the backends' client
    certificates and versions, then, with a TLS entrypoint, the files, keys and options."""
    errors: list[str] = []
    for key, tr in config.transports():
        for i, files in enumerate(tr.certificates):
            try:
                read_certificate(files.certFile, files.keyFile, f"{key}.certificates[{i}]")
            except TLSError as exc:
                errors += exc.errors
        if tr.maxVersion and VERSIONS[tr.maxVersion] < VERSIONS[tr.minVersion]:
            errors.append(f"{key}.maxVersion: {tr.maxVersion} is below minVersion")
    if errors or not needs_tls(config):
        return errors
    _certificates(config, errors)
    for name, opt in all_options(config).items():
        errors += check_options(name, opt)
    return errors


def build(config: Any, runtime_dir: str | None = None) -> Store | None:
    """Read every certificate and make every context of this config; None without TLS
    entrypoints.  Raise TLSError with every problem (start: exit 2; reload: old kept)."""
    if not needs_tls(config):
        return None
    errors: list[str] = []
    certs, default_cert = _certificates(config, errors)
    options = all_options(config)
    for name, opt in options.items():
        errors += check_options(name, opt)
    if errors:
        raise TLSError(errors)
    with tempfile.TemporaryDirectory(prefix="hopwire-tls-", dir=runtime_dir) as tmp:
        default = default_cert if default_cert is not None else self_signed(tmp)
        contexts: dict[tuple[str, int], Any] = {}
        for name, opt in options.items():
            key = f"tls.options.{name}"
            for index, cert in [*enumerate(certs), (-1, default)]:
                contexts[(name, index)] = make_context(opt, cert, key, errors)
    if errors:
        raise TLSError(sorted(set(errors)))
    for name, opt in options.items():
        _explain(name, opt)
    return Store(certs, default, options, contexts)
