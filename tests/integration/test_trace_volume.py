"""Trace volume under the operator's control, end to end with a real OTLP receiver: detailed
verbosity beside the real Traefik 3.7, sample rates per router, unsampled errors and slow
requests kept after the fact."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import h11
import pytest
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased

from tests.harness import Traefik, exchange, request, service, wait_for
from tests.integration.test_metrics import scrape, value
from tests.integration.test_middlewares import USERS
from tests.integration.test_tracing import backend_traceparents, routes, tracing
from tests.otlp_receiver import GrpcReceiver, attrs

INTERNAL, SERVER, CLIENT = 1, 2, 3
KEPT = "hopwire.sampling.kept"
MIDDLEWARES = {
    "hdr": {"headers": {"customRequestHeaders": {"X-A": "1"}}},
    "strip": {"stripPrefix": {"prefixes": ["/p"]}},
    "auth": {"basicAuth": {"users": USERS}},
}


def detailed_routes(backend: Any, middlewares: list[str], **observability: Any) -> dict[str, Any]:
    return {
        "http": {
            "routers": {
                "api": {
                    "rule": "PathPrefix(`/`)",
                    "service": "s",
                    "middlewares": middlewares,
                    "observability": {"traceVerbosity": "detailed", **observability},
                }
            },
            "middlewares": {name: MIDDLEWARES[name] for name in middlewares},
            "services": {"s": service(backend.url)},
        }
    }


def chain(spans: list[Any]) -> list[tuple[int, str, dict[str, Any]]]:
    """One trace's spans from the root down, each the parent of the next: (kind, name,
    attribute keys and values); asserts that they form one chain, nested in time."""
    by_parent = {s.parent_span_id: s for s in spans}
    assert len(by_parent) == len(spans), "not a chain"
    out = []
    span = by_parent[b""]
    while True:
        out.append((span.kind, span.name, attrs(span)))
        child = by_parent.get(span.span_id)
        if child is None:
            return out
        assert span.start_time_unix_nano <= child.start_time_unix_nano
        assert child.end_time_unix_nano <= span.end_time_unix_nano
        span = child


def trace_of(rx: Any, trace_hex: str) -> list[Any]:
    return [s for s in rx.spans() if s.trace_id.hex() == trace_hex]


def run_one(port: int, backend: Any, rx: Any, path: str, **kw: Any) -> tuple[int, list[Any]]:
    """One request; its status and its trace's spans (found by the traceparent the backend
    got, or, when the backend got none, by the SERVER span of its path)."""
    before = len(backend.requests)
    status = request(port, "GET", path, **kw)[0]
    if len(backend.requests) > before:
        value_ = next(v for n, v in backend.requests[-1][2] if n.lower() == "traceparent")
        trace_hex, client_hex = value_.split("-")[1:3]
        wait_for(lambda: any(s.span_id.hex() == client_hex for s in rx.spans()), timeout=20)
    else:
        wait_for(
            lambda: any(s.kind == SERVER and attrs(s)["url.path"] == path for s in rx.spans()),
            timeout=20,
        )
        server = [s for s in rx.spans() if s.kind == SERVER and attrs(s)["url.path"] == path]
        trace_hex = server[-1].trace_id.hex()
    wait_for(lambda: len(trace_of(rx, trace_hex)) >= 2, timeout=20)
    return status, trace_of(rx, trace_hex)


def test_detailed_verbosity_beside_traefik(
    tmp_path: Path, make_backend: Any, make_hopwire: Any
) -> None:
    """A router with two middlewares: SERVER -> Router -> Headers -> StripPrefix -> Service
    -> CLIENT, each nested in time, the backend's traceparent naming the CLIENT span, in
    Traefik 3.7 and hopwire alike; a middleware that answers (basicAuth, no credentials)
    ends the chain at its own span, with no Service and no CLIENT span."""
    backend = make_backend()
    dynamic = detailed_routes(backend, ["hdr", "strip"])
    answered = detailed_routes(backend, ["auth", "strip"])
    answered["http"]["routers"]["api"]["rule"] = "PathPrefix(`/locked`)"
    dynamic["http"]["routers"]["locked"] = answered["http"]["routers"]["api"]
    dynamic["http"]["middlewares"].update(answered["http"]["middlewares"])
    shapes: dict[str, Any] = {}
    for who in ("traefik", "hopwire"):
        rx = GrpcReceiver()
        try:
            static = {"tracing": {"otlp": {"grpc": {"endpoint": rx.endpoint, "insecure": True}}}}
            if who == "traefik":
                proxy: Any = Traefik(tmp_path, dynamic, static=static)
                proxy.wait_routed("/p/x")
            else:
                proxy = make_hopwire({**dynamic, "tracing": tracing(rx)})
            try:
                status, spans = run_one(proxy.port, backend, rx, "/p/hello")
                assert status == 200
                got = chain(spans)
                client_hex = next(v for n, v in backend.requests[-1][2] if n == "traceparent")
                client = [s for s in spans if s.kind == CLIENT]
                assert [s.span_id.hex() for s in client] == [client_hex.split("-")[2]]
                status, locked = run_one(proxy.port, backend, rx, "/locked/x")
                assert status == 401
                shapes[who] = (got, chain(locked))
            finally:
                proxy.stop()
        finally:
            rx.close()
    for who, (got, locked) in shapes.items():
        assert [(kind, name) for kind, name, _ in got] == [
            (SERVER, "GET" if who == "traefik" else "GET api"),
            (INTERNAL, "Router"),
            (INTERNAL, "Headers"),
            (INTERNAL, "StripPrefix"),
            (INTERNAL, "Service"),
            (CLIENT, "ReverseProxy" if who == "traefik" else "GET"),
        ], who
        assert [(kind, name) for kind, name, _ in locked][1:] == [
            (INTERNAL, "Router"),
            (INTERNAL, "BasicAuth"),
        ], who
    # the INTERNAL spans carry Traefik's attribute keys; hopwire's names have no @provider
    theirs, ours = shapes["traefik"][0], shapes["hopwire"][0]
    for (_, name, their_attrs), (_, _, my_attrs) in zip(theirs[1:5], ours[1:5], strict=True):
        assert set(my_attrs) == set(their_attrs), name
    assert ours[1][2] == {
        "traefik.router.name": "api",
        "traefik.service.name": "s",
        "http.route": "PathPrefix(`/`)",
    }
    assert theirs[1][2]["traefik.router.name"] == "api@file"
    assert [a["traefik.middleware.name"] for _, _, a in ours[2:4]] == ["hdr", "strip"]


def test_verbosity_inherits_and_minimal_stays_two_spans(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    """Router unset <- entrypoint detailed; a router's own minimal wins; minimal is the
    SERVER + CLIENT pair, as before."""
    backend = make_backend()
    config = detailed_routes(backend, ["hdr"])
    routers = config["http"]["routers"]
    del routers["api"]["observability"]
    routers["plain"] = {
        "rule": "PathPrefix(`/plain`)",
        "service": "s",
        "observability": {"traceVerbosity": "minimal"},
    }
    hw = make_hopwire({**config, "tracing": tracing(receiver)}, start=False)
    hw.config["entryPoints"]["web"]["observability"] = {"traceVerbosity": "detailed"}
    hw.write(hw.config)
    hw.start()
    _, spans = run_one(hw.port, backend, receiver, "/x")
    assert [name for _, name, _ in chain(spans)] == [
        "GET api",
        "Router",
        "Headers",
        "Service",
        "GET",
    ]
    _, spans = run_one(hw.port, backend, receiver, "/plain/x")
    assert [name for _, name, _ in chain(spans)] == ["GET plain", "GET"]


def test_sample_rate_per_router(make_backend: Any, make_hopwire: Any, receiver: Any) -> None:
    """Each router samples new roots at its own rate (else its entrypoint's, else the global
    one), decided as the SDK's ParentBased(TraceIdRatioBased(rate)) would; an inbound
    decision is still obeyed."""
    backend = make_backend()
    hw = make_hopwire(
        {
            "http": {
                "routers": {
                    "low": {
                        "rule": "PathPrefix(`/low`)",
                        "service": "s",
                        "observability": {"sampleRate": 0.1},
                    },
                    "high": {
                        "rule": "PathPrefix(`/high`)",
                        "service": "s",
                        "observability": {"sampleRate": 0.9},
                    },
                    "inherits": {"rule": "PathPrefix(`/inherits`)", "service": "s"},
                },
                "services": {"s": service(backend.url)},
            },
            "tracing": tracing(receiver, sampleRate=0.0),
        },
        start=False,
    )
    hw.config["entryPoints"]["web"]["observability"] = {"sampleRate": 0.5}
    hw.write(hw.config)
    hw.start()
    n = 1500
    rates = {"/low": 0.1, "/high": 0.9, "/inherits": 0.5}
    with socket.create_connection(("127.0.0.1", hw.port)) as sock:
        conn = h11.Connection(h11.CLIENT)
        for _ in range(n):
            for path in rates:
                assert exchange(sock, "GET", path + "/r", conn=conn)[0] == 200
    for path, rate in rates.items():
        sdk = ParentBased(TraceIdRatioBased(rate))
        sampled = 0
        seen = backend_traceparents(backend, path)
        assert len(seen) == n
        for [tp] in seen:
            _, trace_id, _, flags = tp.split("-")
            says = sdk.should_sample(None, int(trace_id, 16), "x").decision
            assert (says is Decision.RECORD_AND_SAMPLE) == (flags == "03"), (path, tp)
            sampled += flags == "03"
        sd = (n * rate * (1 - rate)) ** 0.5
        assert abs(sampled - n * rate) <= 6 * sd, (path, sampled)
    # an inbound sampled parent is obeyed on the low-rate router, an unsampled one on high
    for path, flag in (("/low/in", "01"), ("/high/in", "00")):
        parent = f"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flag}"
        assert request(hw.port, "GET", path, headers=[("traceparent", parent)])[0] == 200
        [[tp]] = backend_traceparents(backend, path)
        assert tp.endswith("-" + flag)


@pytest.mark.parametrize("metered", [True, False], ids=["by the meter", "by a Keeper"])
def test_unsampled_errors_and_slow_requests_are_kept(
    make_backend: Any, make_hopwire: Any, receiver: Any, metered: bool
) -> None:
    """At sample rate 0 with keep.errors and keep.slowerThan: every 5xx, every failed
    attempt and every slow request exports its SERVER and CLIENT spans once, with the ids
    the backend got and the unsampled flags, marked with why; nothing else is exported.
    The routers' metrics observer decides at the end of an unsampled request; without one
    (metrics off for the routers), a Keeper does."""
    backend = make_backend()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there: connect_failed
    observed = {} if metered else {"observability": {"metrics": False}}
    hw = make_hopwire(
        {
            "http": {
                "routers": {
                    "api": {"rule": "PathPrefix(`/`)", "service": "s", **observed},
                    "gone": {"rule": "PathPrefix(`/gone`)", "service": "dead", **observed},
                },
                "services": {
                    "s": service(backend.url),
                    "dead": service(f"http://127.0.0.1:{dead_port}"),
                },
            },
            "tracing": tracing(
                receiver, sampleRate=0.0, keep={"errors": True, "slowerThan": "250ms"}
            ),
        }
    )
    with socket.create_connection(("127.0.0.1", hw.port)) as sock:
        conn = h11.Connection(h11.CLIENT)
        for i in range(60):
            path = "/status/503" if i % 6 == 0 else "/ok"
            exchange(sock, "GET", path, conn=conn)
    assert request(hw.port, "GET", "/slow/0.4")[0] == 200
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    assert request(hw.port, "GET", "/status/500", headers=[("traceparent", parent)])[0] == 500
    assert request(hw.port, "GET", "/gone")[0] == 502
    failed = [tp for [tp] in backend_traceparents(backend, "/status/")]
    slow = [tp for [tp] in backend_traceparents(backend, "/slow/")]
    assert len(failed) == 11 and len(slow) == 1
    assert all(tp.endswith("-02") or tp.endswith("-00") for tp in failed + slow)  # unsampled
    # 11 backend errors and 1 slow: a SERVER and a CLIENT span each; /gone: a SERVER span
    # and the CLIENT span of the attempt that failed
    wait_for(lambda: len(receiver.spans()) >= 2 * 12 + 2, timeout=20)
    spans = receiver.spans()
    servers = [s for s in spans if s.kind == SERVER]
    assert len(servers) == 13 and len(spans) == 26
    for tp in failed + slow:
        trace_hex, client_hex, flags = tp.split("-")[1:]
        mine = trace_of(receiver, trace_hex)
        [server] = [s for s in mine if s.kind == SERVER]
        [client] = [s for s in mine if s.kind == CLIENT]
        assert client.span_id.hex() == client_hex
        assert client.parent_span_id == server.span_id
        assert server.flags & 0xFF == client.flags & 0xFF == int(flags, 16)
        why = "slow" if tp in slow else "error"
        assert attrs(server)[KEPT] == attrs(client)[KEPT] == why
    inbound = trace_of(receiver, "0af7651916cd43dd8448eb211c80319c")
    [server] = [s for s in inbound if s.kind == SERVER]
    assert server.parent_span_id.hex() == "b7ad6b7169203331"
    assert attrs(server)["http.response.status_code"] == 500
    [gone] = [s for s in servers if attrs(s)["url.path"] == "/gone"]
    assert attrs(gone)[KEPT] == "error" and attrs(gone)["error.type"]
    kept = "hopwire_tracing_requests_kept_total"
    wait_for(lambda: value(scrape(hw), kept, reason="error") == 12)
    assert value(scrape(hw), kept, reason="slow") == 1


PARENT_SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def received(backend: Any, path: str) -> dict[str, list[str]]:
    """The fields of the backend's last request to ``path``, by lower-case name."""
    [*_, (_, _, headers, _)] = [r for r in backend.requests if r[1].startswith(path)]
    out: dict[str, list[str]] = {}
    for name, text in headers:
        out.setdefault(name.lower(), []).append(text)
    return out


