"""deploy/kubernetes: every overlay rendered by the real `kubectl kustomize`, validated by
kubernetes-validate for a current Kubernetes, its hopwire configuration accepted by hopwire,
and the two-tier overlay run here as two hopwire instances giving one trace."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hopwire.checks import load
from tests.harness import ROOT, Hopwire, free_port, header, request
from tests.otlp_receiver import GrpcReceiver

KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["base", "overlays/tracing", "overlays/two-tier"]
KUBERNETES_VERSION = "1.33.0"  # a current release; kubernetes-validate knows up to 1.37


def render(overlay: str) -> list[dict[str, Any]]:
    assert shutil.which("kubectl"), "kubectl missing: tests/install-deps.sh (kubernetes-client)"
    out = subprocess.run(
        ["kubectl", "kustomize", str(KUBE / overlay)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, prefix: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"].startswith(prefix)]
    assert len(found) == 1, (kind, prefix, [d["metadata"]["name"] for d in of_kind(docs, kind)])
    return found[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay: str, tmp_path: Path) -> None:
    docs = render(overlay)
    kinds = {d["kind"] for d in docs}
    assert {
        "Deployment",
        "ConfigMap",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
    } <= kinds
    core = [d for d in docs if d["kind"] != "ServiceMonitor"]  # a CRD: checked below
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(core))
    tool = Path(sys.executable).parent / "kubernetes-validate"
    out = subprocess.run(
        [str(tool), "--strict", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(" passed for resource ") == len(core), out.stdout
    for monitor in of_kind(docs, "ServiceMonitor"):  # selects its Service, by a port it has
        services = [
            s
            for s in of_kind(docs, "Service")
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        assert len(services) == 1
        ports = {p["name"] for p in services[0]["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


def pod_configs(docs: list[dict[str, Any]], deployment: dict[str, Any], tmp: Path) -> Path:
    """Write the ConfigMaps as the pod mounts them under ``tmp``; the static file's path."""
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for volume in spec["volumes"]:
        if "configMap" not in volume:
            continue
        cm = named(docs, "ConfigMap", volume["configMap"]["name"])
        where = tmp / mounts[volume["name"]].lstrip("/")
        where.mkdir(parents=True, exist_ok=True)
        for name, text in cm["data"].items():
            (where / name).write_text(text)
    config = tmp / container["args"][container["args"].index("--config") + 1].lstrip("/")
    raw = yaml.safe_load(config.read_text())
    provider = raw["providers"]["file"]
    provider["directory"] = str(tmp / provider["directory"].lstrip("/"))
    config.write_text(yaml.safe_dump(raw))
    return config


def environment(docs: list[dict[str, Any]], deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {"HOPWIRE_WORKERS": "2"}  # the CPU limit (resourceFieldRef) of the pod
    for source in container.get("envFrom", []):
        env.update(named(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_safe_and_their_config_is_valid(overlay: str, tmp_path: Path) -> None:
    docs = render(overlay)
    for deployment in of_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]["template"]["spec"]
        container = spec["containers"][0]
        config_path = pod_configs(docs, deployment, tmp_path / name)
        config = load(str(config_path), environ=environment(docs, deployment))
        # probes on /ping of the internal entrypoint's port
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert config.ping.entryPoint == "internal"
        internal = int(config.entryPoints["internal"].address.rsplit(":", 1)[1])
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] == "/ping" and ports[get["port"]] == internal
        assert ports["web"] == int(config.entryPoints["web"].address.rsplit(":", 1)[1])
        # Kubernetes counts the preStop wait inside terminationGracePeriodSeconds
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        life = [ep.transport.lifeCycle for ep in config.entryPoints.values()]
        budget = (
            pre_stop
            + max(lc.requestAcceptGraceTimeout for lc in life)
            + max(lc.graceTimeOut for lc in life)
        )
        assert spec["terminationGracePeriodSeconds"] > budget
        # non-root, read-only, no privileges, bounded
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]
        # the dynamic directory is a whole-ConfigMap mount (a subPath mount never updates)
        assert all("subPath" not in m for m in container["volumeMounts"])
        assert config.providers.file is not None and config.providers.file.watch
        if overlay != "base":
            assert config.tracing is not None and config.tracing.otlp.grpc is not None


def test_two_tier_is_one_trace(make_backend: Any, tmp_path: Path) -> None:
    """The two-tier overlay's rendered configs, run here: its Service names become local
    ports and the collector the test's OTLP receiver; the edge starts the trace, the inner
    tier continues it."""
    docs = render("overlays/two-tier")
    app = make_backend("app")
    rx = GrpcReceiver()
    started: list[Hopwire] = []
    try:
        ports = {"inner-hopwire": free_port(), "edge-hopwire": free_port()}
        for tier in ("inner", "edge"):  # the inner first: the edge's backend
            deployment = named(docs, "Deployment", f"{tier}-")
            config_path = pod_configs(docs, deployment, tmp_path / tier)
            raw = yaml.safe_load(config_path.read_text())
            internal = free_port()
            raw["entryPoints"]["web"]["address"] = f"127.0.0.1:{ports[f'{tier}-hopwire']}"
            raw["entryPoints"]["internal"]["address"] = f"127.0.0.1:{internal}"
            raw["tracing"] = {"batch": {"scheduleDelay": "100ms"}}
            config_path.write_text(yaml.safe_dump(raw))
            dynamic = Path(raw["providers"]["file"]["directory"]) / "dynamic.yml"
            text = dynamic.read_text()
            text = text.replace("http://app:8080", app.url)
            text = text.replace(
                "http://inner-hopwire:80", f"http://127.0.0.1:{ports['inner-hopwire']}"
            )
            dynamic.write_text(text)
            env = environment(docs, deployment)
            env["PROXY_TRACING_ENDPOINT"] = rx.endpoint
            if tier == "edge":
                env["PROXY_TRACING_SAMPLE_RATE"] = "1"  # every request, for the test
            hw = Hopwire(tmp_path / tier, {}, env=env)
            hw.path, hw.port, hw.internal = config_path, ports[f"{tier}-hopwire"], internal
            started.append(hw.start())
        status, headers, _ = request(ports["edge-hopwire"], "GET", "/two-tier")
        assert status == 200 and header(headers, "x-server") == "app"
        spans = rx.wait(4)  # edge SERVER + CLIENT, inner SERVER + CLIENT
        assert len({s.trace_id for s in spans}) == 1
        received = dict(app.requests[-1][2])
        assert received["traceparent"].split("-")[1] == spans[0].trace_id.hex()
    finally:
        for hw in started:
            hw.stop()
        rx.close()
