"""How soon a change to the file provider's file is served, and what watching costs.

hopwire (2 workers) with providers.file watched, two nginx backends answering "a" and "b";
the file is rewritten (by rename) to point at the other backend, and requests on new
connections are sent every 10 ms until four in a row come from it: the delay from the write
to that point, over ``--changes`` changes.  Then the cost of one look at the files
(``Watcher.poll``) on a directory of 20 files, in this process.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hopwire.checks import load
from hopwire.live import Watcher
from run import ROOT, free_port, start_hopwire, start_nginx, stop, wait_port


def body(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/who", timeout=5) as resp:
        return bytes(resp.read())


def dynamic(port: int) -> str:
    return (
        "http:\n  routers: {r: {rule: 'PathPrefix(`/`)', service: s}}\n"
        f"  services: {{s: {{loadBalancer: {{servers: [{{url: 'http://127.0.0.1:{port}'}}]}}}}}}\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "live.md"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hopwire-live-"))
    tmp.chmod(0o755)
    ports = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("a", "b"):
            root = tmp / name
            root.mkdir()
            (root / "who").write_text(name)
            ports[name] = free_port()
            procs.append(
                start_nginx(tmp, name, f"server {{ listen 127.0.0.1:{ports[name]}; root {root}; }}")
            )
        dyn = tmp / "dynamic.yml"
        dyn.write_text(dynamic(ports["a"]))
        hw, internal = free_port(), free_port()
        config = tmp / "hopwire.yml"
        config.write_text(
            f"workers: 2\nentryPoints: {{web: {{address: '127.0.0.1:{hw}'}}, "
            f"internal: {{address: '127.0.0.1:{internal}'}}}}\n"
            f"providers: {{file: {{filename: '{dyn}'}}}}\n"
        )
        procs.append(start_hopwire(config))
        wait_port(hw)
        time.sleep(1.0)
        delays = []
        current = "a"
        for _ in range(args.changes):
            current = "b" if current == "a" else "a"
            tmp_file = dyn.with_name(".dyn.tmp")
            tmp_file.write_text(dynamic(ports[current]))
            written = time.monotonic()
            os.replace(tmp_file, dyn)
            streak = 0
            while streak < 4:
                streak = streak + 1 if body(hw) == current.encode() else 0
                if streak == 1:
                    seen = time.monotonic()
                time.sleep(0.01)
            delays.append(seen - written)
            time.sleep(0.3)
        # the cost of one look at a directory of 20 files
        conf = tmp / "conf.d"
        conf.mkdir()
        for i in range(20):
            (conf / f"f{i}.yml").write_text(
                f"http: {{middlewares: {{m{i}: {{addPrefix: {{prefix: /x}}}}}}}}\n"
            )
        main_file = tmp / "main.yml"
        main_file.write_text(f"providers: {{file: {{directory: '{conf}'}}}}\n")
        provider = load(str(main_file), environ={}).providers.file
        watcher = Watcher(str(main_file), provider)
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            watcher.poll(time.monotonic())
        look = (time.perf_counter() - t0) / n
        lines = [
            f"Measured {datetime.date.today()} on {platform.node()} ({os.cpu_count()} CPUs): "
            f"{args.changes} changes of the provider's file, 2 workers.",
            "",
            "| | median | max |",
            "| --- | ---: | ---: |",
            f"| write → first request served by the new configuration | "
            f"{statistics.median(delays) * 1000:.0f} ms | {max(delays) * 1000:.0f} ms |",
            "",
            f"One look at a directory of 20 files (stat each, no change): {look * 1e6:.0f} µs, "
            f"every 250 ms: {look / 0.25 * 100:.3f} % of one core.",
        ]
        text = "\n".join(lines) + "\n"
        Path(args.out).write_text(text)
        print(text)
    finally:
        stop(procs, tmp)


if __name__ == "__main__":
    main()
