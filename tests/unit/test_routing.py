from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from hopwire.routing import RouteTable, RuleError, parse_rule


@dataclass
class Req:
    host: str = "a.test"
    path: str = "/"
    method: str = "GET"
    query: str = ""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    client_ip: str = "127.0.0.1"


@pytest.mark.parametrize(
    ("rule", "column", "message"),
    [
        ("Host(`a`", 9, "expected ')'"),
        ("Hots(`a`)", 1, "unknown matcher 'Hots'"),
        ("Host(`a`) && ", 13, "expected a matcher"),
        ("Host(`a`) Path(`/`)", 11, "missing && or ||"),
        ("Path(`x`)", 1, "must start with /"),
        ("PathRegexp(`(`)", 1, "invalid regular expression"),
        ("ClientIP(`300.1.1.1`)", 1, "not an IP address"),
        ("Header(`a`)", 1, "takes 2 argument"),
        ("Host(a)", 6, "expected a quoted argument"),
        ("", 1, "empty rule"),
        ("Host(`a`) & Path(`/`)", 11, "unexpected character"),
    ],
)
def test_parse_errors_name_the_column(rule: str, column: int, message: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(rule)
    assert info.value.column == column
    assert message in str(info.value)


def table(*routers: tuple[str, str, int]) -> RouteTable:
    return RouteTable((name, rule, prio, name) for name, rule, prio in routers)


def test_operators_and_precedence() -> None:
    t = table(("r", "Host(`a.test`) && !Path(`/x`) || Method(`POST`)", 0))
    assert t.match(Req()) is not None
    assert t.match(Req(path="/x")) is None
    assert t.match(Req(path="/x", method="POST")) is not None
    assert t.match(Req(host="b.test", method="POST")) is not None


def test_priority_default_is_rule_length_ties_by_name() -> None:
    t = table(
        ("b", "PathPrefix(`/`)", 0),
        ("a", "PathPrefix(`/`)", 0),
        ("long", "PathPrefix(`/api`)", 0),
        ("top", "PathPrefix(`/`)", 100),
    )
    assert t.match(Req(path="/api/x")).name == "top"
    t = table(
        ("b", "PathPrefix(`/`)", 0), ("a", "PathPrefix(`/`)", 0), ("long", "PathPrefix(`/api`)", 0)
    )
    assert t.match(Req(path="/api/x")).name == "long"
    assert t.match(Req(path="/other")).name == "a"


def test_host_index_keeps_generic_routers_in_order() -> None:
    routers = [(f"h{i}", f"Host(`h{i}.test`)", 0) for i in range(1000)]
    routers.append(("generic", "PathPrefix(`/special`)", 1000))
    t = table(*routers)
    assert t.match(Req(host="h500.test")).name == "h500"
    assert t.match(Req(host="h500.test", path="/special")).name == "generic"
    assert t.match(Req(host="nope.test")) is None
    # an exact-host router needs no matcher call once the index chose it
    assert t.by_host["h1.test"][1].matcher is None


def test_query_header_and_client_ip() -> None:
    t = table(
        ("q", "Query(`a`, `1`) && Query(`b`)", 0),
        ("h", "Header(`X-A`, `v`)", 0),
        ("ip", "ClientIP(`10.0.0.0/8`)", 0),
    )
    assert t.match(Req(query="a=1&b=")).name == "q"
    assert t.match(Req(headers=[(b"X-A", b"v")])).name == "h"
    assert t.match(Req(client_ip="10.1.2.3")).name == "ip"
    assert t.match(Req(client_ip="11.1.2.3")) is None
