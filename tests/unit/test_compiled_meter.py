"""The compiled metrics observer (_meter.Meter, what the worker runs) makes the rows its
reference (metrics.PyMeter) makes.

Hypothesis draws bucket bounds and a run of ended exchanges (any status including 101, any
method, traced or not, sampled or not, an error type, HTTP/1.0, zero to three backend
attempts with their origin status and server) and feeds the same run to both meters, plain
and rich (metrics.otlp on): the rows, their exemplars and their per-server client counts must
be equal.  The exchanges are objects with __slots__ (the compiled meter reads those at their
offsets) or SimpleNamespace (the generic attribute path)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopwire.telemetry import metrics


class Slots:
    __slots__ = (
        "attempts",
        "down",
        "error_type",
        "grpc",
        "http10",
        "method",
        "origin_status",
        "origin_t0",
        "req_bytes",
        "resp_bytes",
        "server",
        "status",
        "t0",
        "t1",
        "timed",
        "trace",
    )

    def __init__(self, **fields: Any):
        for name, value in fields.items():
            setattr(self, name, value)


class Trace:
    __slots__ = ("sampled",)

    def __init__(self, sampled: bool):
        self.sampled = sampled


class Server:
    """A backend server: hashable by identity, as balancer servers are."""

    def __init__(self, pool: str):
        self.pool = pool


class Down:
    """The connection an exchange came on: its network.protocol.version."""

    __slots__ = ("version",)

    def __init__(self, version: str):
        self.version = version


SERVERS = [Server(f"pool{i}") for i in range(3)]
DOWNS = [Down("1.1"), Down("1.1"), Down("2")]  # an HTTP/1.1 connection, an HTTP/2 stream
TRACES = [None, Trace(True), Trace(False)]
TIME = st.floats(0, 1e6, allow_nan=False)


@st.composite
def exchanges(draw: Any) -> dict[str, Any]:
    t0 = draw(TIME)
    t1 = t0 + draw(st.floats(0, 30, allow_nan=False))
    return {
        "t0": t0,
        "t1": t1,
        "status": draw(st.sampled_from([101, 200, 204, 301, 404, 499, 500, 502, 504])),
        "method": draw(st.sampled_from(["GET", "POST", "OTHER"])),
        "req_bytes": draw(st.integers(0, 1 << 40)),
        "resp_bytes": draw(st.integers(0, 1 << 40)),
        "trace": draw(st.sampled_from(TRACES)),
        "error_type": draw(st.sampled_from(["", "", "", "timeout", "connection_refused"])),
        "http10": draw(st.booleans()),
        "down": draw(st.sampled_from(DOWNS)),
        "grpc": draw(st.sampled_from([None, None, None, 0, 2, 14])),
        "attempts": draw(st.integers(0, 3)),
        "origin_status": draw(st.sampled_from([0, 200, 404, 502])),
        "server": draw(st.sampled_from(SERVERS)),
        "origin_t0": t0 + draw(st.floats(0, 1, allow_nan=False)),
        "timed": 0,
        "spill": draw(st.integers(0, 5)) == 0,
    }


BOUNDS = st.lists(st.floats(0.001, 20, allow_nan=False), max_size=12, unique=True).map(
    lambda b: tuple(sorted(b))
)


@settings(max_examples=1500, deadline=None)
@given(
    bounds=BOUNDS,
    run=st.lists(exchanges(), min_size=1, max_size=25),
    rich=st.booleans(),
    slots=st.booleans(),
    keep=st.sampled_from([None, (True, 0.0), (False, 2.0), (True, 2.0)]),
)
def test_compiled_meter_makes_the_reference_rows(
    bounds: tuple[float, ...],
    run: list[dict[str, Any]],
    rich: bool,
    slots: bool,
    keep: tuple[bool, float] | None,
) -> None:
    """... and, with tracing.keep (``keeping``), hands the same unsampled exchanges back."""
    ref_table, table = metrics.Table("router", ("r", "s")), metrics.Table("router", ("r", "s"))
    ref = metrics.PyMeter([ref_table], bounds, rich, "r", "https")
    compiled = metrics.Meter([table], bounds, rich, "r", "https")
    kept: tuple[list[Any], list[Any]] = ([], [])
    if keep is not None:
        ref.keeping(kept[0].append, *keep)
        compiled.keeping(kept[1].append, *keep)
    assert compiled.nbuckets == ref.nbuckets and compiled.bounds == bounds
    spilled: list[Any] = [({}, {}), ({}, {})]
    for i, fields in enumerate(run):
        if fields["spill"]:  # the fold, between requests: the next rows are new ones
            metrics.spill(ref, *spilled[0])
            metrics.spill(compiled, *spilled[1])
            assert ref.snapshot() == compiled.snapshot() == {}
        # grpc is set on gRPC calls only: None here means never set (an empty slot)
        fields = {
            k: v for k, v in fields.items() if k != "spill" and not (k == "grpc" and v is None)
        }
        a = (Slots if slots else SimpleNamespace)(**fields)
        b = (Slots if slots else SimpleNamespace)(**fields)
        ref.start(a)
        compiled.start(b)
        assert a.timed == b.timed == (1 if rich else 0)
        ref.finish(a)
        compiled.finish(b)
        assert compiled.snapshot() == ref.snapshot(), i
        assert [x is a for x in kept[0]] == [x is b for x in kept[1]], i
        kept[0].clear()
        kept[1].clear()
    assert table.rows == ref_table.rows
    assert spilled[0] == spilled[1]


def test_compiled_meter_spills_as_the_reference() -> None:
    """The fold's spill reads the compiled rows as it reads the reference's."""
    table = metrics.Table("router", ("r", "s"))
    got: list[Any] = []
    trace = Trace(True)
    for kind in (metrics.PyMeter, metrics.Meter):
        meter = kind([table], (0.1, 1.0), True, "r", "http")
        ex = Slots(
            t0=1.0,
            t1=1.5,
            status=200,
            method="GET",
            req_bytes=10,
            resp_bytes=20,
            trace=trace,
            error_type="",
            http10=False,
            down=DOWNS[0],
            attempts=1,
            origin_status=502,
            server=SERVERS[0],
            origin_t0=1.1,
            timed=0,
        )
        meter.start(ex)
        meter.finish(ex)
        semconv: dict[Any, Any] = {}
        clients: dict[Any, Any] = {}
        metrics.spill(meter, semconv, clients)
        assert meter.snapshot() == {}
        got.append((semconv, clients))
    assert got[0] == got[1]
    assert table.rows and all(row[0] == 2 for row in table.rows.values())


def test_a_grpc_call_is_counted_with_its_grpc_status() -> None:
    """Traefik's labels for a gRPC call: protocol "grpc", its gRPC status as the code; the
    semantic-convention histogram keeps its HTTP status."""
    for kind in (metrics.PyMeter, metrics.Meter):
        table = metrics.Table("router", ("r", "s"))
        meter = kind([table], (0.1, 1.0), True, "r", "http")
        ex = Slots(
            t0=1.0, t1=1.2, status=200, method="POST", req_bytes=17, resp_bytes=17,
            trace=None, error_type="", http10=False, down=DOWNS[2], grpc=5, attempts=1, origin_status=200,
            server=SERVERS[0], origin_t0=1.1, timed=0,
        )  # fmt: skip
        meter.start(ex)
        meter.finish(ex)
        semconv: dict[Any, Any] = {}
        metrics.spill(meter, semconv, {})
        assert [key[:3] for key in table.rows] == [(5, "POST", "grpc")]
        # (route, scheme, status, method, error, version): its HTTP status, on an HTTP/2 stream
        assert [(key[2], key[5]) for key in semconv] == [(200, "2")]


@pytest.mark.parametrize("bad", [("1", "0.5"), (0.5, 0.1)])
def test_compiled_meter_refuses_bad_bounds(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        metrics.Meter([], bad)


def test_compiled_meter_raises_on_a_broken_exchange() -> None:
    """An exchange missing a field raises as Python would (the worker's ending logs it);
    nothing is half-counted."""
    meter = metrics.Meter([], (0.1,), True)
    with pytest.raises(AttributeError):
        meter.finish(SimpleNamespace(t0=0.0, t1=1.0, status=200))
    assert meter.snapshot() == {}
