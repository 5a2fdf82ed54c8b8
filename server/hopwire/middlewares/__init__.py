"""Traefik's HTTP middlewares, compiled once per config generation into a route (DESIGN §7).

A route's pipeline is a tuple of request stages (``stage(ex) -> bool``, called in order after
routing and before a server is picked; True means the stage answered the request itself
through the exchange's one ending, or holds it and resumes later) and a ``ResponseEdit``: the
backend fields the middlewares replace are skipped in the one pass that already drops the
hop-by-hop ones, and their own fields are appended.  A route with no middleware has an empty
tuple and no edit, and the request path does not look further.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hopwire.contracts import ExchangeView, WorkerState
from hopwire.middlewares import (
    access,
    bodies,
    errorpages,
    forward,
    headers,
    limits,
    paths,
    redirect,
)
from hopwire.middlewares import retry as retries

Fields = list[tuple[bytes, bytes]]
RequestStage = Callable[[Any], bool]
Step = tuple[frozenset[bytes], Callable[[Any, Fields], Fields]]


class ResponseEdit:
    """The response side of a route's middlewares: ``skip`` (HOP_BY_HOP and every name they
    replace, for ``head.response_fields``), ``extend``, which appends their fields, and
    ``bodies``: factories of the filters that hold the body (``open(ex, headers)`` gives one
    for this response, or None), innermost first."""

    __slots__ = ("bodies", "skip", "steps")

    def __init__(self, steps: list[Step], bodies: list[Any] | None = None):
        from hopwire.http.wire import HOP_BY_HOP

        self.steps = steps
        self.bodies = bodies or []
        self.skip = HOP_BY_HOP.union(*(drop for drop, _ in steps))

    def extend(self, ex: ExchangeView, parts: list[bytes], backend: Fields) -> None:
        steps = self.steps
        if not steps:
            return
        if len(steps) == 1:
            fields = steps[0][1](ex, backend)
        else:  # inner first: an outer middleware replaces what an inner one set
            merged: dict[bytes, list[tuple[bytes, bytes]]] = {}
            for drop, make in steps:
                for name in drop:
                    merged.pop(name, None)
                mine: dict[bytes, list[tuple[bytes, bytes]]] = {}
                for name, value in make(ex, backend):
                    mine.setdefault(name.lower(), []).append((name, value))
                merged.update(mine)
            fields = [f for group in merged.values() for f in group]
        for name, value in fields:
            parts += (name, b": ", value, b"\r\n")

    def open_filters(self, ex: ExchangeView, headers: Fields) -> Any:
        """The chain of body filters for this response (None: the body passes as it is)."""
        first = None
        last = None
        for factory in self.bodies:
            f = factory.open(ex, headers)
            if f is None:
                continue
            if last is None:
                first = f
            else:
                last.next = f
            last = f
        return first


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
    "inFlightReq",
    "buffering",
    "compress",
    "retry",
    "forwardAuth",
    "errors",
    "chain",
)


def kind_of(middleware: Any) -> list[str]:
    """The types set in one middleware (exactly one is valid)."""
    return [t for t in TYPES if getattr(middleware, t) is not None]


# the name of each middleware kind's span (tracing's detailed verbosity), as Traefik's
SPAN_NAMES = {
    "headers": "Headers",
    "stripPrefix": "StripPrefix",
    "stripPrefixRegex": "StripPrefixRegex",
    "addPrefix": "AddPrefix",
    "replacePath": "ReplacePath",
    "replacePathRegex": "ReplacePathRegex",
    "redirectScheme": "RedirectScheme",
    "redirectRegex": "RedirectRegex",
    "ipAllowList": "IPAllowLister",
    "basicAuth": "BasicAuth",
    "rateLimit": "RateLimiter",
    "inFlightReq": "InFlightReq",
    "buffering": "Buffer",
    "compress": "Compress",
    "retry": "Retry",
    "forwardAuth": "ForwardAuth",
    "errors": "CustomError",
}


def span_name(mw: Any) -> str:
    """The span name of a (non-chain) middleware: its kind's, as Traefik names it."""
    for kind, name in SPAN_NAMES.items():
        if getattr(mw, kind, None) is not None:
            return name
    return "Middleware"


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


