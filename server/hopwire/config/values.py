"""Value parsers and checks of single settings.

A parser raises ValueError with the expectation when a value does not fit; a check returns None
when the (already typed) value is fine, else what was expected.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

REQUIRED: Any = object()  # sentinel default: the key must be given
DURATION = "duration"  # the `kind` of a setting given as 10s, 250ms, 1m30s or plain seconds

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """``10s``, ``250ms``, ``1m30s``, ``1h`` or plain seconds (int, float or numeric string)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10s, 250ms, 1m or plain seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for m in _DURATION_PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise ValueError("expected a duration such as 10s, 250ms, 1m or plain seconds")
    if seconds < 0:
        raise ValueError("expected a duration that is not negative")
    return seconds


def parse_address(value: str) -> tuple[str, int]:
    """``:8080`` (all interfaces), ``127.0.0.1:8080``, ``[::1]:8080`` or ``name:8080``."""
    text = value.strip()
    if text.endswith("/tcp"):
        text = text[:-4]
    expect = "expected [host]:port such as :8080, 127.0.0.1:8080 or [::1]:8080"
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(expect)
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(expect)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(expect)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(expect + " (port 1-65535)")
    return host, int(port_text)


def check_address(value: str) -> str | None:
    try:
        parse_address(value)
    except ValueError as exc:
        return str(exc)
    return None


def check_server_url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "expected an http://, https:// or h2c:// URL with a valid port"
    if parts.scheme not in ("http", "https", "h2c") or not parts.hostname:
        return "expected an http://, https:// or h2c:// URL such as http://10.0.0.5:8080"
    if parts.username or parts.password:
        return "credentials in a server URL are not supported"
    if parts.query or parts.fragment:
        return "a server URL takes no query or fragment"
    del port
    return None


def check_cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return "expected an IP address or CIDR range such as 10.0.0.0/8"
    return None


def positive(value: float) -> str | None:
    return None if value > 0 else "expected a value greater than 0"


def not_negative(value: float) -> str | None:
    return None if value >= 0 else "expected a value of 0 or more"


def one_of(*choices: str) -> Any:
    def check(value: str) -> str | None:
        return None if value in choices else "expected one of " + ", ".join(choices)

    return check


def status_code(value: int) -> str | None:
    return None if value == 0 or 100 <= value <= 599 else "expected an HTTP status code (100-599)"


PROPAGATORS = ("tracecontext", "baggage", "b3", "b3multi", "none")


def check_propagator(value: str) -> str | None:
    """One of OTEL_PROPAGATORS' names that hopwire speaks."""
    if value not in PROPAGATORS:
        return f"not a propagator hopwire speaks ({', '.join(PROPAGATORS)})"
    return None


def propagators_problem(value: tuple[str, ...]) -> str | None:
    """What is wrong with a list of propagators as a whole: ``none`` stands alone, one B3."""
    if "none" in value and len(value) > 1:
        return "none stands alone"
    if "b3" in value and "b3multi" in value:
        return "b3 or b3multi, not both"
    return None


def check_rate(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else "expected a probability between 0 and 1"


def check_host_port(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        return "expected host:port such as localhost:4317"
    return None


def check_http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL such as http://localhost:4318/v1/traces"
    return None


def check_status_range(value: str) -> str | None:
    low, _, high = value.partition("-")
    if not low.isdigit() or (high and not high.isdigit()) or (high and int(high) < int(low)):
        return "expected a status code or a range such as 200, 500-599"
    return None


def check_status_ranges(value: str) -> str | None:
    """Traefik's status list item: "500", "500,502", "404,500-599" (codes within 100-599)."""
    for item in value.split(","):
        low, _, high = item.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            return "expected status codes or ranges such as 500, 500,502 or 500-599"
        if not 100 <= int(low) <= int(high or low) <= 599:
            return f"{item.strip()!r}: expected codes within 100-599, the lower first"
    return None


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_field_name(value: str) -> str | None:
    """An HTTP field name (RFC 9110 §5.1: a token)."""
    return None if _TOKEN.fullmatch(value) else "expected a header name such as X-Request-Id"
