"""The compiled part of hopwire: the OTLP span and log-record encoders (DESIGN §3), the
request path's head scans and its trace context lines, the access log's default JSON line.

Everything else is in pyproject.toml.  The extension is required, not optional: an install
where it cannot be compiled fails (the compiler and Python headers are part of the set-up).
``tracing.encoder: python`` runs the reference encoder instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "hopwire.telemetry._otlp",
            ["server/hopwire/telemetry/_otlp.c"],
            depends=["server/hopwire/telemetry/_cbuf.h"],
            extra_compile_args=["-O2", "-Wall", "-Werror=implicit-function-declaration"],
        ),
        Extension(
            "hopwire.telemetry._context",
            ["server/hopwire/telemetry/_context.c"],
            depends=["server/hopwire/telemetry/_cbuf.h"],
            extra_compile_args=["-O2", "-Wall", "-Werror=implicit-function-declaration"],
        ),
        Extension(
            "hopwire.telemetry._accesslog",
            ["server/hopwire/telemetry/_accesslog.c"],
            depends=["server/hopwire/telemetry/_cbuf.h"],
            extra_compile_args=["-O2", "-Wall", "-Werror=implicit-function-declaration"],
        ),
        Extension(
            "hopwire.telemetry._meter",
            ["server/hopwire/telemetry/_meter.c"],
            depends=["server/hopwire/telemetry/_cbuf.h"],
            extra_compile_args=["-O2", "-Wall", "-Werror=implicit-function-declaration"],
        ),
        Extension(
            "hopwire.http._h2",
            ["server/hopwire/http/_h2.c"],
            libraries=["nghttp2"],
            extra_compile_args=["-O2", "-Wall", "-Werror=implicit-function-declaration"],
        ),
        Extension(
            "hopwire.http._head",
            ["server/hopwire/http/_head.c"],
            extra_compile_args=["-O2", "-Wall", "-Werror=implicit-function-declaration"],
        ),
    ]
)
