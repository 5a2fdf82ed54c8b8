"""The atheris entry point: ``python -m tests.fuzz.entry request|response|h2 CORPUS [libFuzzer
flags]`` (``tests.fuzz.run`` builds the command)."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["hopwire"]):  # coverage of the request path
    import hopwire.balancer
    import hopwire.errors
    import hopwire.http.downstream
    import hopwire.http.h2
    import hopwire.http.head
    import hopwire.http.path
    import hopwire.http.pool
    import hopwire.http.upstream
    import hopwire.proxy
    import hopwire.routing  # noqa: F401

from tests.fuzz import targets


def main() -> None:
    target = sys.argv.pop(1)
    one = {
        "request": targets.request_input,
        "response": targets.response_input,
        "h2": targets.h2_input,
    }[target]
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
