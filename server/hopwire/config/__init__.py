"""Configuration: one declarative schema for file, command line, environment and docs.

    schema     the frozen dataclasses: every key, its default, its documentation, its check
    values     parsers and checks of single values (durations, addresses, URLs, ranges)
    sources    the file, HOPWIRE_* variables, --dotted.flags, PROXY_TRACING_* and OTEL_*
    validate   raw mapping -> typed Config, and the checks across sections
    reference  the generated reference table (``hopwire --help-config``, docs/reference.md)

A config is frozen after load.  A bad value stops start-up with exit code 2 and a message that
names the key, the value and what was expected; on reload the old config keeps serving.
"""

from hopwire.config.reference import reference
from hopwire.config.schema import *  # noqa: F403 (the schema classes are the package's API)
from hopwire.config.schema import INTERNAL_ADDRESS, INTERNAL_ENTRYPOINT, Config
from hopwire.config.sources import load, read_file
from hopwire.config.validate import ConfigError, validate
from hopwire.config.values import parse_address, parse_duration

__all__ = [
    "INTERNAL_ADDRESS",
    "INTERNAL_ENTRYPOINT",
    "Config",
    "ConfigError",
    "load",
    "parse_address",
    "parse_duration",
    "read_file",
    "reference",
    "validate",
]
