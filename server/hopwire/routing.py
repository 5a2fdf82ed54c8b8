"""Traefik v3 rule language, compiled once per config generation.

Grammar::

    expr   := and ('||' and)*
    and    := unary ('&&' unary)*
    unary  := '!' unary | '(' expr ')' | call
    call   := NAME '(' string (',' string)* ')'
    string := `...` | "..."

Matchers: Host, HostRegexp, Path, PathPrefix, PathRegexp, Method, Header, HeaderRegexp, Query,
QueryRegexp, ClientIP.  Each compiles to a closure over a request view with ``host`` (lower
case, no port), ``path``, ``method``, ``query``, ``headers`` (list of (lower-case name bytes,
value bytes)) and ``client_ip``.

Routers whose rule is a conjunction containing ``Host(x)`` are indexed by ``x``; each host's list
merges its own routers with the host-less ones in priority order, so routing a host-based
request costs one dict lookup plus the routers that can actually match it, however many other
hosts are configured.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

Matcher = Callable[[Any], bool]


class RuleError(ValueError):
    """A rule that does not parse; the message names the column (1-based)."""

    def __init__(self, message: str, column: int):
        super().__init__(f"column {column}: {message}")
        self.column = column


# ---------------------------------------------------------------------------------------------
# Parsing.

_TOKEN = re.compile(
    r"\s*(?:(?P<op>&&|\|\||!|\(|\)|,)|(?P<name>[A-Za-z]+)|(?P<str>`[^`]*`|\"(?:[^\"\\]|\\.)*\"))"
)


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[str, ...]
    column: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Any


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Any, ...]


_ARITY: dict[str, tuple[int, int]] = {
    "Host": (1, 1),
    "HostRegexp": (1, 1),
    "Path": (1, 1),
    "PathPrefix": (1, 1),
    "PathRegexp": (1, 1),
    "Method": (1, 1),
    "Header": (2, 2),
    "HeaderRegexp": (2, 2),
    "Query": (1, 2),
    "QueryRegexp": (2, 2),
    "ClientIP": (1, 1),
}


def _tokenize(rule: str) -> list[tuple[str, str, int]]:
    tokens = []
    pos = 0
    end = len(rule.rstrip())
    while pos < end:
        m = _TOKEN.match(rule, pos)
        if not m or m.end() == pos:
            col = pos + len(rule[pos:]) - len(rule[pos:].lstrip()) + 1
            raise RuleError(f"unexpected character {rule[col - 1]!r}", col)
        kind = m.lastgroup or ""
        start = m.start(kind) + 1
        tokens.append((kind, m.group(kind), start))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, rule: str):
        self.tokens = _tokenize(rule)
        self.i = 0
        self.end_col = len(rule.rstrip()) + 1

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", self.end_col)

    def take(self, value: str) -> None:
        kind, text, col = self.peek()
        if text != value or kind == "str":
            shown = "end of rule" if kind == "end" else repr(text)
            raise RuleError(f"expected {value!r}, found {shown}", col)
        self.i += 1

    def parse(self) -> Any:
        if not self.tokens:
            raise RuleError("empty rule", 1)
        node = self.expr()
        kind, text, col = self.peek()
        if kind != "end":
            raise RuleError(f"unexpected {text!r} (missing && or ||?)", col)
        return node

    def expr(self) -> Any:
        items = [self.conj()]
        while self.peek()[1] == "||" and self.peek()[0] == "op":
            self.i += 1
            items.append(self.conj())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conj(self) -> Any:
        items = [self.unary()]
        while self.peek()[1] == "&&" and self.peek()[0] == "op":
            self.i += 1
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Any:
        kind, text, col = self.peek()
        if kind == "op" and text == "!":
            self.i += 1
            return Not(self.unary())
        if kind == "op" and text == "(":
            self.i += 1
            node = self.expr()
            self.take(")")
            return node
        if kind == "name":
            return self.call()
        shown = "end of rule" if kind == "end" else repr(text)
        raise RuleError(f"expected a matcher such as Host(`example.com`), found {shown}", col)

    def call(self) -> Call:
        _, name, col = self.peek()
        if name not in _ARITY:
            close = [n for n in _ARITY if n.lower() == name.lower()]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise RuleError(f"unknown matcher {name!r}{hint}", col)
        self.i += 1
        self.take("(")
        args: list[str] = []
        while True:
            kind, text, acol = self.peek()
            if kind != "str":
                shown = "end of rule" if kind == "end" else repr(text)
                raise RuleError(f"expected a quoted argument, found {shown}", acol)
            args.append(_unquote(text))
            self.i += 1
            if self.peek()[1] == "," and self.peek()[0] == "op":
                self.i += 1
                continue
            self.take(")")
            break
        low, high = _ARITY[name]
        if not low <= len(args) <= high:
            want = str(low) if low == high else f"{low} or {high}"
            raise RuleError(f"{name} takes {want} argument(s), got {len(args)}", col)
        _check_args(name, args, col)
        return Call(name, tuple(args), col)


def _unquote(text: str) -> str:
    if text[0] == "`":
        return text[1:-1]
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _check_args(name: str, args: list[str], col: int) -> None:
    if name.endswith("Regexp"):
        try:
            re.compile(args[-1])
        except re.error as exc:
            raise RuleError(f"{name}: invalid regular expression: {exc}", col)
    elif name == "ClientIP":
        try:
            ipaddress.ip_network(args[0], strict=False)
        except ValueError:
            raise RuleError(f"ClientIP: {args[0]!r} is not an IP address or CIDR range", col)
    elif name in ("Path", "PathPrefix") and not args[0].startswith("/"):
        raise RuleError(f"{name}: {args[0]!r} must start with /", col)
    elif name == "Host" and not args[0]:
        raise RuleError("Host: empty host", col)


def parse_rule(rule: str) -> Any:
    """Parse a rule into its syntax tree; raise RuleError with the column on failure."""
    return _Parser(rule).parse()


# ---------------------------------------------------------------------------------------------
# Compiling.


def _header_values(req: Any, name: bytes) -> Iterable[str]:
    for n, v in req.headers:
        if n.lower() == name:
            yield v.decode("latin-1")


def _compile_call(node: Call) -> Matcher:
    name, args = node.name, node.args
    if name == "Host":
        host = args[0].lower()
        return lambda req: req.host == host
    if name == "HostRegexp":
        rx = re.compile(args[0], re.IGNORECASE)
        return lambda req: rx.search(req.host) is not None
    if name == "Path":
        path = args[0]
        return lambda req: req.path == path
    if name == "PathPrefix":
        prefix = args[0]
        return lambda req: req.path.startswith(prefix)
    if name == "PathRegexp":
        rx = re.compile(args[0])
        return lambda req: rx.search(req.path) is not None
    if name == "Method":
        method = args[0].upper()
        return lambda req: req.method == method
    if name == "Header":
        hname, value = args[0].lower().encode("latin-1"), args[1]
        return lambda req: any(v == value for v in _header_values(req, hname))
    if name == "HeaderRegexp":
        hname, rx = args[0].lower().encode("latin-1"), re.compile(args[1])
        return lambda req: any(rx.search(v) for v in _header_values(req, hname))
    if name == "Query":
        key = args[0]
        if len(args) == 1:
            return lambda req: any(k == key for k, _ in parse_qsl(req.query, True))
        value = args[1]
        return lambda req: any(k == key and v == value for k, v in parse_qsl(req.query, True))
    if name == "QueryRegexp":
        key, rx = args[0], re.compile(args[1])
        return lambda req: any(k == key and rx.search(v) for k, v in parse_qsl(req.query, True))
    if name == "ClientIP":
        net = ipaddress.ip_network(args[0], strict=False)

        def client_ip(req: Any) -> bool:
            try:
                return ipaddress.ip_address(req.client_ip) in net
            except ValueError:
                return False

        return client_ip
    raise AssertionError(name)


def compile_node(node: Any) -> Matcher:
    if isinstance(node, Call):
        return _compile_call(node)
    if isinstance(node, Not):
        inner = compile_node(node.operand)
        return lambda req: not inner(req)
    parts = tuple(compile_node(n) for n in node.operands)
    if isinstance(node, And):
        return lambda req: all(p(req) for p in parts)
    return lambda req: any(p(req) for p in parts)


def _indexed_host(node: Any) -> tuple[str | None, Any]:
    """The exact host a rule requires, and the rest of the rule (None when nothing is left)."""
    if isinstance(node, Call) and node.name == "Host":
        return node.args[0].lower(), None
    if isinstance(node, And):
        for i, part in enumerate(node.operands):
            if isinstance(part, Call) and part.name == "Host":
                rest = node.operands[:i] + node.operands[i + 1 :]
                return part.args[0].lower(), rest[0] if len(rest) == 1 else And(rest)
    return None, node


@dataclass(frozen=True, slots=True)
class Route:
    """One compiled router. ``matcher`` None means the index alone decides."""

    name: str
    priority: int
    matcher: Matcher | None
    target: Any  # what the proxy needs for this router (its service, observer, ...)


class RouteTable:
    """Routers of one entrypoint, compiled and indexed by exact host."""

    __slots__ = ("by_host", "generic")

    def __init__(self, routers: Iterable[tuple[str, str, int, Any]]):
        indexed: dict[str, list[Route]] = {}
        generic: list[Route] = []
        for name, rule, priority, target in routers:
            host, rest = _indexed_host(parse_rule(rule))
            route = Route(
                name, priority or len(rule), None if rest is None else compile_node(rest), target
            )
            if host is None:
                generic.append(route)
            else:
                indexed.setdefault(host, []).append(route)

        def order(routes: list[Route]) -> list[Route]:
            return sorted(routes, key=lambda r: (-r.priority, r.name))

        self.generic = order(generic)
        self.by_host = {h: order(rs + generic) for h, rs in indexed.items()}

    def match(self, req: Any) -> Route | None:
        for route in self.by_host.get(req.host, self.generic):
            if route.matcher is None or route.matcher(req):
                return route
        return None


def check(config: Any) -> list[str]:
    """Every router's rule parses (``hopwire.checks``)."""
    errors = []
    for name, router in config.http.routers.items():
        try:
            parse_rule(router.rule)
        except RuleError as exc:
            errors.append(f"http.routers.{name}.rule: {router.rule!r}: {exc}")
    return errors
