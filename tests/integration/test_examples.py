"""deploy/examples: the Prometheus rules checked and unit-tested by promtool, and every rule
and dashboard expression run by a real Prometheus that scraped hopwire under traffic (TLS,
tracing, errors): each evaluates without error, each dashboard panel returns series."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import ROOT, Prometheus, free_port, request, service, wait_for
from tests.otlp_receiver import GrpcReceiver

EXAMPLES = ROOT / "deploy" / "examples"
PROMETHEUS = EXAMPLES / "prometheus"
DASHBOARD = EXAMPLES / "grafana" / "hopwire.json"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool (Debian prometheus) is not installed: tests/install-deps.sh"
    return subprocess.run([tool, *args], capture_output=True, text=True, cwd=PROMETHEUS)


def test_rules_check_and_unit_tests() -> None:
    check = promtool("check", "rules", "hopwire.rules.yml")
    assert check.returncode == 0 and "SUCCESS: 11 rules found" in check.stdout, check.stderr
    assert promtool("check", "config", "prometheus.yml").returncode == 0
    unit = promtool("test", "rules", "hopwire.rules.test.yml")
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_collector_config_receives_what_hopwire_sends() -> None:
    """No collector binary here: its configuration is checked for the parts hopwire uses."""
    conf = yaml.safe_load((EXAMPLES / "otel-collector.yaml").read_text())
    assert conf["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    traces = conf["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    assert set(traces["exporters"]) == {"otlp/jaeger", "otlp/tempo", "datadog"}
    assert all(p in conf["processors"] for p in traces["processors"])
    assert conf["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    pipelines = conf["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}  # hopwire's three signals
    for pipeline in pipelines.values():
        assert pipeline["receivers"] == ["otlp"]
        assert all(e in conf["exporters"] for e in pipeline["exporters"])
        assert all(p in conf["processors"] for p in pipeline["processors"])


def test_latency_panels_show_exemplars() -> None:
    """The latency panels ask Prometheus for exemplars (hopwire's buckets carry the trace
    ids of sampled requests): from a slow bucket to its trace."""
    board = json.loads(DASHBOARD.read_text())
    latency = [p for p in board["panels"] if "latency" in p.get("title", "").lower()]
    assert latency and all(t.get("exemplar") is True for p in latency for t in p["targets"])


def dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load((PROMETHEUS / "hopwire.rules.yml").read_text())
    return [
        (rule.get("record") or rule["alert"], rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def as_grafana_runs(expr: str) -> str:
    return expr.replace("$__rate_interval", "15s").replace('job=~"$job"', 'job=~"hopwire"')


@pytest.mark.slow
def test_every_expression_evaluates_on_a_real_scrape(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    app = make_backend("app")
    rx = GrpcReceiver()
    secure = free_port()
    hw = make_hopwire(
        {
            "entryPoints": {"websecure": {"address": f"127.0.0.1:{secure}", "http": {"tls": {}}}},
            "http": {
                "routers": {
                    "api": {"rule": "PathPrefix(`/api`)", "service": "app"},
                    "site": {"rule": "PathPrefix(`/`)", "service": "app", "priority": 1},
                    "gone": {"rule": "PathPrefix(`/gone`)", "service": "gone"},
                },
                "services": {
                    "app": service(app.url),
                    "gone": service(f"http://127.0.0.1:{free_port()}"),
                },
            },
            "metrics": {"prometheus": {"addRoutersLabels": True}},
            "tracing": {
                "otlp": {"grpc": {"endpoint": rx.endpoint, "insecure": True}},
                "batch": {"scheduleDelay": "100ms"},
            },
        }
    )
    # the example scrape configuration, pointed at this hopwire and scraping every second
    conf = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    conf["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    conf["rule_files"] = [str(PROMETHEUS / "hopwire.rules.yml")]
    conf["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{hw.internal}"]}]
    prom = Prometheus(tmp_path, conf)

    def query(expr: str) -> dict[str, Any]:
        answer = prom.query(expr)
        assert answer is not None, "Prometheus stopped answering"
        return answer

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        wait_for(lambda: (prom.query("up") or {}).get("data", {}).get("result"), timeout=30)
        end = time.monotonic() + 20  # 20 s of traffic, scraped every second
        while time.monotonic() < end:
            for path in ("/api/x", "/", "/status/503", "/status/404", "/gone"):
                request(hw.port, "GET", path)  # /gone: 502, an error of kind bad_gateway
            try:  # a client that does not trust the certificate: a handshake error
                ssl.create_default_context().wrap_socket(
                    socket.create_connection(("127.0.0.1", secure), timeout=5),
                    server_hostname="x.test",
                ).close()
            except ssl.SSLError:
                pass
            with urllib.request.urlopen(
                f"https://127.0.0.1:{secure}/tls", context=context, timeout=5
            ) as resp:
                resp.read()
            time.sleep(0.05)
        rx.wait(10)
        time.sleep(3)  # the last scrapes and a rule evaluation
        problems = []
        for name, expr in rule_exprs():
            answer = query(expr)
            if answer["status"] != "success":
                problems.append(f"rule {name}: {answer.get('error')}")
        for title, expr in dashboard_exprs():
            answer = query(as_grafana_runs(expr))
            if answer["status"] != "success":
                problems.append(f"panel {title!r}: {answer.get('error')}")
            elif not answer["data"]["result"]:
                problems.append(f"panel {title!r}: no series for {expr}")
        for name, _ in rule_exprs():
            if ":" in name and not query(name)["data"]["result"]:
                problems.append(f"recording rule {name}: nothing recorded")
        assert not problems, "\n".join(problems)
    finally:
        prom.stop()
        rx.close()
