"""A configuration loaded and checked as hopwire runs it: the composition root of the checks.

``hopwire.config`` knows the schema and checks what it can see alone (types, references
between sections, files).  What only the runtime's own compilers can judge is checked beside
them, and composed here, once, for the command line, the arbiter's start and reload, and the
live reload of the file provider:

    routing.check               every rule parses
    middlewares.check.check     one type per middleware, options, names, no chain loop
    http.tls.check              certificates, keys, TLS options, backend client certificates
    telemetry.otlp.check        the span encoder asked for is installed
    kube.api.check              a Kubernetes provider has an API server and its CA file
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from hopwire import config as config_mod
from hopwire import routing
from hopwire.config import Config
from hopwire.http import tls
from hopwire.kube import api as kube
from hopwire.middlewares import check as middlewares
from hopwire.telemetry import otlp

Check = Callable[[Config], list[str]]

CHECKS: Sequence[Check] = (routing.check, middlewares.check, tls.check, otlp.check, kube.check)


def load(
    path: str | None,
    flags: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    snapshots: Sequence[str] = (),
    quiet: bool = False,
) -> Config:
    """Read the sources, build the Config and check it; raise ConfigError with every
    problem found (the command line's exit 2, a reload's rejection).  ``snapshots``: the
    Kubernetes providers' files, merged as the file provider's are."""
    return config_mod.load(path, flags, environ, CHECKS, snapshots, quiet)


def validate(config: Config) -> list[str]:
    """Every problem of a Config built in memory (a reload's merged configuration)."""
    errors = config_mod.validate(config)
    for check in CHECKS:
        errors += check(config)
    return errors
