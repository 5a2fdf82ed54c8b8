"""The CI version of make soak: 30 s of keep-alive load while the dynamic file changes every
200 ms, SIGHUP every second, a worker is SIGKILLed every 5 s and the OTLP receiver restarts
every 10 s.  No request may fail (bench/soak.py says what counts as failed and as resent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT


def soak(tmp_path: Path, *args: str) -> dict[str, Any]:
    """bench/soak.py with ``args``: its summary, once it exited 0."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            *args,
            "--out",
            str(tmp_path / "soak.md"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return summary


@pytest.mark.slow
def test_soak_30s_loses_nothing(tmp_path: Path) -> None:
    summary = soak(tmp_path, "--seconds", "30")
    assert summary["failed"] == 0, summary["problems"]
    assert summary["requests"] > 1000
    assert summary["kills"] >= 5 and summary["sighup"] >= 25 and summary["dynamic"] >= 100
    assert summary["receiver_restarts"] >= 2
    assert summary["spans_exported"] > 0
    assert summary["worker_rss_mib"][1] > 0 and summary["worker_fds"][1] > 0


@pytest.mark.slow
def test_soak_kubernetes_20s_loses_nothing(tmp_path: Path) -> None:
    """The same load while the routes come from the CRD provider and the cluster changes:
    a middleware and a route every 200 ms, the endpoints every second, every watch expired
    (410) every 5 s, the API server restarted with its history forgotten every 10 s."""
    summary = soak(tmp_path, "--kubernetes", "--seconds", "20")
    assert summary["mode"] == "kubernetes"
    assert summary["failed"] == 0, summary["problems"]
    assert summary["requests"] > 1000
    assert summary["endpoint_moves"] >= 15 and summary["watches_expired"] >= 3
    assert summary["api_restarts"] >= 1
    # the cluster's changes were applied live, beside the SIGHUP reloads
    assert summary["config_reloads"] > summary["sighup"] + 20