def _needs(worker: WorkerState | None, name: str) -> WorkerState:
    """The worker a middleware that makes its own calls runs in (forwardAuth, errors, a
    Redis rate limit)."""
    if worker is None:
        raise ValueError(f"http.middlewares.{name}: its calls need a worker to run in")
    return worker


def compile_stages(
    names: Iterable[str],
    defined: Mapping[str, Any],
    shared: Mapping[str, Any] | None = None,
    worker: WorkerState | None = None,
    owners: list[int] | None = None,
) -> tuple[tuple[RequestStage, ...], ResponseEdit | None]:
    """``shared``: the generation's state shared by the workers (limits.shared_state);
    ``worker``: the worker whose services and loop forwardAuth and errors use; ``owners``,
    when given, receives for each request stage the index of its middleware in
    ``expand(names)`` (tracing's detailed spans)."""
    requests: list[RequestStage] = []
    responses: list[Step] = []
    filters: list[Any] = []
    for index, name in enumerate(expand(names, defined)):
        if owners is not None:
            owners += [index - 1] * (len(requests) - len(owners))  # the previous one's
        mw = defined[name]
        if mw.buffering is not None:
            buffering = bodies.Buffering(mw.buffering)
            buffering.next = len(requests) + 1
            requests.append(buffering)
            filters.append(buffering)
        elif mw.compress is not None:
            filters.append(bodies.Compress(mw.compress))
        elif mw.retry is not None:
            if mw.retry.attempts > 1:
                retry = retries.Retry(mw.retry)
                retry.next = len(requests) + 1
                requests.append(retry)
        elif mw.forwardAuth is not None:
            auth = forward.ForwardAuth(name, mw.forwardAuth, _needs(worker, name))
            auth.next = len(requests) + 1
            requests.append(auth)
            cookies = auth.response_step()
            if cookies is not None:
                responses.append(cookies)
        elif mw.errors is not None:
            filters.append(
                errorpages.ErrorPages(
                    name, mw.errors, _needs(worker, name).services[mw.errors.service]
                )
            )
        elif mw.headers is not None:
            stage = headers.request_stage(mw.headers)
            if stage is not None:
                requests.append(stage)
            step = headers.response_step(mw.headers)
            if step is not None:
                responses.append(step)
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
        elif mw.rateLimit is not None and mw.rateLimit.redis is not None:
            if mw.rateLimit.average > 0:
                from hopwire.middlewares.redislimit import RedisRateLimit

                shared_limit = RedisRateLimit(name, mw.rateLimit, _needs(worker, name))
                shared_limit.next = len(requests) + 1
                requests.append(shared_limit)
        elif mw.rateLimit is not None:
            if shared is not None and name in shared:  # average 0: no limit, no stage
                limiter = limits.RateLimit(name, mw.rateLimit, shared[name])
                limiter.next = len(requests) + 1
                requests.append(limiter)
        elif mw.inFlightReq is not None:
            if shared is not None and name in shared:  # amount 0: no limit, no stage
                requests.append(limits.InFlight(name, mw.inFlightReq, shared[name]))
        elif mw.redirectRegex is not None:
            cfg = mw.redirectRegex
            requests.append(redirect.regex_redirect(cfg.regex, cfg.replacement, cfg.permanent))
    if owners is not None:
        owners += [len(expand(names, defined)) - 1] * (len(requests) - len(owners))
    # the innermost middleware modifies a response first, as Traefik's wrapped handlers do
    if not responses and not filters:
        return tuple(requests), None
    return tuple(requests), ResponseEdit(responses[::-1], filters[::-1])
