"""Traefik's HTTP middlewares, compiled once per config generation into a route (DESIGN §7).

A route's pipeline is two tuples: request stages (``stage(ex) -> bool``, called in order
after routing and before a server is picked; True means the stage answered the request itself
through the exchange's one ending) and response stages (``stage(ex, fields) -> fields``,
called in order on the backend's response fields before they are written).  A route with no
middleware has two empty tuples and the request path does not look further.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hopwire.middlewares import access, headers, limits, paths, redirect

RequestStage = Callable[[Any], bool]
ResponseStage = Callable[[Any, list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]]
TYPES = (
    "headers",
    "stripPrefix",
    "stripPrefixRegex",
    "addPrefix",
    "replacePath",
    "replacePathRegex",
    "redirectScheme",
    "redirectRegex",
    "ipAllowList",
    "basicAuth",
    "rateLimit",
    "chain",
)


def kind_of(middleware: Any) -> list[str]:
    """The types set in one middleware (exactly one is valid)."""
    return [t for t in TYPES if getattr(middleware, t) is not None]


def expand(
    names: Iterable[str], defined: Mapping[str, Any], seen: tuple[str, ...] = ()
) -> list[str]:
    """The names of a router's middlewares with every chain replaced by its members."""
    out: list[str] = []
    for name in names:
        if name in seen:
            raise ValueError(f"chain loop: {' -> '.join((*seen, name))}")
        mw = defined[name]
        if mw.chain is not None:
            out += expand(mw.chain.middlewares, defined, (*seen, name))
        else:
            out.append(name)
    return out


def compile_stages(
    names: Iterable[str], defined: Mapping[str, Any], shared: Mapping[str, Any] | None = None
) -> tuple[tuple[RequestStage, ...], tuple[ResponseStage, ...]]:
    """``shared``: the generation's state shared by the workers (limits.shared_state)."""
    requests: list[RequestStage] = []
    responses: list[ResponseStage] = []
    for name in expand(names, defined):
        mw = defined[name]
        if mw.headers is not None:
            stage = headers.request_stage(mw.headers)
            if stage is not None:
                requests.append(stage)
            out = headers.response_stage(mw.headers)
            if out is not None:
                responses.append(out)
        elif mw.stripPrefix is not None:
            requests.append(paths.strip_prefix(mw.stripPrefix.prefixes))
        elif mw.addPrefix is not None:
            requests.append(paths.add_prefix(mw.addPrefix.prefix))
        elif mw.replacePath is not None:
            requests.append(paths.replace_path(mw.replacePath.path))
        elif mw.replacePathRegex is not None:
            cfg = mw.replacePathRegex
            requests.append(paths.replace_path_regex(cfg.regex, cfg.replacement))
        elif mw.stripPrefixRegex is not None:
            requests.append(paths.strip_prefix_regex(mw.stripPrefixRegex.regex))
        elif mw.redirectScheme is not None:
            cfg = mw.redirectScheme
            requests.append(redirect.scheme_redirect(cfg.scheme, cfg.port, cfg.permanent))
        elif mw.ipAllowList is not None:
            requests.append(access.ip_allow_list(mw.ipAllowList))
        elif mw.basicAuth is not None:
            requests.append(access.basic_auth(mw.basicAuth))
        elif mw.rateLimit is not None:
            if shared is not None and name in shared:  # average 0: no limit, no stage
                limiter = limits.RateLimit(name, mw.rateLimit, shared[name])
                limiter.next = len(requests) + 1
                requests.append(limiter)
        elif mw.redirectRegex is not None:
            cfg = mw.redirectRegex
            requests.append(redirect.regex_redirect(cfg.regex, cfg.replacement, cfg.permanent))
    # response stages run in reverse, as Traefik's wrapped handlers modify a response
    return tuple(requests), tuple(reversed(responses))