def test_an_edge_that_decides(make_backend: Any, make_hopwire: Any, receiver: Any) -> None:
    """traceContext.untrusted: a client's context outside trustedIPs does not decide:
    a new root trace (sampled at the edge's own rate) linked to it; the backend gets
    hopwire's context (replace) or the client's as it came (forward); a trusted client's
    context is obeyed as before."""
    backend = make_backend()
    routes_ = {
        "routers": {
            "r": {"rule": "PathPrefix(`/r`)", "service": "s", "entryPoints": ["web"]},
            "f": {"rule": "PathPrefix(`/f`)", "service": "s", "entryPoints": ["fwd"]},
            "t": {"rule": "PathPrefix(`/t`)", "service": "s", "entryPoints": ["trusting"]},
        },
        "services": {"s": service(backend.url)},
    }
    hw = make_hopwire({"http": routes_, "tracing": tracing(receiver, sampleRate=1.0)}, start=False)
    from tests.harness import free_port

    eps = hw.config["entryPoints"]
    eps["web"]["traceContext"] = {"untrusted": "replace"}
    fwd_port, trusting_port = free_port(), free_port()
    eps["fwd"] = {"address": f"127.0.0.1:{fwd_port}", "traceContext": {"untrusted": "forward"}}
    eps["trusting"] = {
        "address": f"127.0.0.1:{trusting_port}",
        "traceContext": {"untrusted": "replace", "trustedIPs": ["127.0.0.0/8"]},
    }
    hw.write(hw.config)
    hw.start()
    state = "vendor=abc"
    headers = [("traceparent", PARENT_SAMPLED), ("tracestate", state)]
    inbound_tid, inbound_sid = PARENT_SAMPLED.split("-")[1:3]
    for port, path in ((hw.port, "/r"), (fwd_port, "/f"), (trusting_port, "/t")):
        assert request(port, "GET", path, headers=headers)[0] == 200
    # replace: hopwire's own context goes on, in a new trace linked to the client's
    sent = received(backend, "/r")
    [tp] = sent["traceparent"]
    tid, client_sid = tp.split("-")[1:3]
    assert tid != inbound_tid
    wait_for(lambda: len(trace_of(receiver, tid)) == 2)
    [server] = [s for s in trace_of(receiver, tid) if s.kind == SERVER]
    assert server.parent_span_id == b""
    [link] = server.links
    assert (link.trace_id.hex(), link.span_id.hex()) == (inbound_tid, inbound_sid)
    assert link.trace_state == state and link.flags & 0xFF == 1
    assert "tracestate" not in sent  # hopwire's root has none of its own
    # forward: the client's fields reach the backend as they came; hopwire's spans are in a
    # new trace, linked to them
    sent = received(backend, "/f")
    assert sent["traceparent"] == [PARENT_SAMPLED] and sent["tracestate"] == [state]
    wait_for(lambda: any(attrs(s).get("url.path") == "/f" for s in receiver.spans()))
    [server] = [s for s in receiver.spans() if attrs(s).get("url.path") == "/f"]
    assert server.trace_id.hex() != inbound_tid and len(server.links) == 1
    assert server.links[0].span_id.hex() == inbound_sid
    # trusted: obeyed, as without the option
    [tp] = received(backend, "/t")["traceparent"]
    assert tp.split("-")[1] == inbound_tid
    wait_for(lambda: any(attrs(s).get("url.path") == "/t" for s in receiver.spans()))
    [server] = [s for s in receiver.spans() if attrs(s).get("url.path") == "/t"]
    assert server.parent_span_id.hex() == inbound_sid and not server.links


