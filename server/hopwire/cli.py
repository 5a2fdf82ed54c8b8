"""The ``hopwire`` command.

    hopwire [--config FILE] [--check] [--version] [--help-config] [--key.sub=value ...]

Every ``--dotted.key=value`` flag overrides the file and ``HOPWIRE_*`` variables.  A bad config
prints every problem and exits 2.
"""

from __future__ import annotations

import os
import sys

from hopwire import __version__
from hopwire.config import ConfigError
from hopwire.config.reference import markdown, reference

USAGE = """usage: hopwire [--config FILE] [--check] [--version] [--help-config] [--key.sub=value ...]

  --config FILE    YAML (.yml/.yaml) or TOML (.toml) configuration (or $HOPWIRE_CONFIG)
  --check          validate the configuration, print "ok" or every error, exit 0 or 2
  --version        print the version
  --help-config    print every configuration key with its default (--markdown: as a table)
  --KEY=VALUE      override a key, e.g. --entryPoints.web.address=:8080 --workers=4
"""


# the compiled parts of the request path, which have no interpreted stand-in (their Python
# references are for the tests only): module -> what it is
REQUEST_PATH_MODULES = {
    "hopwire.http._head": "head scans",
    "hopwire.telemetry._context": "trace context",
    "hopwire.telemetry._meter": "metrics observer",
    "hopwire.http._h2": "HTTP/2 codec",
}


def compiled_request_path() -> str:
    """ "" when the compiled parts of the request path are importable, else why not."""
    import importlib

    for name, what in REQUEST_PATH_MODULES.items():
        try:
            importlib.import_module(name)
        except ImportError as exc:
            return (
                f"the compiled {what} {name} are not installed ({exc}): "
                "reinstall hopwire where gcc and the Python headers are present "
                "(deploy/build-deps.sh)"
            )
    return ""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    missing = compiled_request_path()
    if missing:
        print(f"hopwire: {missing}", file=sys.stderr)
        return 1
    path = os.environ.get("HOPWIRE_CONFIG") or None
    check = False
    flags: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            print(USAGE, end="")
            return 0
        if arg == "--version":
            from hopwire.http._h2 import LIBRARY
            from hopwire.telemetry.otlp import compiled_encoder

            built = "c (compiled), python" if not compiled_encoder() else "python (c not built)"
            print(
                f"hopwire {__version__}\nOTLP span encoders: {built}\n"
                "head scans: c (compiled, hopwire.http._head)\n"
                "trace context: c (compiled, hopwire.telemetry._context)\n"
                f"HTTP/2 codec: libnghttp2 {LIBRARY} (hopwire.http._h2)"
            )
            return 0
        if arg == "--help-config":
            print(markdown() if "--markdown" in args else reference())
            return 0
        if arg == "--check":
            check = True
        elif arg == "--config" or arg.startswith("--config="):
            if "=" in arg:
                path = arg.split("=", 1)[1]
            elif i + 1 < len(args):
                i += 1
                path = args[i]
            else:
                print("hopwire: --config needs a file", file=sys.stderr)
                return 2
        elif arg.startswith("--") and len(arg) > 2:
            flags.append(arg)
        else:
            print(f"hopwire: unexpected argument {arg!r}\n{USAGE}", file=sys.stderr, end="")
            return 2
        i += 1

    from hopwire import checks

    environ = dict(os.environ)
    try:
        config = checks.load(path, flags, environ)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"hopwire: config error: {line}", file=sys.stderr)
        return 2
    if check:
        print("ok")
        return 0
    from hopwire.arbiter import Source, run

    return run(config, Source(path, flags, environ))
