"""Who may pass: ``ipAllowList`` and ``basicAuth``, as Traefik's.

``ipAllowList`` reads the client address as Traefik's ipStrategy does: the connection's peer,
or with ``depth`` the depth-th address from the right of X-Forwarded-For, or with
``excludedIPs`` the rightmost one not excluded.  X-Forwarded-For here is only what a trusted
hop sent (``forwardedHeaders.trustedIPs``): an untrusted client's is dropped before routing, so
it cannot pick its own address.  A refused request gets ``rejectStatusCode`` (403) and the
status text.

``basicAuth`` checks ``Authorization: Basic`` against htpasswd users (bcrypt, SHA1, apr1,
MD5-crypt).  A bcrypt check costs milliseconds of CPU, so successful credentials are
remembered per worker (bounded): a keep-alive client pays once.  A refusal is 401 with
``WWW-Authenticate: Basic realm="..."``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable
from typing import Any

from hopwire.addresses import networks, within
from hopwire.contracts import ExchangeView
from hopwire.middlewares import htpasswd
from hopwire.middlewares.headers import field

Stage = Callable[[Any], bool]
CACHE_MAX = 10_000
AUTHORIZATION = b"authorization"


def _subnet(ip: str, bits: int | None) -> str:
    if bits is None:
        return ip
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if addr.version != 6:
        return ip
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False).network_address)


def client_ip(strategy: Any) -> Callable[[Any], str]:
    """The address a request is judged by, per Traefik's ipStrategy."""
    bits = strategy.ipv6Subnet if strategy is not None else None
    if strategy is None or (not strategy.depth and not strategy.excludedIPs):
        if bits is None:
            return lambda ex: ex.down.client_ip
        return lambda ex: _subnet(ex.down.client_ip, bits)
    if strategy.depth:
        depth = strategy.depth

        def by_depth(ex: ExchangeView) -> str:
            xffs = ex.fwd.get(b"x-forwarded-for", b"").decode("latin-1").split(",")
            if len(xffs) < depth:
                return ""
            return _subnet(xffs[len(xffs) - depth].strip(), bits)

        return by_depth
    excluded = networks(strategy.excludedIPs)

    def by_pool(ex: ExchangeView) -> str:
        xffs = ex.fwd.get(b"x-forwarded-for", b"").decode("latin-1").split(",")
        for value in reversed(xffs):
            ip = value.strip()
            if ip and not within(ip, excluded):
                return ip
        return ""

    return by_pool


def ip_allow_list(cfg: Any) -> Stage:
    import http

    allowed = networks(cfg.sourceRange)
    address = client_ip(cfg.ipStrategy)
    status = cfg.rejectStatusCode
    try:
        body = http.HTTPStatus(status).phrase.encode()  # Go's http.StatusText
    except ValueError:
        body = b""  # a status without a name: Go's text is empty too

    def stage(ex: ExchangeView) -> bool:
        ip = address(ex)
        if ip and within(ip, allowed):
            return False
        ex.respond_local(status, body)
        return True

    return stage


def read_users(users: tuple[str, ...], users_file: str) -> list[tuple[str, str]]:
    """(user, secret) pairs from ``users`` then ``usersFile``; ValueError names the bad one."""
    lines = [(f"users[{i}]", u) for i, u in enumerate(users)]
    if users_file:
        with open(users_file, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip() and not line.lstrip().startswith("#"):
                    lines.append((f"usersFile line {n}", line.strip()))
    out = []
    for where, line in lines:
        user, sep, secret = line.partition(":")
        if not sep or not user:
            raise ValueError(f"{where}: expected user:hash")
        if htpasswd.kind(secret) is None:
            raise ValueError(
                f"{where}: user {user!r}: unsupported hash (bcrypt $2y$, {{SHA}}, $apr1$ or $1$)"
            )
        out.append((user, secret))
    return out


def credentials(value: bytes) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic`` value, as Go's Request.BasicAuth."""
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        text = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


def basic_auth(cfg: Any) -> Stage:
    users = dict(read_users(cfg.users, cfg.usersFile))
    decoy = next(iter(users.values()))  # checked for unknown users too: no timing oracle
    realm = cfg.realm or "traefik"
    challenge = [b'WWW-Authenticate: Basic realm="' + realm.encode("latin-1") + b'"\r\n']
    header_field = cfg.headerField.encode("latin-1") if cfg.headerField else None
    remove = cfg.removeHeader
    passed: dict[bytes, str] = {}  # Authorization values that succeeded -> user

    def stage(ex: ExchangeView) -> bool:
        value = field(ex.kept, AUTHORIZATION)
        user = passed.get(value) if value is not None else None
        if user is None and value is not None:
            creds = credentials(value)
            if creds is not None:
                secret = users.get(creds[0])
                ok = htpasswd.check(creds[1], secret or decoy) and secret is not None
                if ok:
                    user = creds[0]
                    if len(passed) >= CACHE_MAX:
                        passed.clear()
                    passed[value] = user
        if user is None:
            ex.respond_local(401, b"401 Unauthorized\n", extra=challenge)
            return True
        if header_field is not None or remove:
            drop = {header_field.lower()} if header_field is not None else set()
            if remove:
                drop.add(AUTHORIZATION)
            ex.kept = [f for f in ex.kept if f[0].lower() not in drop]
            if header_field is not None:
                ex.kept.append((header_field, user.encode("utf-8")))
        return False

    return stage
