"""Prometheus metrics from a real multi-worker hopwire, scraped by us and by a real Prometheus."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter as Tally
from pathlib import Path
from typing import Any

import h11
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import (
    Prometheus,
    catch_all,
    exchange,
    free_port,
    raw,
    request,
    service,
    wait_for,
    websocket,
)


def scrape(hw: Any, accept: str | None = None) -> str:
    headers = [("accept", accept)] if accept else []
    status, _, body = request(hw.internal, "GET", "/metrics", headers=headers)
    assert status == 200
    return body.decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    out: dict[tuple[str, frozenset], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def total(text: str, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lbl), v in samples(text).items() if n == name and want <= set(lbl))


def two_routers(a: Any, b: Any, **prom: Any) -> dict[str, Any]:
    return {
        "http": {
            "routers": {
                "ra": {"rule": "PathPrefix(`/a`)", "service": "sa"},
                "rb": {"rule": "PathPrefix(`/b`)", "service": "sb"},
            },
            "services": {"sa": service(a.url), "sb": service(b.url)},
        },
        "metrics": {"prometheus": {"addRoutersLabels": True, **prom}},
    }


def send(port: int, path: str, n: int, method: str = "GET") -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        conn = h11.Connection(h11.CLIENT)
        for _ in range(n):
            exchange(sock, method, path, conn=conn)


def send_spread(port: int, path: str, n: int) -> None:
    for _ in range(n):  # new connections: both workers take part
        request(port, "GET", path)


def test_counts_across_workers(make_backend: Any, make_hopwire: Any) -> None:
    a, b = make_backend("a"), make_backend("b")
    hw = make_hopwire(two_routers(a, b), workers=2)
    send_spread(hw.port, "/a", 30)
    send_spread(hw.port, "/a/status/404", 10)
    send_spread(hw.port, "/b", 20)
    request(hw.port, "POST", "/b", body=b"12345")
    request(hw.port, "PURGEX", "/b")  # an unknown method: label OTHER

    def counted() -> bool:
        return total(scrape(hw), "hopwire_entrypoint_requests_total", entrypoint="web") == 62

    wait_for(counted)
    text = scrape(hw)
    assert (
        value(
            text,
            "hopwire_router_requests_total",
            code="200",
            method="GET",
            protocol="http",
            router="ra",
            service="sa",
        )
        == 30
    )
    assert (
        value(
            text,
            "hopwire_router_requests_total",
            code="404",
            method="GET",
            protocol="http",
            router="ra",
            service="sa",
        )
        == 10
    )
    assert total(text, "hopwire_router_requests_total", router="rb") == 22
    assert (
        value(
            text,
            "hopwire_service_requests_total",
            code="200",
            method="OTHER",
            protocol="http",
            service="sb",
        )
        == 1
    )
    assert total(text, "hopwire_service_requests_total", service="sa") == 40
    assert total(text, "hopwire_service_requests_bytes_total", service="sb") == 5
    assert total(text, "hopwire_entrypoint_request_duration_seconds_count", entrypoint="web") == 62
    assert total(text, "hopwire_entrypoint_responses_bytes_total", entrypoint="web") > 0
    # the default buckets are a proxy's: milliseconds
    le = {
        dict(lbl)["le"]
        for n, lbl in samples(text)
        if n == "hopwire_service_request_duration_seconds_bucket"
    }
    assert {"0.001", "0.005", "0.025"} <= le
    assert value(text, "hopwire_workers", state="running") == 2
    assert value(text, "hopwire_service_server_up", service="sa", url=a.url) == 1
    roles = Tally(
        dict(lbl)["role"]
        for n, lbl in samples(text)
        if n == "hopwire_process_resident_memory_bytes"
    )
    assert roles == {"master": 1, "worker": 2}


def test_real_prometheus_scrapes_what_was_sent(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    a, b = make_backend("a"), make_backend("b")
    hw = make_hopwire(two_routers(a, b), workers=2)
    prom = Prometheus.scraping(tmp_path, hw.internal)
    try:
        send_spread(hw.port, "/a", 25)
        send_spread(hw.port, "/b/status/503", 7)

        def query() -> dict[tuple[str, str], float]:
            answer = prom.query("sum by (router, code) (hopwire_router_requests_total)")
            if answer is None:
                return {}
            return {
                (r["metric"]["router"], r["metric"]["code"]): float(r["value"][1])
                for r in answer["data"]["result"]
            }

        wait_for(lambda: query() == {("ra", "200"): 25.0, ("rb", "503"): 7.0}, timeout=30)
    finally:
        prom.stop()


def test_exposition_is_valid_text_and_openmetrics(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)})
    send_spread(hw.port, "/", 5)
    wait_for(lambda: total(scrape(hw), "hopwire_entrypoint_requests_total") == 5)
    text = scrape(hw)
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian prometheus) is not installed"
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    om = scrape(hw, accept="application/openmetrics-text; version=1.0.0")
    assert om.rstrip().endswith("# EOF")
    seen = set()
    for fam in om_parse(om):
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in seen
            seen.add(key)
    assert any(name == "hopwire_entrypoint_requests_total" for name, _ in seen)


def test_label_switches(make_backend: Any, make_hopwire: Any) -> None:
    a, b = make_backend("a"), make_backend("b")
    hw = make_hopwire(two_routers(a, b, addEntryPointsLabels=False, addServicesLabels=False))
    send(hw.port, "/a", 3)
    wait_for(lambda: total(scrape(hw), "hopwire_router_requests_total") == 3)
    text = scrape(hw)
    assert total(text, "hopwire_entrypoint_requests_total") == 0
    assert total(text, "hopwire_service_requests_total") == 0


def test_internals_and_per_router_switch(make_backend: Any, make_hopwire: Any) -> None:
    a, b = make_backend("a"), make_backend("b")
    config = two_routers(a, b)
    config["http"]["routers"]["rb"]["observability"] = {"metrics": False}
    hw = make_hopwire(config)
    request(hw.internal, "GET", "/ping")
    send(hw.port, "/a", 2)
    send(hw.port, "/b", 4)  # not counted: its router turned metrics off
    wait_for(lambda: total(scrape(hw), "hopwire_entrypoint_requests_total") == 2)
    time.sleep(1.2)
    text = scrape(hw)
    assert total(text, "hopwire_entrypoint_requests_total") == 2
    assert total(text, "hopwire_entrypoint_requests_total", entrypoint="internal") == 0
    config["metrics"]["addInternals"] = True
    with_internals = make_hopwire(config)
    request(with_internals.internal, "GET", "/ping")
    wait_for(
        lambda: (
            total(
                scrape(with_internals), "hopwire_entrypoint_requests_total", entrypoint="internal"
            )
            >= 2
        )
    )  # /ping and a /metrics scrape


def test_reload_removes_series_of_removed_routers(make_backend: Any, make_hopwire: Any) -> None:
    a, b = make_backend("a"), make_backend("b")
    hw = make_hopwire(two_routers(a, b))
    send_spread(hw.port, "/a", 4)
    send_spread(hw.port, "/b", 4)
    wait_for(lambda: total(scrape(hw), "hopwire_router_requests_total", router="rb") == 4)
    pids = set(hw.worker_pids())
    config = two_routers(a, b)
    del config["http"]["routers"]["rb"], config["http"]["services"]["sb"]
    config["entryPoints"] = hw.config["entryPoints"]
    hw.write(config)
    hw.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded: generation 2" in hw.logs())
    wait_for(lambda: not pids & set(hw.worker_pids()))
    text = scrape(hw)
    assert total(text, "hopwire_router_requests_total", router="rb") == 0
    assert total(text, "hopwire_service_requests_total", service="sb") == 0
    assert total(text, "hopwire_router_requests_total", router="ra") == 4  # kept
    assert value(text, "hopwire_config_reloads_total") == 1
    hw.write({"workers": "many", "entryPoints": hw.config["entryPoints"]})
    hw.signal(signal.SIGHUP)
    wait_for(lambda: value(scrape(hw), "hopwire_config_reloads_failure_total") == 1)


def test_dead_workers_are_archived_not_piled_up(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)}, workers=2)
    directory = next(
        d
        for d in glob.glob("/tmp/hopwire-metrics-*")
        if f"counter_{hw.proc.pid}.db" in os.listdir(d)
    )
    sent = 0
    for _ in range(5):
        send_spread(hw.port, "/", 6)
        sent += 6
        time.sleep(1.2)  # folded
        victim = hw.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda v=victim: len(hw.worker_pids()) == 2 and v not in hw.worker_pids())
    wait_for(lambda: total(scrape(hw), "hopwire_entrypoint_requests_total") == sent)
    files = os.listdir(directory)
    dead_files = [
        f
        for f in files
        if f.split("_")[-1]
        not in {f"{p}.db" for p in [hw.proc.pid, *hw.worker_pids()]} | {"archive.db"}
    ]
    assert dead_files == [], dead_files  # one archive per type, nothing per dead pid


def test_websocket_counted_at_upgrade_out_of_histograms(
    make_backend: Any, make_hopwire: Any
) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url)}, workers=1)
    sock, head = websocket(hw.port, timeout=5)
    with sock:

        def counted() -> bool:
            text = scrape(hw)
            return (
                total(text, "hopwire_entrypoint_requests_total", protocol="websocket") == 1
                and value(text, "hopwire_open_connections", entrypoint="web", protocol="websocket")
                == 1
            )

        wait_for(counted)
        text = scrape(hw)
        assert (
            total(text, "hopwire_entrypoint_request_duration_seconds_count", protocol="websocket")
            == 0
        )


def test_open_connections_retries_and_server_up(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    hw = make_hopwire(
        {"http": catch_all(b.url, healthCheck={"path": "/health", "interval": "200ms"})}, workers=1
    )
    idle = [socket.create_connection(("127.0.0.1", hw.port)) for _ in range(5)]
    try:
        wait_for(
            lambda: (
                value(scrape(hw), "hopwire_open_connections", entrypoint="web", protocol="http")
                == 5
            )
        )
    finally:
        for s in idle:
            s.close()
    request(hw.port, "GET", "/")
    b.drop_reused = True
    request(hw.port, "GET", "/")
    wait_for(lambda: value(scrape(hw), "hopwire_service_retries_total", service="s") == 1)
    b.healthy = False
    wait_for(lambda: value(scrape(hw), "hopwire_service_server_up", service="s", url=b.url) == 0)


def test_tracing_counters(make_backend: Any, make_hopwire: Any) -> None:
    from tests.otlp_receiver import GrpcReceiver

    rx = GrpcReceiver()
    try:
        b = make_backend()
        hw = make_hopwire(
            {
                "http": catch_all(b.url),
                "tracing": {
                    "otlp": {"grpc": {"endpoint": rx.endpoint, "insecure": True}},
                    "batch": {"scheduleDelay": "100ms"},
                },
            }
        )
        send(hw.port, "/", 5)
        rx.wait(10)
        wait_for(lambda: value(scrape(hw), "hopwire_tracing_spans_exported_total") == 10)

        def exporter_sampled() -> bool:
            roles = Tally(
                dict(lbl)["role"]
                for n, lbl in samples(scrape(hw))
                if n == "hopwire_process_cpu_seconds"
            )
            return roles["exporter"] == 1

        wait_for(exporter_sampled)
        assert value(scrape(hw), "hopwire_tracing_export_errors_total") == 0
    finally:
        rx.close()


@pytest.mark.parametrize("workers", [2])
def test_metrics_off(make_backend: Any, make_hopwire: Any, workers: int) -> None:
    b = make_backend()
    hw = make_hopwire({"http": catch_all(b.url), "metrics": {"prometheus": False}}, workers=workers)
    assert request(hw.internal, "GET", "/metrics")[0] == 404
    assert request(hw.port, "GET", "/")[0] == 200


def test_reload_after_a_dead_worker_compacts_the_archive(
    make_backend: Any, make_hopwire: Any
) -> None:
    a, b = make_backend("a"), make_backend("b")
    hw = make_hopwire(two_routers(a, b), workers=2)
    reloads = int(os.environ.get("TEST_RELOADS", "3"))
    send_spread(hw.port, "/a", 4)
    send_spread(hw.port, "/b", 4)
    wait_for(lambda: total(scrape(hw), "hopwire_router_requests_total", router="rb") == 4)
    victim = hw.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)  # its counters go to the archive files
    wait_for(lambda: len(hw.worker_pids()) == 2 and victim not in hw.worker_pids())
    wait_for(lambda: total(scrape(hw), "hopwire_router_requests_total", router="rb") == 4)
    config = two_routers(a, b)
    del config["http"]["routers"]["rb"], config["http"]["services"]["sb"]
    config["entryPoints"] = hw.config["entryPoints"]
    for generation in range(2, reloads + 2):
        pids = set(hw.worker_pids())
        hw.write(config)
        hw.signal(signal.SIGHUP)
        wait_for(lambda g=generation: f"reloaded: generation {g}" in hw.logs(), timeout=20)
        wait_for(lambda p=pids: not p & set(hw.worker_pids()), timeout=20)
        send_spread(hw.port, "/a", 1)
    want = 4 + reloads
    wait_for(lambda: total(scrape(hw), "hopwire_router_requests_total", router="ra") == want)
    text = scrape(hw)
    assert total(text, "hopwire_router_requests_total", router="rb") == 0  # dropped from archive
    logs = hw.logs()
    assert "could not compact" not in logs
    bad = [line for line in logs.splitlines() if '"level":"ERROR"' in line]
    assert len(bad) == 1 and "died unexpectedly" in bad[0], bad  # only the kill above


def test_errors_by_kind_counted_once(make_backend: Any, make_hopwire: Any) -> None:
    b = make_backend()
    config = {
        "http": {
            "routers": {
                "r": {"rule": "PathPrefix(`/app`) || PathPrefix(`/raw`)", "service": "s"},
                "dead": {"rule": "PathPrefix(`/dead`)", "service": "gone"},
            },
            "services": {"s": service(b.url), "gone": service(f"http://127.0.0.1:{free_port()}")},
        },
        "accessLog": {"filePath": "/dev/null"},  # the access log's counters are exported too
    }
    hw = make_hopwire(config, workers=2)
    for _ in range(3):
        assert raw(hw.port, b"GET /app HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")[9:12] == b"400"
    for _ in range(2):
        assert request(hw.port, "GET", "/nowhere")[0] == 404
        assert request(hw.port, "GET", "/dead")[0] == 502
    assert raw(hw.port, b"GET /app HTTP/2.0\r\nHost: a\r\n\r\n")[9:12] == b"505"
    for _ in range(2):  # the backend closes mid-body after the head went out
        assert raw(hw.port, b"GET /raw/truncate HTTP/1.1\r\nHost: a\r\n\r\n")[9:12] == b"200"
    with socket.create_connection(("127.0.0.1", hw.port)) as sock:  # a client gone mid-request
        sock.sendall(b"POST /app/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        time.sleep(0.3)

    def errors() -> dict[str, float]:
        text = scrape(hw)
        return {
            dict(lbl)["kind"]: v
            for (name, lbl), v in samples(text).items()
            if name == "hopwire_errors_total"
        }

    want = {
        "bad_request": 3,
        "no_route": 2,
        "connect_failed": 2,
        "version_not_supported": 1,
        "upstream_truncated": 2,
        "client_closed": 1,
    }
    wait_for(lambda: errors() == want, timeout=5)
    time.sleep(1.2)  # another fold: nothing is counted twice
    assert errors() == want
    text = scrape(hw)
    assert total(text, "hopwire_entrypoint_requests_total", entrypoint="web", code="400") == 3
    assert total(text, "hopwire_entrypoint_requests_total", entrypoint="web", code="505") == 1
    assert total(text, "hopwire_entrypoint_requests_total", entrypoint="web", code="499") == 1
    assert total(text, "hopwire_service_requests_total", service="s", code="200") == 2  # cut short
    assert ("hopwire_accesslog_lines_dropped_total", frozenset()) in samples(text)
    assert ("hopwire_accesslog_write_errors_total", frozenset()) in samples(text)
