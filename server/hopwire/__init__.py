"""hopwire: a multi-process HTTP/1.1 reverse proxy on uvloop and httptools."""

__version__ = "0.1.0"
