"""The scrape reads prometheus_client's multiprocess files as they are found, half-made ones
included (a process that has just started)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def test_scrape_skips_a_file_still_empty(tmp_path: Path) -> None:
    # in a process of its own: multiprocess mode is set up once per process
    code = textwrap.dedent(
        f"""
        import os
        from hopwire.telemetry import metrics
        metrics.init({str(tmp_path)!r}, metrics.default_buckets())
        metrics.family("reloads").inc(3)
        open(os.path.join({str(tmp_path)!r}, "counter_99999.db"), "wb").close()  # just created
        body, _ = metrics.exposition(b"")
        assert b"hopwire_config_reloads_total 3.0" in body, body
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_archiving_a_process_killed_before_its_header_was_written(tmp_path: Path) -> None:
    """A child killed right after it created its file (an exporter SIGKILLed at start) left
    it empty: archiving it folds nothing and raises nothing (it once stopped the master)."""
    code = textwrap.dedent(
        f"""
        import os
        from hopwire.telemetry import metrics
        metrics.init({str(tmp_path)!r}, metrics.default_buckets())
        metrics.family("reloads").inc(2)
        open(os.path.join({str(tmp_path)!r}, "counter_99998.db"), "wb").close()
        metrics.archive({str(tmp_path)!r}, 99998, lambda labels: True)
        assert not os.path.exists(os.path.join({str(tmp_path)!r}, "counter_99998.db"))
        body, _ = metrics.exposition(b"")
        assert b"hopwire_config_reloads_total 2.0" in body, body
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
