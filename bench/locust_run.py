"""make bench-locust: locust's realistic mix (bench/locustfile.py) against hopwire and nginx,
side by side in one run, on the same backend (nginx serving static files).

Each target gets the same headless locust run (users, spawn rate, seconds); locust writes its
CSV and HTML report to bench/results/locust-<target>*; this script adds the CPU-seconds of the
target's process tree per request and writes bench/results/locust.md.  locust itself is
Python and shares the 2 cores: read the CPU per request, not the request rate.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (
    ROOT,
    cpu_seconds,
    free_port,
    nginx_proxy,
    start_hopwire,
    start_nginx,
    stop,
    tree,
    wait_port,
)

RESULTS = ROOT / "bench" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    locust = shutil.which("locust") or str(Path(sys.executable).parent / "locust")
    if not os.path.exists(locust):
        raise SystemExit("locust is missing: pip install -e '.[bench]' (make bench-locust does)")
    tmp = Path(tempfile.mkdtemp(prefix="hopwire-locust-"))
    tmp.chmod(0o755)
    docroot = tmp / "www"
    (docroot / "api").mkdir(parents=True)
    (docroot / "static").mkdir()
    (docroot / "api" / "small").write_bytes(b"x" * 12)
    (docroot / "api" / "page").write_bytes(b"x" * 16384)
    (docroot / "static" / "big").write_bytes(b"x" * 1048576)
    be, nx, hw, internal = (free_port() for _ in range(4))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            start_nginx(
                tmp,
                "backend",
                f"server {{ listen 127.0.0.1:{be} backlog=4096; root {docroot};"
                " location /fail { return 503; } }",
            )
        )
        nginx = start_nginx(tmp, "proxy", nginx_proxy(f"127.0.0.1:{nx}", be))
        procs.append(nginx)
        config = tmp / "hopwire.yml"
        config.write_text(f"""
workers: 1
entryPoints:
  web: {{address: "127.0.0.1:{hw}"}}
  internal: {{address: "127.0.0.1:{internal}"}}
http:
  routers:
    api: {{rule: "PathPrefix(`/api`)", service: be}}
    static: {{rule: "PathPrefix(`/static`)", service: be}}
    rest: {{rule: "PathPrefix(`/`)", service: be, priority: 1}}
  services: {{be: {{loadBalancer: {{servers: [{{url: "http://127.0.0.1:{be}"}}]}}}}}}
""")
        hopwire = start_hopwire(config)
        procs.append(hopwire)
        targets = {"hopwire": (hw, hopwire.pid), "nginx": (nx, nginx.pid)}
        for port, _ in targets.values():
            wait_port(port)
        time.sleep(0.5)
        rows: dict[str, list[tuple[int, int, float, float, float]]] = {t: [] for t in targets}
        RESULTS.mkdir(parents=True, exist_ok=True)
        for _ in range(args.rounds):
            for name, (port, pid) in targets.items():
                pids = tree(pid)
                before = cpu_seconds(pids)
                prefix = RESULTS / f"locust-{name}"
                subprocess.run(
                    [
                        locust,
                        "-f",
                        str(ROOT / "bench" / "locustfile.py"),
                        "--headless",
                        "--only-summary",
                        "-u",
                        str(args.users),
                        "-r",
                        str(args.users),
                        "-t",
                        f"{args.seconds}s",
                        "--host",
                        f"http://127.0.0.1:{port}",
                        "--csv",
                        str(prefix),
                        "--html",
                        f"{prefix}.html",
                        "--exit-code-on-error",
                        "0",
                    ],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                cpu = cpu_seconds(pids) - before
                with open(f"{prefix}_stats.csv") as fh:
                    total = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
                count, failures = int(total["Request Count"]), int(total["Failure Count"])
                rows[name].append(
                    (count, failures, float(total["Requests/s"]), cpu, float(total["99%"]))
                )
        write_report(rows, args)
    finally:
        stop(procs, tmp)


def write_report(
    rows: dict[str, list[tuple[int, int, float, float, float]]], args: argparse.Namespace
) -> None:
    lines = [
        f"# locust mix, {datetime.date.today()} on {platform.node()} "
        f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})",
        "",
        f"{args.users} FastHttpUser users, {args.seconds} s per target "
        f"and round, {args.rounds} interleaved round(s), medians of the rounds; 1 worker "
        "each; the mix of bench/locustfile.py. Failures are answers other than the one "
        "expected (404 and 503 are expected where asked for); requests and failures are the "
        "sums of all rounds, p99 the highest.",
        "",
        "| target | requests | failures | req/s | p99 ms | CPU-s of the target per round | requests per CPU-s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    per_cpu = {}
    for name, runs in rows.items():
        count = sum(r[0] for r in runs)
        failures = sum(r[1] for r in runs)
        rate = statistics.median(r[2] for r in runs)
        cpu = statistics.median(r[3] for r in runs)
        p99 = max(r[4] for r in runs)
        per_cpu[name] = statistics.median(r[0] / r[3] for r in runs if r[3])
        lines.append(
            f"| {name} | {count:,} | {failures} | {rate:,.0f} | {p99:.0f} | {cpu:.2f} | "
            f"{per_cpu[name]:,.0f} |"
        )
    if per_cpu.get("nginx"):
        lines += [
            "",
            f"hopwire/nginx requests per CPU-second: {per_cpu['hopwire'] / per_cpu['nginx']:.2f}",
        ]
    lines += ["", "locust's own reports: bench/results/locust-<target>.html and *_stats.csv."]
    text = "\n".join(lines) + "\n"
    (RESULTS / "locust.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