def test_an_edge_at_rate_0_is_not_switched_on_by_clients(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    """A sampled traceparent from an untrusted client does not make an edge at rate 0 export
    anything; the backend gets an unsampled context of hopwire's."""
    backend = make_backend()
    hw = make_hopwire(
        {"http": routes(backend, "r"), "tracing": tracing(receiver, sampleRate=0.0)}, start=False
    )
    hw.config["entryPoints"]["web"]["traceContext"] = {"untrusted": "replace"}
    hw.write(hw.config)
    hw.start()
    for _ in range(20):
        assert request(hw.port, "GET", "/x", headers=[("traceparent", PARENT_SAMPLED)])[0] == 200
    for [tp] in backend_traceparents(backend, "/x"):
        assert tp.split("-")[1] != PARENT_SAMPLED.split("-")[1] and tp.endswith("-02")
    request(hw.port, "GET", "/x")
    import time

    time.sleep(1.0)  # the exporter's schedule delay is 100 ms
    assert receiver.spans() == []


def test_b3_in_and_out_beside_the_sdk(make_backend: Any, make_hopwire: Any, receiver: Any) -> None:
    """OTEL_PROPAGATORS=b3multi, then tracecontext,b3: the inbound B3 context (64- or 128-bit
    trace id) is the parent; the backend's B3 fields, read by the SDK's own B3 propagator,
    name the CLIENT span; W3C fields pass through untouched when tracecontext is not listed."""
    from opentelemetry import trace as otel_trace
    from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat

    for env, propagator in (("b3multi", B3MultiFormat()), ("tracecontext,b3", B3SingleFormat())):
        backend = make_backend()
        hw = make_hopwire(
            {"http": routes(backend, "r"), "tracing": tracing(receiver, sampleRate=0.0)},
            env={"OTEL_PROPAGATORS": env},
        )
        inbound = [
            ("X-B3-TraceId", "463ac35c9f6413ad"),  # 64 bits: widened with zeros
            ("X-B3-SpanId", "A2FB4A1D1A96D312"),
            ("X-B3-Sampled", "1"),
            ("traceparent", "00-11111111111111111111111111111111-2222222222222222-00"),
        ]
        if env != "b3multi":
            inbound = [("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-1"), *inbound[3:]]
        assert request(hw.port, "GET", "/b3", headers=inbound)[0] == 200
        sent = received(backend, "/b3")
        carrier = {k: v[0] for k, v in sent.items()}
        ctx = otel_trace.get_current_span(propagator.extract(carrier)).get_span_context()
        assert ctx.is_valid and ctx.trace_flags.sampled
        assert f"{ctx.trace_id:032x}" == "0000000000000000463ac35c9f6413ad"
        client_hex = f"{ctx.span_id:016x}"
        wait_for(lambda h=client_hex: any(s.span_id.hex() == h for s in receiver.spans()))
        spans = trace_of(receiver, f"{ctx.trace_id:032x}")  # (both rounds' requests)
        [client] = [s for s in spans if s.span_id.hex() == client_hex]
        [server] = [s for s in spans if s.span_id == client.parent_span_id]
        assert client.kind == CLIENT and server.kind == SERVER
        assert server.parent_span_id.hex() == "a2fb4a1d1a96d312"
        if env == "b3multi":  # traceparent is not hopwire's to read or write: as it came
            assert sent["traceparent"] == [inbound[3][1]]
            assert "b3" not in sent
        else:  # both written, naming the same span
            [tp] = sent["traceparent"]
            assert tp == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
            assert not any(k.startswith("x-b3-") for k in sent)
        hw.stop()
