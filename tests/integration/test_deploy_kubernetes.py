"""deploy/kubernetes: every overlay rendered by kubectl kustomize, each object validated
against the Kubernetes API's schema (kubernetes-validate, strict), the providers overlay's
ClusterRole exactly what the providers request, and its static configuration loaded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hopwire import checks
from hopwire.kube import crd
from hopwire.kube.provider import kinds
from tests.harness import ROOT

DEPLOY = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["base", "overlays/tracing", "overlays/two-tier", "overlays/providers"]
VERSION = "1.31"
NOT_CORE = {"ServiceMonitor"}  # the Prometheus operator's kind: no schema in kubernetes-validate

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is installed by tests/install-deps.sh"
)


def render(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid(overlay: str) -> None:
    objects = render(overlay)
    assert objects
    for obj in objects:
        if obj["kind"] in NOT_CORE:
            continue
        kubernetes_validate.validate(obj, VERSION, strict=True)


def test_the_cluster_role_is_what_the_providers_read() -> None:
    role = next(o for o in render("overlays/providers") if o["kind"] == "ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    needed: dict[tuple[str, str], set[str]] = {}
    for which in ("kubernetesCRD", "kubernetesIngress"):
        for resource in kinds(which).values():
            needed[(resource.group, resource.plural)] = {"list", "watch"}
    for resource in crd.IGNORED.values():
        needed[(resource.group, resource.plural)] = {"list"}
    assert granted == needed


def test_the_providers_overlay_starts_in_a_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its static configuration loads as in a pod: the API server from the environment."""
    config_map = next(
        o
        for o in render("overlays/providers")
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("hopwire-static")
    )
    static = tmp_path / "hopwire.yml"
    static.write_text(config_map["data"]["hopwire.yml"])
    dynamic = tmp_path / "dynamic"
    dynamic.mkdir()
    shutil.copy(DEPLOY / "base" / "dynamic.yml", dynamic)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    config = checks.load(str(static), [f"--providers.file.directory={dynamic}"])
    assert config.providers.kubernetesCRD is not None
    assert config.providers.kubernetesIngress is not None
    loaded = yaml.safe_load(config_map["data"]["hopwire.yml"])
    base = yaml.safe_load((DEPLOY / "base" / "hopwire.yml").read_text())
    del loaded["providers"]["kubernetesCRD"], loaded["providers"]["kubernetesIngress"]
    assert loaded == base  # the overlay's copy differs from the base's only in its providers
