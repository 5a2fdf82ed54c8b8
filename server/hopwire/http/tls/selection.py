"""Which TLS options a handshake gets: the entrypoint's TLS routers, and the options-by-SNI
chooser made from their ``Host()`` rules (as Traefik chooses them).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from hopwire.http.tls.certificates import Store
from hopwire.http.tls.options import DEFAULT_OPTIONS

log = logging.getLogger("hopwire.tls")


class Chooser:
    """One TLS entrypoint's choice of context: options by SNI (its TLS routers' Host rules),
    then the certificate by SNI.  Decisions are cached per server name, bounded."""

    CACHE_MAX = 10_000

    def __init__(
        self,
        store: Store,
        hosts: Mapping[str, str],
        patterns: list[tuple[re.Pattern[str], str]],
        default: str,
    ):
        self.store = store
        self.hosts = hosts  # exact host -> options name
        self.patterns = patterns  # HostRegexp -> options name
        self.default = default  # the entrypoint's http.tls.options, else "default"
        self.cache: dict[str | None, Any] = {}

    def options_for(self, sni: str | None) -> str:
        if sni:
            name = self.hosts.get(sni)
            if name is not None:
                return name
            for pattern, name in self.patterns:
                if pattern.search(sni):
                    return name
        return self.default

    def context(self, sni: str | None) -> Any:
        """The context of a handshake, or None when sniStrict refuses it."""
        try:
            return self.cache[sni]
        except KeyError:
            pass
        store = self.store
        options = self.options_for(sni)
        index = store.certificate_index(sni)
        if index is None and options in store.strict:
            ctx = None
        else:
            ctx = store.contexts[(options, -1 if index is None else index)]
        if len(self.cache) >= self.CACHE_MAX:
            self.cache.clear()
        self.cache[sni] = ctx
        return ctx


def rule_hosts(rule: str) -> tuple[list[str], list[str]]:
    """The hosts a router's rule names in ``Host()`` and ``HostRegexp()`` (outside a ``!``)."""
    from hopwire.routing import And, Call, Or, parse_rule

    hosts: list[str] = []
    patterns: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Call):
            if node.name.lower() == "host":
                hosts.extend(a.lower() for a in node.args)
            elif node.name.lower() == "hostregexp":
                patterns.extend(node.args)
        elif isinstance(node, (And, Or)):
            for child in node.operands:
                walk(child)

    walk(parse_rule(rule))
    return hosts, patterns


def entrypoint_tls(config: Any, ep_name: str) -> tuple[Any, list[tuple[str, Any]]] | None:
    """(the entrypoint's http.tls or None, [(router name, its TLS settings)]) for an
    entrypoint that terminates TLS, else None."""
    from hopwire.config.schema import INTERNAL_ENTRYPOINT

    ep = config.entryPoints[ep_name]
    user_eps = [n for n in config.entryPoints if n != INTERNAL_ENTRYPOINT]
    routers = []
    for name, router in config.http.routers.items():
        if ep_name in (router.entryPoints or user_eps):
            tls = router.tls if router.tls is not None else ep.http.tls
            if tls is not None:
                routers.append((name, tls))
    if ep.http.tls is None and not routers:
        return None
    return ep.http.tls, routers


def chooser_for(config: Any, store: Store, ep_name: str) -> Chooser:
    """The options-by-SNI map of a TLS entrypoint, from its TLS routers' Host rules.  A host
    two routers give different options gets the default ones, as in Traefik (logged)."""
    found = entrypoint_tls(config, ep_name)
    assert found is not None
    ep_tls, routers = found
    default = (ep_tls.options if ep_tls is not None else "") or DEFAULT_OPTIONS
    hosts: dict[str, str] = {}
    patterns: list[tuple[re.Pattern[str], str]] = []
    conflicts: set[str] = set()
    for router_name, tls in routers:
        options = tls.options or default
        names, regexps = rule_hosts(config.http.routers[router_name].rule)
        for host in names:
            if hosts.get(host, options) != options:
                conflicts.add(host)
            hosts[host] = options
        patterns += [(re.compile(p), options) for p in regexps]
    for host in sorted(conflicts):
        log.error(
            "entrypoint %s: routers give host %s different TLS options; it gets %r",
            ep_name,
            host,
            default,
        )
        hosts[host] = default
    return Chooser(store, hosts, patterns, default)


def needs_tls(config: Any) -> bool:
    return any(entrypoint_tls(config, name) is not None for name in config.entryPoints)
