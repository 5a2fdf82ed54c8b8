"""All three signals over OTLP (issue 22): a Traefik static file written for one collector
starts unchanged and delivers traces, metrics and logs, joined by trace id, over OTLP/HTTP
and OTLP/gRPC, in its file form and its flag form."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.harness import Traefik, request, service, wait_for
from tests.integration.test_tracing import tracing
from tests.otlp_receiver import GrpcReceiver, HttpReceiver, attr_value, attrs


def routes(backend: Any) -> dict[str, Any]:
    return {
        "routers": {"api": {"rule": "PathPrefix(`/`)", "service": "s"}},
        "services": {"s": service(backend.url)},
    }


def traefik_file(rx: Any, kind: str) -> dict[str, Any]:
    """The static file of the issue, with the collector at ``rx``."""
    if kind == "http":

        def otlp(signal: str) -> dict[str, Any]:
            return {"http": {"endpoint": f"{rx.base}/v1/{signal}"}}
    else:

        def otlp(signal: str) -> dict[str, Any]:
            return {"grpc": {"endpoint": rx.endpoint, "insecure": True}}

    return {
        "tracing": {
            "otlp": otlp("traces"),
            "serviceName": "edge-parent",
            "resourceAttributes": {"env": "dev", "deployment.environment": "dev"},
            "addInternals": True,
            "sampleRate": 1.0,
        },
        "metrics": {
            "otlp": {
                **otlp("metrics"),
                "addEntryPointsLabels": True,
                "addRoutersLabels": True,
                "addServicesLabels": True,
                "serviceName": "edge-parent",
                "pushInterval": "1s",
            }
        },
        "accessLog": {
            "format": "json",
            "addInternals": True,
            "fields": {"defaultMode": "keep", "headers": {"defaultMode": "keep"}},
            "otlp": otlp("logs"),
        },
        "log": {"otlp": otlp("logs")},
        "experimental": {"otlpLogs": True},
    }


def flags_of(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """The same settings as --dotted.flags (lists are not needed here)."""
    out = []
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out += flags_of(value, name)
        else:
            out.append(f"--{name}={str(value).lower() if isinstance(value, bool) else value}")
    return out


@pytest.fixture(params=["http", "grpc"])
def collector(request: Any) -> Any:
    rx = HttpReceiver() if request.param == "http" else GrpcReceiver()
    rx.kind = request.param
    yield rx
    rx.close()


def served_counts(metric: Any, **wanted: Any) -> int:
    total = 0
    for point in metric.sum.data_points:
        a = {kv.key: attr_value(kv.value) for kv in point.attributes}
        if all(a.get(k) == v for k, v in wanted.items()):
            total += int(point.as_double)
    return total


@pytest.mark.parametrize("form", ["file", "flags"])
def test_traefik_file_delivers_three_signals(
    make_backend: Any, make_hopwire: Any, collector: Any, form: str
) -> None:
    backend = make_backend()
    static = traefik_file(collector, collector.kind)
    if form == "file":
        hw = make_hopwire({"http": routes(backend), **static})
    else:
        hw = make_hopwire({"http": routes(backend)}, args=flags_of(static))
    for i in range(6):
        assert request(hw.port, "GET", f"/item/{i}")[0] == 200
    assert request(hw.port, "GET", "/missing", headers=[("x-status", "404")])[0] in (200, 404)

    # traces
    spans = collector.wait(14)
    servers = [s for s in spans if s.kind == 2]
    by_trace = {s.trace_id: s for s in servers}
    resources = collector.resources()
    assert resources[0]["service.name"] == "edge-parent"
    assert resources[0]["deployment.environment"] == "dev"

    # access-log records: one per request, each with its SERVER span's ids in its own fields
    wait_for(lambda: len([r for _, r in collector.log_records() if "RequestPath" in attrs(r)]) >= 7)
    access = [(res, r) for res, r in collector.log_records() if "RequestPath" in attrs(r)]
    for res, record in access:
        a = attrs(record)
        assert res["service.name"] == "edge-parent"  # tracing's, as Traefik does not
        assert res["deployment.environment"] == "dev"
        assert record.trace_id in by_trace, a
        assert record.span_id == by_trace[record.trace_id].span_id
        assert json.loads(record.body.string_value)["RequestPath"] == a["RequestPath"]
        assert any(k.startswith("request_") for k in a), a  # headers: defaultMode keep
        assert record.severity_text == "INFO"
    # /ping too (addInternals), on the internal entrypoint
    assert sorted(
        attrs(r)["RequestPath"] for _, r in access if attrs(r)["entryPointName"] == "web"
    ) == sorted([f"/item/{i}" for i in range(6)] + ["/missing"])

    # application log lines (the workers' "serving" lines at least)
    wait_for(lambda: any("serving" in r.body.string_value for _, r in collector.log_records()))
    app = [(res, r) for res, r in collector.log_records() if "logger" in attrs(r)]
    assert all(res["service.name"] == "edge-parent" for res, _ in app)
    assert {r.severity_text for _, r in app} <= {"DEBUG", "INFO", "WARN", "ERROR", "FATAL"}

    # metrics: the instance's counts, per router and status, equal the requests sent
    def router_count() -> int:
        metric = collector.last_metrics().get("hopwire_router_requests_total")
        return 0 if metric is None else served_counts(metric, router="api")

    wait_for(lambda: router_count() == 7, timeout=20)
    last = collector.last_metrics()
    assert last["hopwire_router_requests_total"].sum.is_monotonic
    assert last["hopwire_router_requests_total"].unit == "1"
    server = last["http.server.request.duration"]
    assert server.unit == "s"
    routes_seen = {
        attr_value(kv.value)
        for p in server.histogram.data_points
        for kv in p.attributes
        if kv.key == "http.route"
    }
    assert "api" in routes_seen
    assert "http.client.request.duration" in last
    metric_resource = collector.metrics()[-1][0]
    assert metric_resource["service.name"] == "edge-parent"
    hw.stop()


def test_metrics_semantic_conventions_and_temporality(make_backend: Any, make_hopwire: Any) -> None:
    """http.server.request.duration has the convention's attributes (http.route = the
    router, never server.address from the Host); http.client.request.duration is per
    backend address and port; delta sends what changed since the last export."""
    rx = HttpReceiver()
    try:
        backend = make_backend()
        hw = make_hopwire(
            {
                "http": routes(backend),
                "metrics": {
                    "otlp": {
                        "http": {"endpoint": f"{rx.base}/v1/metrics"},
                        "pushInterval": "500ms",
                        "temporality": "delta",
                        "explicitBoundaries": [0.5, 1.0],
                    }
                },
            }
        )
        for _ in range(3):
            assert request(hw.port, "GET", "/a", host="evil.example")[0] == 200

        def server_points() -> list[Any]:
            return [
                p
                for _, m in rx.metrics()
                if m.name == "http.server.request.duration"
                for p in m.histogram.data_points
            ]

        wait_for(lambda: sum(p.count for p in server_points()) >= 3, timeout=15)
        points = server_points()
        a = {kv.key: attr_value(kv.value) for kv in points[0].attributes}
        assert a == {
            "http.request.method": "GET",
            "url.scheme": "http",
            "http.response.status_code": 200,
            "network.protocol.name": "http",
            "network.protocol.version": "1.1",
            "http.route": "api",
        }
        assert list(points[0].explicit_bounds) == [0.5, 1.0]
        assert sum(p.count for p in points) == 3  # delta: never counted twice
        time.sleep(1.5)
        assert sum(p.count for p in server_points()) == 3
        clients = [
            p
            for _, m in rx.metrics()
            if m.name == "http.client.request.duration"
            for p in m.histogram.data_points
        ]
        ca = {kv.key: attr_value(kv.value) for kv in clients[0].attributes}
        assert ca["server.address"] == "127.0.0.1"
        assert ca["server.port"] == backend.port
        assert ca["http.response.status_code"] == 200
        temporality = {
            m.histogram.aggregation_temporality
            for _, m in rx.metrics()
            if m.WhichOneof("data") == "histogram"
        }
        assert temporality == {1}  # AGGREGATION_TEMPORALITY_DELTA (cumulative is 2)
        hw.stop()
    finally:
        rx.close()


def shapes(rx: Any) -> dict[str, tuple[str, str, frozenset[str], tuple[float, ...]]]:
    """name -> (data kind, unit, attribute keys, histogram bounds) of what ``rx`` received."""
    out = {}
    for _, metric in rx.metrics():
        kind = metric.WhichOneof("data")
        points = getattr(metric, kind).data_points
        keys = frozenset(kv.key for p in points for kv in p.attributes)
        bounds = tuple(points[0].explicit_bounds) if kind == "histogram" and points else ()
        out[metric.name] = (kind, metric.unit, keys, bounds)
    return out


def test_compared_with_traefik(tmp_path: Any, make_backend: Any, make_hopwire: Any) -> None:
    """The issue's static file through Traefik 3.7 and hopwire, each to its own OTLP/HTTP
    receiver: the same metric names (hopwire_ for traefik_), kinds, attributes and
    boundaries, the same semantic-convention histograms, access-log records carrying the
    trace ids in their own fields.  Where hopwire differs, deliberately: bytes counters in
    ``By`` (Traefik says ``1``); ``http.server.request.duration`` has ``http.route`` and no
    ``server.address`` (Host-derived, unbounded: opt-in in the conventions); its logs are
    under the file's service name (Traefik's are ``traefik`` whatever the file says)."""
    backend = make_backend()
    dynamic = {"http": routes(backend)}
    rx_traefik, rx_hopwire = HttpReceiver(), HttpReceiver()
    try:
        static_t = traefik_file(rx_traefik, "http")
        static_t["metrics"]["otlp"]["pushInterval"] = "1s"
        traefik = Traefik(tmp_path, dynamic, static=static_t)
        try:
            traefik.wait_routed("/x")
            for i in range(3):
                assert request(traefik.port, "GET", f"/item/{i}")[0] == 200
            wait_for(lambda: "http.client.request.duration" in shapes(rx_traefik), timeout=20)
            wait_for(lambda: len(rx_traefik.log_records()) > 3, timeout=20)
        finally:
            traefik.stop()
        hw = make_hopwire({**dynamic, **traefik_file(rx_hopwire, "http")})
        for i in range(3):
            assert request(hw.port, "GET", f"/item/{i}")[0] == 200
        wait_for(lambda: "http.client.request.duration" in shapes(rx_hopwire), timeout=20)
        wait_for(
            lambda: len([r for _, r in rx_hopwire.log_records() if "RequestPath" in attrs(r)]) >= 3
        )
        theirs, ours = shapes(rx_traefik), shapes(rx_hopwire)
        for name, (kind, unit, keys, bounds) in theirs.items():
            mine = name.replace("traefik_", "hopwire_", 1)
            assert mine in ours, (mine, sorted(ours))
            my_kind, my_unit, my_keys, my_bounds = ours[mine]
            assert my_kind == kind, name
            assert my_bounds == bounds, name
            if name == "http.server.request.duration":
                # error.type is there when a request failed (Traefik: once while starting)
                assert my_keys - {"error.type"} == (keys - {"server.address", "error.type"}) | {
                    "http.route"
                }, my_keys
            elif name == "http.client.request.duration":
                assert keys - {"error.type"} <= my_keys, (keys, my_keys)
            elif name.endswith("_bytes_total"):
                assert (unit, my_unit) == ("1", "By")
                assert my_keys == keys, name
            elif name != "traefik_config_last_reload_success":  # Traefik: ms; hopwire: s
                assert my_unit == unit, name
                assert my_keys == keys, name
        # access-log records: the ids in the LogRecord's fields, as Traefik does
        for rx in (rx_traefik, rx_hopwire):
            records = [r for _, r in rx.log_records() if "RequestPath" in attrs(r)]
            assert records and all(len(r.trace_id) == 16 and len(r.span_id) == 8 for r in records)
            assert {r.severity_number for r in records} == {9}
        services = {res["service.name"] for res, _ in rx_traefik.log_records()}
        assert services == {"traefik"}  # whatever the file says
        assert {res["service.name"] for res, _ in rx_hopwire.log_records()} == {"edge-parent"}
        hw.stop()
    finally:
        rx_traefik.close()
        rx_hopwire.close()


def scrape(hw: Any) -> str:
    return request(hw.internal, "GET", "/metrics")[2].decode()


def test_bad_setting_stops_start_with_exit_2(make_hopwire: Any) -> None:
    hw = make_hopwire(
        {"metrics": {"otlp": {"temporality": "monthly", "grpc": {}, "http": {}}}}, start=False
    )
    hw.start(wait=False)
    assert hw.proc.wait(20) == 2
    assert 'metrics.otlp.temporality: "monthly" is not valid' in hw.logs()
    both = make_hopwire({"accessLog": {"otlp": {"grpc": {}, "http": {}}}}, start=False)
    both.start(wait=False)
    assert both.proc.wait(20) == 2
    assert "accessLog.otlp: set grpc or http, not both" in both.logs()


def test_collector_down_loses_nothing_else(make_backend: Any, make_hopwire: Any) -> None:
    """Metrics and logs to a port where nothing listens: requests, /metrics and the access
    log file are unaffected; every failed export is counted by signal and logged."""
    from tests.harness import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    backend = make_backend()
    hw = make_hopwire(
        {
            "http": routes(backend),
            "metrics": {
                "otlp": {"http": {"endpoint": f"{dead}/v1/metrics"}, "pushInterval": "200ms"}
            },
            "accessLog": {"otlp": {"http": {"endpoint": f"{dead}/v1/logs"}}, "dualOutput": True},
            "log": {"otlp": {"http": {"endpoint": f"{dead}/v1/logs", "timeout": "200ms"}}},
        }
    )
    for _ in range(20):
        assert request(hw.port, "GET", "/x")[0] == 200
    wait_for(lambda: "metrics export failed" in hw.logs(), timeout=30)
    wait_for(lambda: "accesslog export failed" in hw.logs(), timeout=40)

    def errors(signal: str) -> bool:
        return f'hopwire_otlp_export_errors_total{{signal="{signal}"}}' in scrape(hw)

    wait_for(lambda: errors("metrics") and errors("accesslog"), timeout=20)
    assert "hopwire_entrypoint_requests_total" in scrape(hw)
    lines = [x for x in hw.logs().splitlines() if '"RequestPath":"/x"' in x]
    assert len(lines) == 20  # dualOutput: the standard output log is written as well
    assert hw.stop() == 0


def test_access_log_records_follow_sampled_traces(
    make_backend: Any, make_hopwire: Any, receiver: Any
) -> None:
    """accessLog.otlp.onlySampled: the records of sampled requests only (here: those whose
    inbound parent is sampled, with sampleRate 0), and no file output without dualOutput."""
    backend = make_backend()
    hw = make_hopwire(
        {
            "http": routes(backend),
            "tracing": tracing(receiver, sampleRate=0.0),
            "accessLog": {
                "otlp": {
                    "grpc": {"endpoint": receiver.endpoint, "insecure": True},
                    "onlySampled": True,
                }
            },
        }
    )
    sampled = []
    for i in range(10):
        flags = "01" if i % 2 else "00"
        trace_id = f"{i + 1:032x}"
        if i % 2:
            sampled.append(bytes.fromhex(trace_id))
        headers = [("traceparent", f"00-{trace_id}-{'1' * 16}-{flags}")]
        assert request(hw.port, "GET", f"/r{i}", headers=headers)[0] == 200
    wait_for(lambda: len(receiver.log_records()) >= 5)
    time.sleep(1.5)  # a record too many would have arrived by now (batches: 1 s)
    records = [r for _, r in receiver.log_records()]
    assert sorted(r.trace_id for r in records) == sorted(sampled)
    servers = {s.trace_id: s.span_id for s in receiver.wait(10) if s.kind == 2}
    assert all(servers[r.trace_id] == r.span_id for r in records)
    assert '"RequestPath"' not in hw.logs()  # OTLP only: nothing on standard output
    hw.stop()


def test_exemplars_lead_from_a_latency_bucket_to_its_trace(
    make_backend: Any, make_hopwire: Any, receiver: Any, tmp_path: Any
) -> None:
    """The request-duration histograms carry exemplars of sampled requests: in the
    OpenMetrics exposition (a real Prometheus with exemplar storage keeps them and its
    exemplar query returns trace ids the OTLP receiver has as spans), and in the OTLP
    histogram data points.  Unsampled requests leave none; the text format shows none."""
    from tests.harness import Prometheus

    backend = make_backend()
    hw = make_hopwire(
        {
            "http": routes(backend),
            "tracing": tracing(receiver, sampleRate=0.0),
            "metrics": {
                "prometheus": {"addRoutersLabels": True},
                "otlp": {
                    "grpc": {"endpoint": receiver.endpoint, "insecure": True},
                    "pushInterval": "500ms",
                },
            },
        }
    )
    sampled = set()
    for i in range(8):
        trace_id = f"{i + 1:032x}"
        flags = "01" if i < 3 else "00"
        if i < 3:
            sampled.add(trace_id)
        headers = [("traceparent", f"00-{trace_id}-{'2' * 16}-{flags}")]
        assert request(hw.port, "GET", f"/e{i}", headers=headers)[0] == 200
    spans = {s.trace_id.hex() for s in receiver.wait(6) if s.kind == 2}
    assert spans == sampled

    def openmetrics() -> str:
        accept = [("accept", "application/openmetrics-text; version=1.0.0")]
        return request(hw.internal, "GET", "/metrics", headers=accept)[2].decode()

    wait_for(lambda: "trace_id=" in openmetrics())
    lines = [x for x in openmetrics().splitlines() if "trace_id=" in x]
    assert all("_bucket{" in x for x in lines)
    assert {x.split('trace_id="')[1][:32] for x in lines} <= sampled
    assert "trace_id=" not in scrape(hw)  # the text format has no exemplars

    def otlp_exemplars() -> set[str]:
        metric = receiver.last_metrics().get("http.server.request.duration")
        if metric is None:
            return set()
        return {e.trace_id.hex() for p in metric.histogram.data_points for e in p.exemplars}

    wait_for(lambda: otlp_exemplars() and otlp_exemplars() <= sampled, timeout=20)

    prom = Prometheus.scraping(tmp_path, hw.internal, args=("--enable-feature=exemplar-storage",))
    try:

        def stored() -> set[str]:
            series = prom.exemplars("hopwire_router_request_duration_seconds_bucket")
            return {e["labels"]["trace_id"] for s in series for e in s["exemplars"]}

        wait_for(lambda: bool(stored()), timeout=30)
        assert stored() <= spans  # each leads to a trace the collector has
    finally:
        prom.stop()
    hw.stop()


def test_metrics_continue_across_a_reload_and_an_exporter_restart(
    make_backend: Any, make_hopwire: Any
) -> None:
    """One pusher at a time, cumulative for the instance: a reload that replaces the exporter
    (its push interval changed) and an exporter killed and restarted go on from the counts
    before, never back to zero and never counted twice."""
    import os
    import signal

    rx = HttpReceiver()
    try:
        backend = make_backend()
        config = {
            "http": routes(backend),
            "metrics": {
                "prometheus": {"addRoutersLabels": True},
                "otlp": {
                    "http": {"endpoint": f"{rx.base}/v1/metrics"},
                    "addRoutersLabels": True,
                    "pushInterval": "300ms",
                },
            },
        }
        hw = make_hopwire(config)

        def pushed() -> list[int]:
            counts = []
            for _, metric in rx.metrics():
                if metric.name == "hopwire_router_requests_total":
                    counts.append(served_counts(metric, router="api"))
            return counts

        for _ in range(5):
            assert request(hw.port, "GET", "/a")[0] == 200
        wait_for(lambda: pushed() and pushed()[-1] == 5)
        [before] = hw.exporter_pids()
        hw.config["metrics"]["otlp"]["pushInterval"] = "400ms"
        hw.write(hw.config)
        hw.signal(signal.SIGHUP)
        wait_for(lambda: hw.exporter_pids() and hw.exporter_pids() != [before], timeout=20)
        for _ in range(3):
            assert request(hw.port, "GET", "/b")[0] == 200
        wait_for(lambda: pushed()[-1] == 8, timeout=20)
        [current] = hw.exporter_pids()
        os.kill(current, signal.SIGKILL)
        wait_for(lambda: hw.exporter_pids() and hw.exporter_pids() != [current], timeout=20)
        for _ in range(2):
            assert request(hw.port, "GET", "/c")[0] == 200
        mark = len(pushed())
        wait_for(lambda: len(pushed()) > mark + 2 and pushed()[-1] == 10, timeout=20)
        counts = pushed()
        assert counts == sorted(counts), counts  # cumulative: never back, never twice
        assert max(counts) == 10
        assert hw.stop() == 0
    finally:
        rx.close()
