"""Tracing, metrics and logging.  The request path reaches them only through ``Observer``."""
